#!/usr/bin/env bash
# Correctness of the folder path: cpu-proxy run E (hard distillation, seed 0) trained on
# CIFAR-10 read from a PNG image folder instead of the in-memory tensor: same images (lossless),
# same recipe (no random-resized crop: train_crop=none keeps the padded crop and flip of the
# in-memory path), same normalisation. Compare with results/cpu-proxy/matrix-2026-11-27/E (65.54 %, seed 1: 65.01 %).
# Usage (from the repository root): bash results/folder/run.sh [DATA_DIR] [PNG_ROOT]
set -euo pipefail
DATA_DIR=${1:-../shared/data}
PNG=${2:-/tmp/cifar10-png}
[ -d "$PNG/train" ] || python -m deit.data.export cifar --data-dir "$DATA_DIR" --out "$PNG"
deit train --preset cpu-proxy --set dataset=folder --data-dir "$PNG" --set train_crop=none \
    --set normalization=cifar10 --out results/folder/cpu-proxy-E
