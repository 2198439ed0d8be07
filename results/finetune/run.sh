#!/usr/bin/env bash
# Fine-tune the cpu-proxy matrix's best student (run E, hard distillation, 32 px, patch 4)
# at 48 px (still patch 4: a 12x12 grid, 146 tokens instead of 66) for 2 epochs, hard
# distillation from the shipped teacher (which keeps seeing 32-px images), on this 2-core CPU.
# Writes results/finetune/{before_32,before_48,after}.json and the run directory E48/.
# Usage, from the repository root: bash results/finetune/run.sh [DATA_DIR]
set -euo pipefail
DATA_DIR=${1:-../shared/data}
HERE=results/finetune
CHECKPOINT=results/cpu-proxy/matrix-2026-11-27/E/checkpoint.pt

# Before: the checkpoint as trained (32 px), and the same weights at 48 px with the position
# embedding resampled and no training.
deit eval --checkpoint "$CHECKPOINT" --data-dir "$DATA_DIR" --json > "$HERE/before_32.json"
python - "$CHECKPOINT" "$DATA_DIR" > "$HERE/before_48.json" <<'PY'
import json, sys
from deit.data import load_cifar
from deit.data.augment import dataset_stats
from deit.engine import evaluate
from deit.finetune import load_pretrained, read_pretrained, student_name
from deit.models import create_model
state, arch = read_pretrained(sys.argv[1])
model = create_model(student_name(arch, 48, arch["patch_size"]), num_classes=10,
                     embed_dim=arch["embed_dim"], depth=arch["depth"], num_heads=arch["num_heads"])
load_pretrained(model, state)
data = load_cifar("cifar10", sys.argv[2], download=False)
mean, std = dataset_stats("cifar10")
top1 = evaluate(model, data.test_images, data.test_labels, mean=mean, std=std, img_size=48)
print(json.dumps({"checkpoint": sys.argv[1], "img_size": 48, "heads": top1}))
PY

# The fine-tuning: 2 epochs, peak lr 1e-3 per 512 images (a quarter of training's), 0.2
# warm-up epochs, cosine to 1e-5; everything else the cpu-proxy recipe.
rm -rf "$HERE/E48"
deit finetune --checkpoint "$CHECKPOINT" --img-size 48 --preset cpu-proxy --epochs 2 \
    --set lr=1e-3 --set warmup_epochs=0.2 --out "$HERE/E48" --data-dir "$DATA_DIR" 2>&1 \
    | grep -v "it/s"
deit eval --checkpoint "$HERE/E48/checkpoint.pt" --data-dir "$DATA_DIR" --json > "$HERE/after.json"
cat "$HERE"/before_32.json "$HERE"/before_48.json "$HERE"/after.json
