#!/usr/bin/env bash
# Control for run.sh: the same fine-tuning (2 epochs, hard distillation, peak lr 1e-3 per 512,
# 0.2 warm-up epochs, cosine to 1e-5, the cpu-proxy recipe otherwise) from the same run-E
# checkpoint, but at the 32 px the student was trained at. The difference between this and
# run.sh's 48-px result is what the resolution adds beyond two more epochs.
# Writes results/finetune/after_32.json and the run directory E32/.
# Usage, from the repository root: bash results/finetune/control32.sh [DATA_DIR]
set -euo pipefail
DATA_DIR=${1:-../shared/data}
HERE=results/finetune
CHECKPOINT=results/cpu-proxy/matrix-2026-11-27/E/checkpoint.pt

rm -rf "$HERE/E32"
deit finetune --checkpoint "$CHECKPOINT" --img-size 32 --preset cpu-proxy --epochs 2 \
    --set lr=1e-3 --set warmup_epochs=0.2 --out "$HERE/E32" --data-dir "$DATA_DIR" 2>&1 \
    | grep -v "it/s"
deit eval --checkpoint "$HERE/E32/checkpoint.pt" --data-dir "$DATA_DIR" --json > "$HERE/after_32.json"
cat "$HERE/after_32.json"
