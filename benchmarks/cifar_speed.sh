#!/usr/bin/env bash
# Is the in-memory CIFAR path as fast as before a change? Times the same short training run
# (smoke student, 1 epoch on 4 096 images, 1 000 test images) with two checkouts of the
# code, alternating A B A B ... after one warm-up each, and prints every wall time and the
# medians. Usage (from the repository root, with the project's environment active):
#   bash benchmarks/cifar_speed.sh OLD_SRC [DATA_DIR] [RUNS]
# OLD_SRC: the src/ folder of the other checkout, e.g. made with
#   git worktree add /tmp/old <commit> && bash benchmarks/cifar_speed.sh /tmp/old/src
set -euo pipefail
OLD=$1
DATA_DIR=${2:-../shared/data}
RUNS=${3:-4}
NEW=$(pwd)/src
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
run() {  # run SRC → wall seconds
    rm -rf "$OUT/run"
    /usr/bin/time -f "%e" -o "$OUT/t" env PYTHONPATH="$1" python -m deit train --preset smoke \
        --epochs 1 --set train_size=4096 --set test_size=1000 --data-dir "$DATA_DIR" \
        --out "$OUT/run" > /dev/null 2>&1
    cat "$OUT/t"
}
run "$NEW" > /dev/null; run "$OLD" > /dev/null  # warm-up
echo "run new_s old_s"
for i in $(seq 1 "$RUNS"); do echo "$i $(run "$NEW") $(run "$OLD")"; done | tee "$OUT/rows"
python - "$OUT/rows" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
new, old = ([float(r[k]) for r in rows] for k in (1, 2))
ratios = [a / b for a, b in zip(new, old)]
print(f"median wall: new {statistics.median(new):.2f} s, old {statistics.median(old):.2f} s; "
      f"new/old per pair: median {statistics.median(ratios):.3f} "
      f"(min {min(ratios):.3f}, max {max(ratios):.3f})")
PY
