#!/usr/bin/env bash
# How long the test suite takes, the way CI runs it: a clean clone of this checkout's HEAD
# beside it (so ../shared/data is found as in CI), `.ci/run` (a fresh virtual environment,
# the README's install, the README's test command), timed as a whole.
# The output, with the machine and the date first, goes to
# benchmarks/suite/<date>-<cpu>-family-<n>-<commit>.txt.
# Run it on a quiet machine: two heavy jobs on 2 cores halve each other.
# Usage (from the repository root): bash benchmarks/suite_time.sh
set -euo pipefail
here=$(pwd)
clone="$(dirname "$here")/suite-time-check"
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
family=$(lscpu | sed -n 's/^CPU family: *//p' | head -1)  # "AMD EPYC" names several generations
model=$(lscpu | sed -n 's/^Model: *//p' | head -1)
slug=$(echo "$cpu family $family" | tr -cs 'A-Za-z0-9' '-' | tr 'A-Z' 'a-z' | sed 's/-$//')
out="benchmarks/suite/$(date -u +%Y-%m-%d)-$slug-$(git rev-parse --short HEAD).txt"
mkdir -p benchmarks/suite
rm -rf "$clone" && git clone -q . "$clone"
{
    echo "# bash benchmarks/suite_time.sh at $(git rev-parse --short HEAD), $(date -u +%FT%TZ)"
    echo "# $cpu (family $family, model $model), $(nproc) CPUs; load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
    start=$(date +%s)
    rc=0
    (cd "$clone" && bash .ci/run) > "$clone.log" 2>&1 || rc=$?
    sed -n '/test session starts/,$p' "$clone.log"  # pytest's report; the install is left out
    echo "# whole .ci/run: $(( $(date +%s) - start )) s (install and tests), exit code $rc"
} | tee "$out"
rm -rf "$clone" "$clone.log"
echo "written: $out"
grep -q "exit code 0$" "$out" || { echo "CI failed: see $out" >&2; exit 1; }
