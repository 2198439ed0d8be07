#!/usr/bin/env bash
# Whole training runs with the students' linears in the BLAS and in oneDNN (`cpu_linear`),
# alternating (blas, onednn, blas, onednn, ...) so a slow spell of a shared host falls on both:
# each run's wall seconds, its epochs' img/s and its test top-1 per head, as a markdown table.
# benchmarks/cpu_linear.py times the bare steps; this times what a user runs, teacher and
# augmentation included.
# Usage (from the repository root, with `deit` installed):
#   bash benchmarks/cpu_linear_runs.sh [DATA_DIR] [ROUNDS]      # defaults: ../shared/data, 3
# PRESET (default smoke) and SETS (extra `--set` pairs, e.g. "epochs=1") choose the run.
# Output: benchmarks/cpu_linear/runs-<date>-<cpu>-<preset>.md
set -euo pipefail
DATA_DIR=${1:-${DEIT_DATA:-../shared/data}}
ROUNDS=${2:-3}
PRESET=${PRESET:-smoke}
SETS=${SETS:-}
runs=$(mktemp -d)
trap 'rm -rf "$runs"' EXIT
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
slug=$(echo "$cpu" | tr -cs 'A-Za-z0-9' '-' | tr 'A-Z' 'a-z' | sed 's/-$//')
out="benchmarks/cpu_linear/runs-$(date -u +%Y-%m-%d-%H%M)-$slug-$PRESET.md"
mkdir -p benchmarks/cpu_linear
started=$(date -u +%FT%TZ)
for round in $(seq "$ROUNDS"); do
    for lib in blas onednn; do
        extra=(--set "cpu_linear=$lib")
        for kv in $SETS; do extra+=(--set "$kv"); done
        echo "round $round: $lib" >&2
        deit train --preset "$PRESET" --distillation hard --data-dir "$DATA_DIR" \
            --out "$runs/$lib-$round" "${extra[@]}" > /dev/null 2>&1
    done
done
{
    echo "# Whole \`$PRESET\` runs (hard distillation${SETS:+, $SETS}): BLAS against oneDNN linears"
    echo
    echo "$cpu, $(nproc) CPUs; commit $(git rev-parse --short HEAD); $started to $(date -u +%FT%TZ);"
    echo "\`PRESET=$PRESET SETS=\"$SETS\" bash benchmarks/cpu_linear_runs.sh DATA_DIR $ROUNDS\`"
    echo
    python - "$runs" "$ROUNDS" <<'EOF'
import json, statistics, sys
from pathlib import Path
runs, rounds = Path(sys.argv[1]), int(sys.argv[2])
print("| round | library | wall s | img/s per epoch | test top-1 (cls / dist / avg) |")
print("|---:|---|---:|---|---|")
walls = {"blas": [], "onednn": []}
for r in range(1, rounds + 1):
    for lib in ("blas", "onednn"):
        run = runs / f"{lib}-{r}"
        summary = json.loads((run / "summary.json").read_text())
        epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert summary["hardware"]["cpu_linear"] == lib, summary["hardware"]
        walls[lib].append(summary["wall_seconds"])
        top = summary["test_top1"]
        print(f"| {r} | {lib} | {summary['wall_seconds']:.1f} | "
              + ", ".join(f"{e['img_per_s']:.0f}" for e in epochs)
              + f" | {top['cls']} / {top['dist']} / {top['avg']} |")
pairs = [b / o for b, o in zip(walls["blas"], walls["onednn"])]
print()
print(f"Median wall: BLAS {statistics.median(walls['blas']):.1f} s, oneDNN "
      f"{statistics.median(walls['onednn']):.1f} s; BLAS / oneDNN pair by pair: "
      + ", ".join(f"{p:.2f}" for p in pairs))
EOF
} | tee "$out"
echo "written: $out" >&2
