#!/usr/bin/env bash
# Accuracy unchanged by the new folder pipeline (issue 27)? On an ImageNet-like JPEG folder at
# 64 px with DeiT's random-resized crops, a teacher (deit teacher, decoded once through the
# eval view) and a student distilled from it (deit train, streamed: random-resized crops),
# trained with the OLD pipeline (Pillow decode + Pillow bicubic, the code before 0db3996) and
# the NEW one (simplejpeg + torch's uint8 antialiased bicubic), two seeds each, interleaved
# (seed 0 old, seed 0 new, seed 1 old, seed 1 new) so that a busy machine slows both alike.
# Prints and writes RESULTS_DIR/results.md and results.json: each run's val top-1, each
# pipeline's mean, and whether |mean new - mean old| lies within the seed spread (the larger
# max - min over seeds of the two pipelines).
#
# Usage (repository root, project environment active, a quiet machine):
#   bash benchmarks/pipeline_accuracy.sh [DATA_DIR]        # DATA_DIR holds cifar-10-batches-bin
# Environment: WORK (runs and folder, default /tmp/deit-pipeline-accuracy), OLD_REV (0db3996^),
# SEEDS ("0 1"), TRAIN_PER_CLASS (200), VAL_PER_CLASS (50), CLASSES (10), TEACHER_EPOCHS (16),
# STUDENT_EPOCHS (10), TEACHER_BATCH (128), STUDENT_BATCH (32), WORKERS (2), THREADS (2),
# RESULTS_DIR (benchmarks/pipeline_accuracy).
# Defaults, 2,000 train / 500 val images: about 2.5 minutes a pipeline and seed on an idle
# 2-core Intel Xeon (teacher 1.3-1.4 min, student 0.8-0.9; plus the folder's export once),
# about 15 minutes in all. An interrupted run is resumed when the script is rerun.
set -euo pipefail
DATA_DIR=${1:-../shared/data}
WORK=${WORK:-/tmp/deit-pipeline-accuracy}
OLD_REV=${OLD_REV:-0db3996^}
SEEDS=${SEEDS:-0 1}
TRAIN_PER_CLASS=${TRAIN_PER_CLASS:-200}
VAL_PER_CLASS=${VAL_PER_CLASS:-50}
CLASSES=${CLASSES:-10}
TEACHER_EPOCHS=${TEACHER_EPOCHS:-16}
STUDENT_EPOCHS=${STUDENT_EPOCHS:-10}
TEACHER_BATCH=${TEACHER_BATCH:-128}
STUDENT_BATCH=${STUDENT_BATCH:-32}
WORKERS=${WORKERS:-2}
THREADS=${THREADS:-2}
RESULTS_DIR=${RESULTS_DIR:-benchmarks/pipeline_accuracy}
NEW_SRC=$(pwd)/src
OLD_SRC=$WORK/old/src
mkdir -p "$WORK" "$RESULTS_DIR"

if [ ! -d "$OLD_SRC" ]; then  # the old pipeline's code, beside this checkout's
    mkdir -p "$WORK/old"
    git archive "$OLD_REV" src | tar -x -C "$WORK/old"
fi
INET=$WORK/inet-$TRAIN_PER_CLASS-$VAL_PER_CLASS-$CLASSES
[ -d "$INET/train" ] || python -m deit.data.export imagenet-like --data-dir "$DATA_DIR" \
    --out "$INET" --train-per-class "$TRAIN_PER_CLASS" --val-per-class "$VAL_PER_CLASS" \
    --classes "$CLASSES" --workers "$THREADS"

run() {  # run SRC DIR deit ARGS...: into DIR unless finished there; resumed if started
    local src=$1 dir=$2; shift 2
    if [ -f "$dir/summary.json" ]; then return; fi
    if [ -f "$dir/config.json" ]; then
        PYTHONPATH=$src python -m deit "$1" --resume "$dir"
    else
        PYTHONPATH=$src python -m deit "$@" --out "$dir"
    fi
}

for seed in $SEEDS; do
    for pipeline in old new; do
        src=$NEW_SRC
        [ "$pipeline" = old ] && src=$OLD_SRC
        dir=$WORK/runs/$pipeline-seed$seed
        echo "== $pipeline pipeline, seed $seed ($(date -u +%H:%M:%S)): deit from" \
            "$(PYTHONPATH=$src python -c 'import deit; print(deit.__file__)')"
        run "$src" "$dir/teacher" teacher --seed "$seed" --epochs "$TEACHER_EPOCHS" \
            --set dataset=folder --data-dir "$INET" --set img_size=64 --set batch_size="$TEACHER_BATCH" \
            --set widths=32,64,64 --set threads="$THREADS" --set workers="$WORKERS"
        run "$src" "$dir/student" train --preset smoke --student deit_nano_distilled_patch8_64 \
            --seed "$seed" --epochs "$STUDENT_EPOCHS" --set dataset=folder --data-dir "$INET" \
            --set train_size=0 --set test_size=0 --set batch_size="$STUDENT_BATCH" --distillation hard \
            --teacher "$dir/teacher/checkpoint.pt" --set threads="$THREADS" \
            --set workers="$WORKERS"
    done
done

python - "$WORK/runs" "$RESULTS_DIR" "$OLD_REV" "$(git rev-parse --short HEAD)" <<'EOF'
import json, statistics, sys
from pathlib import Path

runs, out, old_rev, new_rev = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
rows = {}
for summary in sorted(runs.glob("*-seed*/*/summary.json")):
    pipeline, seed = summary.parent.parent.name.split("-seed")
    top1 = json.loads(summary.read_text())["test_top1"]
    top1 = top1["avg"] if isinstance(top1, dict) else top1
    rows.setdefault(summary.parent.name, {}).setdefault(pipeline, {})[int(seed)] = top1
lines = [f"# Folder pipeline accuracy: old ({old_rev}) against new ({new_rev})", "",
         "| model | pipeline | " + " | ".join(f"seed {s}" for s in sorted(
             {s for m in rows.values() for p in m.values() for s in p})) + " | mean | spread |",
         "|---|---|" + "---:|" * (2 + len({s for m in rows.values() for p in m.values() for s in p}))]
verdicts = {}
for model in ("teacher", "student"):
    stats = {}
    for pipeline in ("old", "new"):
        values = rows.get(model, {}).get(pipeline, {})
        if not values:
            continue
        mean, spread = statistics.mean(values.values()), max(values.values()) - min(values.values())
        stats[pipeline] = (mean, spread)
        cells = " | ".join(f"{values[s]:.2f}" for s in sorted(values))
        lines.append(f"| {model} | {pipeline} | {cells} | {mean:.2f} | {spread:.2f} |")
    if len(stats) == 2:
        gap = stats["new"][0] - stats["old"][0]
        bound = max(stats["old"][1], stats["new"][1])
        verdicts[model] = dict(gap=gap, seed_spread=bound, within=abs(gap) <= bound)
lines.append("")
for model, v in verdicts.items():
    word = "within" if v["within"] else "OUTSIDE"
    lines.append(f"- {model}: mean new - mean old = {v['gap']:+.2f} points, {word} the seed "
                 f"spread ({v['seed_spread']:.2f}).")
text = "\n".join(lines) + "\n"
print(text)
(out / "results.md").write_text(text)
(out / "results.json").write_text(json.dumps(dict(top1=rows, verdicts=verdicts), indent=1))
EOF
