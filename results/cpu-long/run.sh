#!/usr/bin/env bash
# The cpu-long study: runs A, B and E with two seeds at 3x the cpu-proxy budget (the 1x runs
# are the cpu-proxy matrix's own A, B and E), then the gap table and the curves.
# The 3x runs use an fp32 teacher (README.md says why).
# Resumable: rerun it to continue an interrupted run; finished runs are skipped.
# Usage (from the repository root): bash results/cpu-long/run.sh [DATA_DIR]
set -euo pipefail
DATA_DIR=${1:-../shared/data}
deit reproduce --preset cpu-proxy --out results/cpu-proxy --seeds 2 --data-dir "$DATA_DIR"
deit reproduce --preset cpu-long --runs ABE --set teacher_bf16=false --out results/cpu-long --seeds 2 --data-dir "$DATA_DIR"
python results/cpu-long/study.py --short results/cpu-proxy --long results/cpu-long
