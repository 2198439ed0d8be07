#!/usr/bin/env bash
# Where the teacher pays: CIFAR-10 subsets at equal compute (issue 26).
# Every student sees the same 750,000 images (the cpu-proxy's budget), whatever N.
# Recipe: the cpu-proxy preset plus Mixup 0.8, CutMix 1.0 and RandAugment (2 ops, m9), chosen
# on validation parts (tuning/NOTES.md); the same at every size.
# Resumable: rerun to continue; finished runs are skipped.
# Usage (from the repository root): bash results/teacher-pays/run.sh STEP [DATA_DIR]
#   STEP: curve (A and E at 1,000 to 50,000, each subset with its own teacher; SIZES=1000
#         trains one size, and the tables gather every size finished so far),
#         c (run C at 5,000, beside A and E; SIZES picks others),
#         external (E at 5,000 with the shipped teacher, which saw all 50,000 images;
#         SIZES and RUNS pick others, e.g. SIZES=1000 RUNS=CE),
#         plain (A at 10,000 with the cpu-proxy's own recipe, crop + flip, no mixing: is
#         the distilled student the best row overall? SIZES picks others),
#         mix (E at 10,000 with Mixup and CutMix but no RandAugment, the lighter recipe that
#         led on validation at 750,000 (tuning/NOTES.md), against plain's A; SIZES, RUNS).
# BUDGET (default 750000) sets the images each student sees; the curve goes to
# cifar10-bBUDGET (external: cifar10-external-bBUDGET), except the first study's half
# budget, 375,000, which keeps its first names (cifar10, cifar10-external). Teachers
# trained for any budget are reused (their rule ignores it).
set -euo pipefail
STEP=$1 DATA_DIR=${2:-../shared/data} BUDGET=${BUDGET:-750000}
HERE=results/teacher-pays
PLAIN=(--preset cpu-proxy --seeds 2 --data-dir "$DATA_DIR" --set budget_images="$BUDGET")
MIX=("${PLAIN[@]}" --set mixup=0.8 --set cutmix=1.0)
COMMON=("${MIX[@]}" --set randaugment_ops=2)  # the study's recipe
case "$STEP" in  # the sizes this step trains at, and so whose teachers it needs
  c) CURVE_SIZES=${SIZES:-5000} ;;
  plain) CURVE_SIZES="" ;;  # A only: no teacher
  mix) CURVE_SIZES=${SIZES:-10000} ;;
  *) CURVE_SIZES=${SIZES:-1000,5000,10000,50000} ;;
esac
CURVE=$HERE/cifar10-b$BUDGET EXTERNAL=$HERE/cifar10-external-b$BUDGET
[ "$BUDGET" = 375000 ] && CURVE=$HERE/cifar10 EXTERNAL=$HERE/cifar10-external
[ "$STEP" = mix ] && CURVE=$HERE/cifar10-mix-b$BUDGET
for n in ${CURVE_SIZES//,/ }; do  # a teacher (weights too) some other curve already trained
  for found in "$HERE"/cifar10*/n"$n"/teacher/teacher.safetensors; do
    if [ -f "$found" ] && [ ! -f "$CURVE/n$n/teacher/teacher.safetensors" ]; then
      mkdir -p "$CURVE/n$n/teacher" && cp -r "$(dirname "$found")"/. "$CURVE/n$n/teacher"
    fi
  done
done
case "$STEP" in
  curve) deit reproduce "${COMMON[@]}" --train-sizes "$CURVE_SIZES" --runs AE \
           --train-teacher --out "$CURVE" ;;
  c) deit reproduce "${COMMON[@]}" --train-sizes "$CURVE_SIZES" --runs ACE --train-teacher \
       --out "$CURVE" ;;  # A and E are done by then: skipped, kept in the size's table
  external) deit reproduce "${COMMON[@]}" --train-sizes "${SIZES:-5000}" --runs "${RUNS:-E}" \
              --out "$EXTERNAL" ;;
  plain) deit reproduce "${PLAIN[@]}" --train-sizes "${SIZES:-10000}" --runs A \
           --out "$HERE/cifar10-plain-b$BUDGET" ;;
  mix) deit reproduce "${MIX[@]}" --train-sizes "$CURVE_SIZES" --runs "${RUNS:-E}" \
         --train-teacher --out "$CURVE" ;;
  *) echo "unknown step $STEP" >&2; exit 2 ;;
esac
