"""The GPU path of the streaming loaders, on a GPU: workers decode and crop, the device resizes.

For a session that is lent a GPU (about a minute, plus the folder's export): on an
ImageNet-like folder at 224 px, ``StreamLoader(device="cuda")`` (``resize_on_device`` by
default there), or with ``--shards DIR`` a ``ShardLoader`` over that folder's shards
(``python -m deit.data.export shards``), against the same loader resizing in the workers
(``resize_on_device=False``):

1. the same labels in the same order, uint8 B×3×224×224 on the GPU, images within half a
   grey level of the workers' uint8 resize on average (float32 on the GPU vs uint8 on the CPU);
2. two passes over the same epoch give the same bits (the device resize is deterministic);
3. img/s into the training process of both, N workers, after a warm-up pass (synchronised).

``--device cpu`` runs the same on the CPU (the device path forced): a dry run of the script.

    python benchmarks/gpu_resize_check.py --root ROOT [--shards DIR] [--workers 4] [--device cuda]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from deit.data import DataError
from deit.data.folder import scan_folder
from deit.data.shard_loader import ShardLoader
from deit.data.shards import find_shards
from deit.data.stream import StreamLoader


def epoch(loader: StreamLoader | ShardLoader, device: torch.device) -> tuple[list, float]:
    """One epoch's batches (moved to the CPU for comparing) and its img/s."""
    start = time.perf_counter()
    batches = list(loader)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return [(x.cpu(), y.cpu()) for x, y in batches], sum(len(y) for _, y in batches) / seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="an ImageNet-like folder")
    parser.add_argument("--shards", help="its shards' folder: check ShardLoader instead")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    try:
        if args.shards:
            samples, make = find_shards(args.shards, "train"), ShardLoader
        else:
            samples, make = list(scan_folder(args.root).train), StreamLoader
    except DataError as err:  # a wrong path: one line, before any work
        print(err, file=sys.stderr)
        return 2
    common = dict(size=args.size, seed=3, workers=args.workers, device=device)
    gpu = make(samples, args.batch, resize_on_device=True, **common)
    cpu = make(samples, args.batch, resize_on_device=False, **common)
    assert gpu.resize_on_device and (
        device.type != "cuda" or make(samples, args.batch, **common).resize_on_device
    ), "resize_on_device is not the default"
    for loader in (gpu, cpu):  # warm-up: worker start, page cache, CUDA kernels
        epoch(loader, device)
    (a, rate_gpu), (b, rate_cpu), (again, _) = (epoch(x, device) for x in (gpu, cpu, gpu))
    diffs = [
        (xa.float() - xb.float()).abs().mean().item() for (xa, _), (xb, _) in zip(a, b, strict=True)
    ]
    same_labels = all(torch.equal(ya, yb) for (_, ya), (_, yb) in zip(a, b, strict=True))
    same_bits = all(torch.equal(xa, xc) for (xa, _), (xc, _) in zip(a, again, strict=True))
    shape_ok = all(x.dtype == torch.uint8 and x.shape[1:] == (3, args.size, args.size)
                   for x, _ in a)  # fmt: skip
    print(f"{make.__name__} on {device}, {len(samples)} images, batch {args.batch}, "
          f"{args.workers} workers")  # fmt: skip
    print(
        f"1. labels equal: {same_labels}; uint8 3x{args.size}x{args.size}: {shape_ok}; "
        f"mean |gpu - cpu resize| per batch: max {max(diffs):.3f} grey levels"
    )
    print(f"2. same bits on a second pass: {same_bits}")
    print(
        f"3. img/s into the training process: resize on the device {rate_gpu:.0f}, "
        f"in the workers {rate_cpu:.0f}"
    )
    ok = same_labels and shape_ok and same_bits and max(diffs) < 0.5
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
