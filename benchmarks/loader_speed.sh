#!/usr/bin/env bash
# The image-folder loader benchmark of issue 27, for a quiet machine (nothing else running):
# images/s into the training process at 224 px from an ImageNet-like JPEG folder, 1 and 2
# workers, against decoding alone with the same decoder and against timm's loader when timm
# is importable (see benchmarks/loader_speed.py for every variant). Writes
# benchmarks/loader/<cpu|cuda>-<date>.json (every measurement) and .md (the tables, the
# paired ratios against the targets, the cores needed to feed a GPU) and prints both; a
# second run on one day adds the time to the name.
#
# Usage (repository root, project environment active):
#   bash benchmarks/loader_speed.sh [DATA_DIR] [ROOT] [extra loader_speed.py arguments]
# DATA_DIR holds cifar-10-batches-bin (default ../shared/data); ROOT is the ImageNet-like
# folder, made there if missing (default /tmp/deit-inet-bench: 10 classes, 100 train and 20
# val JPEGs each, ~500x375). GRAIN (default 0) adds that much grain to every image, for
# files as large as photos (20: about 100 KB, near ImageNet's 110 KB average; the plain
# ones are ~26 KB): the folder is then /tmp/deit-inet-bench-grainGRAIN and the report's
# names end in -grainGRAIN. SHARDS=1 writes ROOT-shards (100 per shard) if missing and times
# ShardLoader's two paths over them too. PYTHON picks the interpreter: for the timm rows, one whose
# environment has timm and torchvision besides `pip install -e .` of this checkout.
# Takes about 3 minutes on a 2-core CPU without timm, 5-6 with it.
set -euo pipefail
DATA_DIR=${1:-../shared/data}
GRAIN=${GRAIN:-0}
SUFFIX=""
[ "$GRAIN" = 0 ] || SUFFIX="-grain$GRAIN"
ROOT=${2:-/tmp/deit-inet-bench$SUFFIX}
shift $(($# < 2 ? $# : 2))
PYTHON=${PYTHON:-python}
OUT=benchmarks/loader
mkdir -p "$OUT"
[ -d "$ROOT/train" ] || "$PYTHON" -m deit.data.export imagenet-like --data-dir "$DATA_DIR" \
    --out "$ROOT" --train-per-class 100 --val-per-class 20 --classes 10 --grain "$GRAIN"
if [ "${SHARDS:-0}" = 1 ]; then  # the folder as shards too: ShardLoader's rows
    [ -e "$ROOT-shards/info.json" ] || "$PYTHON" -m deit.data.export shards --from "$ROOT" \
        --out "$ROOT-shards" --per-shard 100
    set -- --shards "$ROOT-shards" "$@"
fi
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) (a quiet machine reads < 0.3)"
kind=$("$PYTHON" -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
name=$OUT/$kind-$(date -u +%Y-%m-%d)$SUFFIX
[ ! -e "$name.json" ] || name=$name-$(date -u +%H%M)  # a second run that day: kept beside
"$PYTHON" benchmarks/loader_speed.py --root "$ROOT" --json "$name.json" --markdown "$name.md" "$@"
cat "$name.md"
echo "written: $name.json $name.md"
