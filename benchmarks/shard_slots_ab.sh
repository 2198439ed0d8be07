#!/usr/bin/env bash
# Shard chunks in reused buffers (packing.SlotPool) against fresh ones, paired: the loader
# before the change (OLD_REV, from a git worktree) and this checkout, taking turns ROUNDS
# times, each timing ShardLoader's two paths (crops: the GPU path's workers, the device's
# resize not counted; cpu: resize in the workers) at 1 and 2 workers over 2 epochs of the
# photo-sized shards that `GRAIN=20 SHARDS=1 bash benchmarks/loader_speed.sh` writes.
# Usage (repository root, project environment active, a quiet machine):
#   bash benchmarks/shard_slots_ab.sh [SHARDS_DIR]   # default /tmp/deit-inet-bench-grain20-shards
# Environment: OLD_REV (default: the commit before SlotPool), ROUNDS (4). Prints one line per
# run: the side, then img/s for crops N=1, crops N=2, cpu N=1, cpu N=2.
set -euo pipefail
SHARDS=${1:-/tmp/deit-inet-bench-grain20-shards}
OLD_REV=${OLD_REV:-a8b2a9c}
ROUNDS=${ROUNDS:-4}
old=$(mktemp -d)/old
git worktree add -q --detach "$old" "$OLD_REV"
trap 'git worktree remove --force "$old"' EXIT
cat > "$old.py" <<'PY'
import sys, time
import torch
from deit.data import shard_loader
from deit.data.shards import find_shards
torch.set_num_threads(1)
found, rates = find_shards(sys.argv[1], "train"), []
to_device = shard_loader.ShardLoader._to_device
for way in ("crops", "cpu"):
    # crops: counted as they arrive, the resize being a GPU's work; cpu: stacked as in training
    counted = lambda self, batch: (torch.empty(len(batch)), None)  # noqa: E731
    shard_loader.ShardLoader._to_device = counted if way == "crops" else to_device
    for workers in (1, 2):
        loader = shard_loader.ShardLoader(found, 128, size=224, workers=workers,
                                          resize_on_device=way == "crops")
        loader.set_epoch(0)
        sum(len(x) for x, _ in loader)  # warm-up: workers started, files cached
        start, n = time.perf_counter(), 0
        for epoch in (1, 2):
            loader.set_epoch(epoch)
            n += sum(len(x) for x, _ in loader)
        rates.append(n / (time.perf_counter() - start))
        loader.close()
print(" ".join(f"{r:.0f}" for r in rates))
PY
echo "# bash benchmarks/shard_slots_ab.sh $SHARDS, OLD_REV=$OLD_REV, $(date -u +%FT%TZ)"
echo "# $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# side  crops-N1 crops-N2 cpu-N1 cpu-N2 (img/s)"
for round in $(seq "$ROUNDS"); do
    echo "old $(PYTHONPATH="$old/src" python "$old.py" "$SHARDS")"
    echo "new $(PYTHONPATH="$PWD/src" python "$old.py" "$SHARDS")"
done
