#!/usr/bin/env bash
# Issue 28's acceptance measurements: deit predict against deit eval on CIFAR-10's test set as
# a folder, memory and img/s over 10 000 images, bad files, and ONNX parity.
# bash benchmarks/use_your_model/run.sh [DATA_DIR] [WORK_DIR] > benchmarks/use_your_model/<machine>-<date>.md
# About 6 minutes on a 2-core CPU (the smoke student's training is 1-3 of them). One thread per
# process (OMP_NUM_THREADS=1): the decoding workers take the other cores, and two OpenMP threads
# on a busy 2-core machine made the model's forward 7x slower (77 against 505 img/s).
set -euo pipefail
export OMP_NUM_THREADS=1
data="${1:-${DEIT_DATA:-../shared/data}}"
work="${2:-$(mktemp -d)}"
here="$(cd "$(dirname "$0")" && pwd)"
echo "# deit predict / export measurements (issue 28)"
echo
echo "- machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc --all) cores; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); torch $(python -c 'import torch; print(torch.__version__)'); commit $(git rev-parse --short HEAD)"
echo "- command: bash benchmarks/use_your_model/run.sh $data WORK"
echo
echo '## A trained student and CIFAR-10 test images as PNG files'
echo '```'
echo "\$ deit train --preset smoke --distillation hard --data-dir DATA --out student"
if [ -f "$work/student/summary.json" ]; then
    echo "(reused: WORK/student exists, from this command run earlier)"
else
    deit train --preset smoke --distillation hard --data-dir "$data" --out "$work/student" 2>/dev/null | tail -2
fi
[ -d "$work/cifar/val" ] || python -m deit.data.export cifar --data-dir "$data" --out "$work/cifar" \
    --train-size 10 --workers 2 2>/dev/null
echo "val images: $(find "$work/cifar/val" -name '*.png' | wc -l)"
echo '```'
echo
echo '## deit eval and deit predict on the same checkpoint'
echo '```'
echo "\$ deit eval --checkpoint student/checkpoint.pt --json --data-dir DATA"
deit eval --checkpoint "$work/student/checkpoint.pt" --json --data-dir "$data"
echo "\$ /usr/bin/time -v deit predict --checkpoint student cifar/val --json --topk 1 > all.jsonl"
/usr/bin/time -v deit predict --checkpoint "$work/student" "$work/cifar/val" --json --topk 1 \
    > "$work/all.jsonl" 2> "$work/all.err"
grep -E "images in|Maximum resident" "$work/all.err"
echo "\$ python top1.py all.jsonl"
python "$here/top1.py" "$work/all.jsonl"
echo "\$ python memory.py student cifar/val cifar/val cifar/val  # 30 000 images, RSS every 1 000"
python "$here/memory.py" "$work/student" "$work/cifar/val" "$work/cifar/val" "$work/cifar/val"
echo '```'
echo
echo '## A truncated JPEG and a text file named .jpg among 18 images'
echo '```'
rm -rf "$work/bad" && mkdir -p "$work/bad"
for c in cat dog; do
    files=("$work/cifar/val/$c"/*.png)
    for f in "${files[@]:0:9}"; do cp "$f" "$work/bad/$c-$(basename "$f")"; done
done
python -c "from PIL import Image; Image.open('$work/bad/' + sorted(__import__('os').listdir('$work/bad'))[0]).resize((256, 256)).save('$work/full.jpg', quality=90)"
head -c 2000 "$work/full.jpg" > "$work/bad/truncated.jpg"
echo "not an image" > "$work/bad/notes.jpg"
echo "images: $(ls "$work/bad" | wc -l)"
echo "\$ deit predict --checkpoint student bad --json > bad.jsonl"
set +e
deit predict --checkpoint "$work/student" "$work/bad" --json > "$work/bad.jsonl" 2> "$work/bad.err"
echo "exit $?; stderr: $(sed "s|$work/||g" "$work/bad.err")"
echo "\$ deit predict --checkpoint student bad --json --skip-bad > bad.jsonl"
deit predict --checkpoint "$work/student" "$work/bad" --json --skip-bad > "$work/bad.jsonl" 2> "$work/bad.err"
echo "exit $?; stderr:"; sed "s|$work/||g" "$work/bad.err"
set -e
echo "results written: $(grep -vc '"error"' "$work/bad.jsonl"), error records: $(grep -c '"error"' "$work/bad.jsonl")"
echo '```'
echo
echo '## ONNX parity (deit.export_model; largest |ONNX Runtime - PyTorch| logit at batch 1 and 7)'
echo '```'
python "$here/onnx_parity.py" "$work/onnx" "$work/student/checkpoint.pt" 2>/dev/null | sed "s|$work/||g"
echo '```'
