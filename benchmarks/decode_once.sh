#!/usr/bin/env bash
# Decode once vs streaming: the smoke student (deit_nano_distilled_patch4_32) trained on
# CIFAR-10 exported as a PNG folder, from the same train_size images, two ways, interleaved:
#   stream: decoded and random-resized-cropped per image in 1 worker process every epoch;
#   once:   decoded once (round(32 / 0.875) = 37 px), cropped on the device per batch.
# Prints each run's img/s per epoch (train loop only, metrics.jsonl), its wall time (decode,
# evaluation and start-up included), CPU seconds (user + system, worker processes included)
# and accuracy; then the one-time decode cost alone, and the train loader alone (no model):
# img/s of each, alternated over 4 epochs in one process.
#
# Usage (from the repository root, `deit` installed):
#   bash benchmarks/decode_once.sh [PNG_ROOT]   # default /work/gen/cifar10-png, made by
#       python -m deit.data.export cifar --data-dir DATA --out PNG_ROOT
# Environment: RUNS (the run folder, default /tmp/deit-decode-once-<time>), REPEATS (3),
# EPOCHS (2), TRAIN_SIZE (5000), THREADS (1).
set -euo pipefail

ROOT=${1:-/work/gen/cifar10-png}
RUNS=${RUNS:-/tmp/deit-decode-once-$(date +%Y%m%d-%H%M%S)}
REPEATS=${REPEATS:-3}
EPOCHS=${EPOCHS:-2}
TRAIN_SIZE=${TRAIN_SIZE:-5000}
THREADS=${THREADS:-1}
mkdir -p "$RUNS"
common=(--preset smoke --epochs "$EPOCHS" --data-dir "$ROOT" --set dataset=folder
    --set train_size="$TRAIN_SIZE" --set threads="$THREADS" --set workers=1)

for r in $(seq "$REPEATS"); do
    for way in stream once; do
        if [ "$way" = once ]; then extra=(--set decode_once=true)
        else extra=(--set train_crop=random_resized); fi
        /usr/bin/time -f "%e %U %S" -o "$RUNS/$way-$r.time" \
            deit train "${common[@]}" "${extra[@]}" --out "$RUNS/$way-$r" > "$RUNS/$way-$r.log" 2>&1
    done
done

python - "$RUNS" "$ROOT" "$TRAIN_SIZE" "$THREADS" <<'EOF' | tee "$RUNS/results.md"
import json, sys, time
from pathlib import Path

import torch

from deit.config import from_preset
from deit.distributed import World
from deit.inputs import load_inputs

runs, root, train_size, threads = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
print("| run | img/s per epoch | wall s | CPU s | test top-1 (avg) |")
print("|---|---|---:|---:|---:|")
for run in sorted(p for p in runs.iterdir() if p.is_dir()):
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((run / "summary.json").read_text())
    rates = ", ".join(f"{line['img_per_s']:.0f}" for line in lines)
    top1 = summary["test_top1"]["avg"]
    _, user, system = map(float, (runs / f"{run.name}.time").read_text().split()[-3:])
    print(f"| {run.name} | {rates} | {summary['wall_seconds']:.1f} | {user + system:.1f} "
          f"| {top1:.2f} |")

torch.set_num_threads(threads)
loaders = {}
for once in (True, False):
    config = from_preset("smoke", dataset="folder", data_dir=root, decode_once=once,
                         train_size=train_size, threads=threads, workers=1)
    train = loaders[once] = load_inputs(config, World()).train
    if once:
        start = time.perf_counter()
        len(train)  # decodes
        seconds = time.perf_counter() - start
        images = train.loader.loader.images
        print(f"\ndecode once (1 worker): {len(images)} images to {tuple(images.shape[1:])} "
              f"uint8 ({images.numel() / 2**20:.1f} MiB) in {seconds:.2f} s")
rates = {True: [], False: []}
for epoch in range(4):
    for once, train in loaders.items():
        train.set_epoch(epoch)
        start, seen = time.perf_counter(), 0
        for _, labels in train:
            seen += len(labels)
        rates[once].append(seen / (time.perf_counter() - start))
for once, name in ((False, "stream (1 worker)"), (True, "decode once (crop on the device)")):
    print(f"train loader alone, {name}: " + ", ".join(f"{r:.0f}" for r in rates[once]) + " img/s")
loaders[False].close()
EOF
