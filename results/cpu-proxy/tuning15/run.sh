#!/usr/bin/env bash
# Issue 15's validation runs: the cpu-proxy recipe with one lever changed per run,
# on the validation split (45 000 training images, 5 000 held out), seed 0.
# Each run is resumable: rerunning this script continues an interrupted run and
# skips finished ones. Runs go two at a time with one thread each, so their wall
# times are not timings; compare them by cost (NOTES.md, step times measured by
# benchmarks/token_drop.py on the idle machine).
#
#   bash results/cpu-proxy/tuning15/run.sh NAME [NAME ...]
set -euo pipefail
cd "$(dirname "$0")/../../.."
out=results/cpu-proxy/tuning15
data=${DEIT_DATA:-../shared/data}

# Issue 5's cpu-proxy preset, which every run changes: the preset itself changed after these runs
# (issue 15), so its old values are set first.
base="epochs=10 img_size_schedule=16,16,16,16,16,16,24,24 batch_size=128 token_keep=1.0 eval_every=1"

# issue 15's preset, as changes to issue 5's (eval_every stays 1: validation is cheap)
chosen="epochs=15 img_size_schedule= token_keep=0.25 batch_size=64"

# name -> the changes to issue 5's cpu-proxy preset
declare -A runs=(
  # token dropping at a fixed budget, every epoch at 32 px (no low-resolution start)
  [k100-e5]="epochs=5 img_size_schedule= token_keep=1.0"
  [k75-e7]="epochs=7 img_size_schedule= token_keep=0.75"
  [k50-e9]="epochs=9 img_size_schedule= token_keep=0.5"
  [k25-e15]="epochs=15 img_size_schedule= token_keep=0.25"
  # with the low-resolution start (6 x 16 px, 2 x 24 px, then 32 px); the keep rate applies to
  # every epoch (8 of the 16 tokens at 16 px)
  [lowres-k50-e13]="epochs=13 token_keep=0.5"
  # few tokens first, every token in the last epoch (token_keep_schedule), with the weights
  # EMA evaluated alongside (the EMA does not change training)
  [k25x12-k100x1-ema]="epochs=13 img_size_schedule= token_keep_schedule=0.25,0.25,0.25,0.25,0.25,0.25,0.25,0.25,0.25,0.25,0.25,0.25 token_keep=1.0 ema_decay=0.999"
  # keep 0.25 with batch 64 (lr 4e-3 per 512 as before: a peak of 5e-4; EMA decay for the same horizon in images)
  [k25-e15-b64-ema]="epochs=15 img_size_schedule= token_keep=0.25 batch_size=64 ema_decay=0.9995"
  # both: batch 64, a quarter of the tokens for 12 epochs, every token in the 13th
  [k25x12-k100x1-b64]="epochs=13 img_size_schedule= token_keep_schedule=0.25,0.25,0.25,0.25,0.25,0.25,0.25,0.25,0.25,0.25,0.25,0.25 token_keep=1.0 batch_size=64"
  # from the best so far (keep 0.25, 15 epochs, batch 64): an eighth of the tokens for 20 epochs
  # (the same cost: 96.5 against 150 ms per 128 images for the student, plus 81 for the teacher)
  [k12-e20-b64]="epochs=20 img_size_schedule= token_keep=0.125 batch_size=64"
  # lighter regularisation (everything is under-fitted): no label smoothing, weight decay 0.02
  [k25-e15-b64-light]="epochs=15 img_size_schedule= token_keep=0.25 batch_size=64 label_smoothing=0.0 weight_decay=0.02"
  # Does the distillation token itself cost accuracy? The chosen preset (keep 0.25, 15 epochs,
  # batch 64) on labels only, without a teacher: the plain student (run A's model) against the
  # distilled student training both heads on the labels; seeds 0 and 1
  [labels-1tok]="$chosen student=deit_micro_patch4_32 distillation=none"
  [labels-2tok]="$chosen distillation=none"
  [labels-1tok-s1]="$chosen student=deit_micro_patch4_32 distillation=none seed=1"
  [labels-2tok-s1]="$chosen distillation=none seed=1"
)

# The loop sits in a function so bash reads it whole before it runs: editing this file while
# runs are going (to add a run) cannot change what a running copy does next.
main() {
  for name in "$@"; do
    [[ -n "${runs[$name]+x}" ]] || { echo "unknown run $name; known: ${!runs[*]}" >&2; exit 2; }
    dir=$out/$name
    if [[ -f $dir/summary.json ]]; then echo "$name: done"; continue; fi
    if [[ -f $dir/config.json ]]; then
      deit train --resume "$dir" --data-dir "$data"
    else
      sets=(--set validation=true --set threads=1)
      for kv in $base ${runs[$name]}; do sets+=(--set "$kv"); done
      deit train --preset cpu-proxy --out "$dir" --data-dir "$data" "${sets[@]}"
    fi
  done
}
main "$@"; exit
