#!/usr/bin/env bash
# Transfer and distillation on an image folder, end to end, at smoke size (the commands are the
# point; a CPU cannot train DeiT-Ti at 224 px for long):
#   1. an ImageNet-like folder made from real CIFAR-10 images (10 classes, 100 train / 20 val
#      images each, JPEGs around 500x375, odd modes and names),
#   2. an official-layout DeiT-Ti checkpoint (timm names under a 'model' key, 1000-class heads,
#      224 px, patch 16). Nothing can be downloaded here, so its weights are random: this run
#      shows the path, not the accuracy of ImageNet features,
#   3. deit finetune of it at 224 px on the folder (heads replaced: 1000 -> 10 classes),
#   4. deit teacher on the folder at 64 px, then a distilled student (patch 8 at 64 px) trained
#      on the folder with that teacher (hard distillation).
# Usage (from the repository root): bash results/folder/transfer.sh [DATA_DIR] [WORK_DIR]
set -euo pipefail
DATA_DIR=${1:-../shared/data}
WORK=${2:-/tmp/deit-transfer}
OUT=results/folder
mkdir -p "$WORK"
[ -d "$WORK/inet/train" ] || python -m deit.data.export imagenet-like --data-dir "$DATA_DIR" \
    --out "$WORK/inet" --train-per-class 100 --val-per-class 20 --classes 10
CKPT="$WORK/deit_tiny_distilled_patch16_224-official-layout.pth"
[ -f "$CKPT" ] || python -c "
import torch, deit
torch.manual_seed(0)
model = deit.create_model('deit_tiny_distilled_patch16_224', num_classes=1000)
torch.save({'model': model.state_dict(), 'epoch': 299}, '$CKPT')"

run() {  # run a training command into $1 unless that run is finished; resume it if started
    local dir=$1; shift
    if [ -f "$dir/summary.json" ]; then return; fi
    if [ -f "$dir/config.json" ]; then "$1" "$2" --resume "$dir"; else "$@" --out "$dir"; fi
}
run "$OUT/transfer224" deit finetune --checkpoint "$CKPT" --img-size 224 --preset smoke \
    --epochs 2 --set dataset=folder --data-dir "$WORK/inet" --set batch_size=32 \
    --set lr=5e-4 --set warmup_epochs=0.2
deit eval --checkpoint "$OUT/transfer224/checkpoint.pt" --data-dir "$WORK/inet" --json \
    > "$OUT/transfer224/eval.json"
run "$OUT/teacher64" deit teacher --set dataset=folder --data-dir "$WORK/inet" \
    --set img_size=64 --epochs 16 --set batch_size=128 --set widths=32,64,64
run "$OUT/student64" deit train --preset smoke --student deit_nano_distilled_patch8_64 \
    --epochs 10 --set dataset=folder --data-dir "$WORK/inet" --set batch_size=32 \
    --distillation hard --teacher "$OUT/teacher64/checkpoint.pt"
