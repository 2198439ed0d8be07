"""Packing a batch of crops into shared memory: fresh buffers against a reused ring.

The GPU path's workers pack every batch of uint8 crops into one shared-memory
buffer (``deit.data.packing.pack_crops``). A fresh buffer per batch pays a page
fault on the first touch of each page; ``SharedRing`` reuses ``prefetch + 2``
buffers per worker. This times the packing alone, inside a real DataLoader
worker (where the ring is active), for a batch of 128 random crops of the sizes
a random-resized crop cuts from photo-sized images (150-400 px a side), and
reports per crop the minor page faults (exact: they do not depend on load) and
the worker's CPU time (its own, not wall time; another busy process can still
slow it through shared caches). ``private`` packs into ordinary memory, the
floor. Variants alternate, ``--rounds`` times.

    python benchmarks/shared_buffers.py [--rounds 2] [--batches 30] > OUT.txt
"""

from __future__ import annotations

import argparse
import datetime
import resource
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from deit.data.packing import SharedRing, pack_crops, shared_uint8
from deit.hardware import hardware

ALLOCATORS = ("fresh", "ring", "private")


class Packing(Dataset):
    """Item ``(variant, batches)``: time that many packings in this (worker) process."""

    def __init__(self, crops: list[np.ndarray]) -> None:
        self.crops = crops
        self.ring = SharedRing(4)  # prefetch 2 + 2, as StreamLoader's default

    def __len__(self) -> int:
        return 1 << 30

    def __getitem__(self, key: tuple[str, int]) -> tuple[float, float]:
        variant, batches = key
        alloc = {
            "fresh": shared_uint8,
            "ring": self.ring,
            "private": lambda n: torch.empty(n, dtype=torch.uint8),
        }[variant]
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.process_time()
        for _ in range(batches):
            flat, _ = pack_crops(self.crops, alloc)
            del flat
        seconds = time.process_time() - start
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
        crops = batches * len(self.crops)
        return faults / crops, 1e3 * seconds / crops


def main() -> None:
    """Print faults and CPU ms per crop for each allocator, every round."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batches", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    sides = rng.integers(150, 400, (128, 2))
    crops = [rng.integers(0, 256, (int(h), int(w), 3), dtype=np.uint8) for h, w in sides]
    megabytes = sum(c.size for c in crops) / 1e6
    keys = [(v, args.batches) for _ in range(args.rounds + 1) for v in ALLOCATORS]
    loader = DataLoader(Packing(crops), batch_size=None, sampler=keys, num_workers=1)
    machine = hardware()
    print(f"# {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {machine['cpu']},"
          f" torch {machine['torch']}")  # fmt: skip
    print(f"# 128 crops, {megabytes:.1f} MB a batch, {args.batches} batches a variant;"
          " the first round warms up and is not shown")  # fmt: skip
    print(f"{'variant':8s} {'faults/crop':>12s} {'CPU ms/crop':>12s}")
    for i, ((variant, _), (faults, ms)) in enumerate(zip(keys, loader, strict=True)):
        if i >= len(ALLOCATORS):
            print(f"{variant:8s} {faults:12.1f} {ms:12.4f}")


if __name__ == "__main__":
    main()
