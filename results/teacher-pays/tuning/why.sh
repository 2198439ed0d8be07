#!/usr/bin/env bash
# How often each tuning teacher's hard label equals the true label on the student's training
# views, per recipe (results/teacher-pays/why.py), beside the shipped teacher on the same
# images. Writes results/teacher-pays/tuning/why.jsonl. Needs the tuning teachers (run.sh).
set -euo pipefail
DATA_DIR=${1:-../shared/data}
HERE=results/teacher-pays/tuning
: > "$HERE/why.jsonl"
for N in 1000 5000; do
  for TEACHER in "$HERE/proxy/n$N/teacher/teacher.safetensors" cifar10-teacher; do
    for RECIPE in proxy mix mix-ra; do
      python results/teacher-pays/why.py --teacher "$TEACHER" --train-size "$N" --validation \
        --recipe "$RECIPE" --data-dir "$DATA_DIR" >> "$HERE/why.jsonl"
    done
  done
done
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(python -c 'from deit.hardware import hardware; print(hardware()["cpu"])')" >> "$HERE/why.jsonl"
