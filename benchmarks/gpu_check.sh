#!/usr/bin/env bash
# The prepared GPU check (issue 6): on a machine with one NVIDIA GPU and PyTorch, in about
# 3-5 minutes, print
#   1. `deit bench` of DeiT-Ti (32 px/patch 4 and 224 px/patch 16) and the shipped teacher's
#      architecture under bf16 autocast, with the fp32 and bf16 matmul ceilings;
#   2. one epoch of the `seed` preset (DeiT-Ti distilled, hard distillation, the paper's
#      augmentation, bf16) on the full CIFAR-10: its img/s and test accuracy per head;
#   3. that epoch's achieved GFLOP/s (its img/s × the bench's GFLOP per image of the student's
#      training step; the teacher's work not counted) as a share of the bf16 ceiling (target
#      >= 40 %), and what the 20-epoch seed table (five students) costs in GPU-minutes;
#   4. the image-folder and shard loaders' GPU path (benchmarks/gpu_resize_check.py): the
#      device's resize against the workers', on a 1,000-image ImageNet-like folder at 224 px.
#
# Usage (from the repository root, with `deit` installed as the README says):
#   bash benchmarks/gpu_check.sh [DATA_DIR]        # DATA_DIR default: $DEIT_DATA, ../shared/data
# Results go to $OUT (default /tmp/deit-gpu-check): bench.md, bench.json, seed-epoch/,
# folder/ and shards/.
# DEVICE=cpu EPOCH_SETS="train_size=512 test_size=256" runs the same steps on a CPU, small:
# the test suite does that (with LOADER_CHECK=0: step 4's script has its own dry-run tests,
# tests/test_shards.py; and BENCH_MODELS with only the student that step 3 reads: the 224 px
# student's and the teacher's rows are seconds of code that tests/test_bench.py runs) so the
# script cannot rot while no GPU is at hand. FOLDER_FLAGS,
# SHARD_FLAGS and LOADER_FLAGS replace step 4's export and check arguments, e.g.
# FOLDER_FLAGS="--classes 2 --train-per-class 8 --val-per-class 2" SHARD_FLAGS="--per-shard 5"
# LOADER_FLAGS="--workers 1 --batch 8 --size 64" for a quick run on a CPU.
set -euo pipefail

DATA_DIR=${1:-${DEIT_DATA:-../shared/data}}
OUT=${OUT:-/tmp/deit-gpu-check}
DEVICE=${DEVICE:-cuda}
EPOCH_SETS=${EPOCH_SETS:-}
BENCH_FLAGS=${BENCH_FLAGS:-}
STUDENT=deit_tiny_distilled_patch4_32
BENCH_MODELS=${BENCH_MODELS:-$STUDENT deit_tiny_distilled_patch16_224 fastcnn}

if [ "$DEVICE" = cuda ]; then
    python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no GPU visible to PyTorch')"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
rm -rf "$OUT" && mkdir -p "$OUT"

echo "== 1. deit bench ($DEVICE)"
# shellcheck disable=SC2086
deit bench --device "$DEVICE" --json $BENCH_FLAGS --models $BENCH_MODELS > "$OUT/bench.json"
python - "$OUT/bench.json" <<'EOF' | tee "$OUT/bench.md"
import json, sys
rows = json.load(open(sys.argv[1]))
print("| model | img | batch | mode | dtype | img/s | GFLOP/s | ratio to ceiling |")
print("|---|---:|---:|---|---|---:|---:|---:|")
for r in rows:
    print(f"| {r['model']} | {r['img_size']} | {r['batch_size']} | {r['mode']} | {r['dtype']} "
          f"| {r['img_per_s']:.0f} | {r['gflop_per_s']:.0f} | {100 * r['ratio']:.1f} % |")
EOF

echo "== 2. one epoch of the seed preset ($DEVICE)"
SETS=(--set "device=$DEVICE")
for kv in $EPOCH_SETS; do SETS+=(--set "$kv"); done
deit train --preset seed --epochs 1 --out "$OUT/seed-epoch" --data-dir "$DATA_DIR" \
    --no-download "${SETS[@]}" 2>&1 | grep -v "it/s" || true
test -f "$OUT/seed-epoch/summary.json" || { echo "the seed epoch did not finish"; exit 1; }

echo "== 3. share of the ceiling and the cost of the seed table"
python - "$OUT/bench.json" "$OUT/seed-epoch/metrics.jsonl" "$STUDENT" <<'EOF'
import json, sys
rows = json.load(open(sys.argv[1]))
epoch = json.loads(open(sys.argv[2]).read().splitlines()[-1])
train = next(r for r in rows if r["model"] == sys.argv[3] and r["mode"] == "train")
achieved = epoch["img_per_s"] * train["gflop_per_img"]
share = achieved / train["ceiling_gflop_per_s"]
print(f"seed epoch: {epoch['img_per_s']:.0f} img/s, {epoch['seconds']:.1f} s "
      f"({100 * epoch['data_wait']:.0f} % of it waiting for batches), "
      f"test top-1 {epoch['test_top1']}")
print(f"achieved {achieved:.0f} GFLOP/s of the student's step = {100 * share:.1f} % of the "
      f"{train['dtype']} ceiling {train['ceiling_gflop_per_s']:.0f} GFLOP/s (target >= 40 %)")
minutes = 5 * 20 * epoch["seconds"] / 60
print(f"20-epoch seed table (5 students x 20 epochs at this speed): {minutes:.1f} GPU-minutes")
EOF

if [ "${LOADER_CHECK:-1}" = 0 ]; then exit 0; fi
echo "== 4. the streaming loaders' GPU path (workers decode and crop, the GPU resizes)"
# An ImageNet-like folder from CIFAR (~500x375 JPEGs) and its shards; each loader's device
# resize against the same loader resizing in its workers: labels, bits, img/s.
# shellcheck disable=SC2086
python -m deit.data.export imagenet-like --data-dir "$DATA_DIR" --out "$OUT/folder" \
    --workers "$(nproc)" ${FOLDER_FLAGS:---classes 10 --train-per-class 100 --val-per-class 20}
python -m deit.data.export shards --from "$OUT/folder" --out "$OUT/shards" \
    ${SHARD_FLAGS:---per-shard 100}
# shellcheck disable=SC2086
python benchmarks/gpu_resize_check.py --root "$OUT/folder" --device "$DEVICE" \
    ${LOADER_FLAGS:---workers 4}
# shellcheck disable=SC2086
python benchmarks/gpu_resize_check.py --root "$OUT/folder" --shards "$OUT/shards" \
    --device "$DEVICE" ${LOADER_FLAGS:---workers 4}
