#!/usr/bin/env bash
# What the onnx extra (onnx, onnxscript, onnxruntime; also in dev) adds to an install: a fresh
# virtual environment with torch 2.13.0 and the core dependencies, then the extra, timed, with
# the growth of site-packages and the packages it brought (no torchvision, no CUDA torch).
# bash benchmarks/use_your_model/onnx_extra_size.sh > benchmarks/use_your_model/onnx-extra-<date>.txt
set -euo pipefail
venv="$(mktemp -d)/venv"
trap 'rm -rf "$(dirname "$venv")"' EXIT
python3 -m venv "$venv"
# shellcheck disable=SC1091
. "$venv/bin/activate"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); $(python --version)"
pip install -q torch==2.13.0 numpy tqdm safetensors pillow 2>/dev/null
site="$(python -c 'import site; print(site.getsitepackages()[0])')"
before="$(du -sm "$site" | cut -f1)"
pip list 2>/dev/null | sort > "$venv/before.txt"
start=$(date +%s.%N)
pip install -q onnx onnxscript onnxruntime 2>/dev/null
echo "pip install onnx onnxscript onnxruntime: $(python -c "print(round($(date +%s.%N) - $start, 1))") s"
echo "site-packages: ${before} MB -> $(du -sm "$site" | cut -f1) MB"
pip list 2>/dev/null | sort > "$venv/after.txt"
echo "packages added:"
comm -13 "$venv/before.txt" "$venv/after.txt"
