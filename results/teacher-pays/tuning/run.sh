#!/usr/bin/env bash
# Tuning the little-data recipe on a validation split held out of the subset (validation=true:
# a class-balanced tenth of the N images), never on the test set. Every run sees the study's
# per-run budget, 375,000 images (half the cpu-proxy's 750,000), unless BUDGET says otherwise.
# One seed per recipe.
# Each recipe reuses the first one's teacher (the same images, the same teacher recipe), copied.
# Resumable: rerun to continue; finished runs are skipped.
# Usage (from the repository root): bash results/teacher-pays/tuning/run.sh N RECIPE [DATA_DIR]
# RUNS (default AE) picks the runs, e.g. RUNS=ADE adds soft distillation beside A and E.
# BUDGET (default 375000) sets the images each run sees; another budget writes to RECIPE-bBUDGET.
set -euo pipefail
N=$1 RECIPE=$2 DATA_DIR=${3:-../shared/data} BUDGET=${BUDGET:-375000}
HERE=results/teacher-pays/tuning
case "$RECIPE" in
  proxy) SETS=() ;;                                                  # the cpu-proxy recipe as is
  mix) SETS=(--set mixup=0.8 --set cutmix=1.0) ;;                    # + Mixup/CutMix (DeiT's)
  mix-ra) SETS=(--set mixup=0.8 --set cutmix=1.0 --set randaugment_ops=2) ;;  # + RandAugment m9
  ra) SETS=(--set randaugment_ops=2) ;;                              # + RandAugment m9, no mixing
  *) echo "unknown recipe $RECIPE" >&2; exit 2 ;;
esac
OUT=$HERE/$RECIPE
[ "$BUDGET" = 375000 ] || OUT=$HERE/$RECIPE-b$BUDGET
FIRST=$HERE/proxy/n$N/teacher
if [ "$OUT" != "$HERE/proxy" ] && [ -f "$FIRST/summary.json" ] && [ ! -d "$OUT/n$N/teacher" ]; then
  mkdir -p "$OUT/n$N" && cp -r "$FIRST" "$OUT/n$N/teacher"
fi
deit reproduce --preset cpu-proxy --train-sizes "$N" --runs "${RUNS:-AE}" --train-teacher \
  --set validation=true --set budget_images="$BUDGET" "${SETS[@]}" \
  --out "$OUT" --data-dir "$DATA_DIR"
