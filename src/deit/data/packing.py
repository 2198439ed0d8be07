"""How a worker's batch crosses to the training process: in one buffer, in shared memory.

What this room holds: :func:`shared_uint8` (an empty uint8 buffer, in shared
memory when called in a DataLoader worker), :class:`SharedRing` (a
worker's ring of such buffers, reused batch after batch) and
:class:`SlotPool` (buffers reused once the training process releases them);
:func:`pack_crops` (crops of different sizes → one flat buffer and their
shapes) and :func:`decode_packed` (planned crops decoded straight into one);
:class:`Batch` (what a worker sends), :func:`stack_items` (images → a
batch) and :func:`pack_planned` (planned crops → a batch's buffer, with its
failures). A batch assembled in shared memory reaches the training process
without a copy; one in a reused buffer must be read (resized, copied,
pinned) as it arrives (:class:`SharedRing`'s rule).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import get_worker_info

from deit.data.layout import DataError
from deit.data.transforms import CropPlan, decode_crop

__all__ = [
    "Batch", "SharedRing", "SlotPool", "decode_packed", "pack_crops", "pack_planned",
    "shared_uint8", "stack_items",
]  # fmt: skip


def shared_uint8(numel: int) -> torch.Tensor:
    """An empty 1-D uint8 tensor, in shared memory when called in a DataLoader worker.

    A batch made there then crosses to the training process without a copy
    (what ``default_collate`` does for the tensors it stacks).
    """
    if get_worker_info() is None:
        return torch.empty(numel, dtype=torch.uint8)
    empty = torch.empty(0, dtype=torch.uint8)
    return empty.new(empty._typed_storage()._new_shared(numel)).resize_(numel)


class SharedRing:
    """A worker's ring of ``slots`` shared-memory buffers, reused batch after batch.

    A fresh shared buffer per batch pays a page fault on the first touch of
    each of its pages: 58 per crop cut from a photo-sized image, and packing
    took 0.16 ms of worker CPU per crop into fresh buffers against 0.04 into
    reused ones (``benchmarks/shared_buffers.py``), out of ~1.4 ms per image.
    Called like :func:`shared_uint8`; a slot grows (one fresh buffer, with an
    eighth to spare) when a batch needs more than it holds.

    Only for batches the training process reads at once: a slot is written
    again ``slots`` batches of this worker later, so every batch must have
    been read before the worker is that far ahead. A map-style DataLoader
    hands tasks round-robin and at most ``prefetch_factor`` per worker ahead
    of the batch its caller takes, so ``prefetch_factor + 2`` slots leave
    one batch to spare where the caller reads each batch before the next
    (:class:`~deit.data.stream.StreamLoader`: crops resized, images copied
    out, or either pinned by the DataLoader, on receipt; never handed on).
    Outside a worker it allocates like :func:`shared_uint8` (private memory,
    nothing reused).
    """

    def __init__(self, slots: int) -> None:
        if slots < 2:
            raise ValueError(f"a ring needs 2 slots or more, got {slots}")
        self.slots = slots
        self._buffers: list[torch.Tensor | None] = []
        self._next, self._pid = 0, -1

    def __call__(self, numel: int) -> torch.Tensor:
        """An uninitialised 1-D uint8 tensor of ``numel`` elements: the next slot's."""
        if get_worker_info() is None:
            return shared_uint8(numel)
        if self._pid != os.getpid():  # each forked worker fills its own ring
            self._buffers, self._next, self._pid = [None] * self.slots, 0, os.getpid()
        slot, self._next = self._next, (self._next + 1) % self.slots
        buffer = self._buffers[slot]
        if buffer is None or buffer.numel() < numel:
            buffer = self._buffers[slot] = shared_uint8(numel + numel // 8)
        return buffer[:numel]


class SlotPool:
    """Each worker's shared-memory buffers, reused once the training process has released them.

    For chunks the training process keeps for as long as its order needs
    (:class:`~deit.data.shard_loader.ShardLoader` puts the samples of all
    workers' chunks back in the plan's order), where :class:`SharedRing`'s
    bound does not hold. :attr:`busy` (shared memory, made before the
    workers fork) marks slot ``s`` of worker ``w`` from the moment the worker
    takes it until the training process releases it (:meth:`release`), after the
    chunk's last image was copied out. A worker with no free slot takes a
    fresh buffer (slot -1): it never waits, and never writes into a slot in
    use. :meth:`reset` frees every slot when an iteration starts: the
    DataLoader has then received, and dropped, the previous iteration's
    chunks. :attr:`taken` counts, per worker, the buffers taken from a slot
    and the fresh ones (too few slots for how long chunks are kept).
    """

    def __init__(self, workers: int, slots: int) -> None:
        self.busy = torch.zeros(max(workers, 1), slots, dtype=torch.uint8).share_memory_()
        self.taken = torch.zeros(max(workers, 1), 2, dtype=torch.int64).share_memory_()
        self._buffers: list[torch.Tensor | None] = [None] * slots
        self._pid = os.getpid()

    def take(self, worker: int, numel: int) -> tuple[torch.Tensor, int]:
        """A 1-D uint8 buffer of ``numel`` elements for ``worker``, and its slot (-1: fresh)."""
        if self._pid != os.getpid():  # each forked worker fills its own slots
            self._buffers, self._pid = [None] * len(self._buffers), os.getpid()
        free = torch.nonzero(self.busy[worker] == 0)
        if len(free) == 0:
            self.taken[worker, 1] += 1
            return shared_uint8(numel), -1
        slot = int(free[0])
        self.busy[worker, slot] = 1
        self.taken[worker, 0] += 1
        buffer = self._buffers[slot]
        if buffer is None or buffer.numel() < numel:
            buffer = self._buffers[slot] = shared_uint8(numel + numel // 8)
        return buffer[:numel], slot

    def release(self, worker: int, slot: int) -> None:
        """The training process is done with the chunk in ``slot`` (-1: nothing to free)."""
        if slot >= 0:
            self.busy[worker, slot] = 0

    def reset(self) -> None:
        """Free every slot (before an iteration starts)."""
        self.busy.zero_()


def pack_crops(
    crops: Iterable[np.ndarray],
    numel: int | None = None,
    alloc: Callable[[int], torch.Tensor] = shared_uint8,
) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 H×W×3 arrays of any sizes → (one flat uint8 buffer, int64 N×2 of their (H, W)).

    The buffer holds each crop's pixels row by row, one after the other
    (in shared memory in a worker: one copy of the pixels in all). ``alloc``
    gives the buffer: :func:`shared_uint8`, or a :class:`SharedRing`. With
    ``numel`` (at least the crops' total size) the buffer is allocated
    before the first crop is drawn and each crop copied in as it comes, so
    ``crops`` may be a generator that decodes them one by one into a reused
    scratch buffer; the result is as long as the crops drawn.
    """
    if numel is None:
        crops = list(crops)
        numel = sum(crop.size for crop in crops)
    flat = alloc(numel)
    pixels, start, shapes = flat.numpy(), 0, []  # numpy's row copies: ~100x torch's strided copy_
    for crop in crops:
        stop = start + crop.size
        pixels[start:stop].reshape(crop.shape)[...] = crop
        shapes.append(crop.shape[:2])
        start = stop
    return flat[:start], torch.tensor(shapes, dtype=torch.int64).reshape(-1, 2)


def decode_packed(
    plans: Sequence[CropPlan], alloc: Callable[[int], torch.Tensor] = shared_uint8
) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, str]]]:
    """Planned crops decoded into one buffer: (flat, shapes, failures).

    :func:`pack_crops` of each :func:`~deit.data.transforms.decode_crop`, so
    each crop is copied once, out of the scratch decode straight into its
    place in a buffer of the plans' total size (``alloc``'s: shared memory
    in a worker, or a :class:`SharedRing`'s). A plan that
    does not decode is left out and listed in ``failures`` as ``(its index
    in plans, the one-line message)``.
    """
    failures = []

    def decoded():
        for i, plan in enumerate(plans):
            try:
                yield decode_crop(plan)
            except DataError as err:
                failures.append((i, str(err)))

    flat, shapes = pack_crops(decoded(), sum(math.prod(plan.shape) for plan in plans), alloc)
    return flat, shapes, failures


class Batch(NamedTuple):
    """A batch as a worker sends it to the training process."""

    images: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None  # B×3×S×S uint8, or the
    # crops packed (flat, shapes) with crop_only; None when no item decoded
    labels: torch.Tensor
    failures: list[tuple[str, str]]  # (path, message), in the batch's order


def stack_items(items: list, alloc: Callable[[int], torch.Tensor] = shared_uint8) -> Batch:
    """``__getitem__``'s items of a batch → one :class:`Batch`, failures listed apart.

    The images (uint8 3×S×S tensors) are stacked into ``alloc``'s buffer:
    shared memory in a worker, so the batch crosses to the training process
    without a copy (:func:`shared_uint8`, or a
    :class:`SharedRing`'s reused buffers).
    """
    good = [(image, label) for image, label, failure in items if failure is None]
    failures = [failure for _, _, failure in items if failure is not None]
    labels = torch.tensor([label for _, label in good], dtype=torch.int64)
    if not good:
        return Batch(None, labels, failures)
    first = good[0][0]
    out = alloc(len(good) * first.numel()).view(len(good), *first.shape)
    return Batch(torch.stack([image for image, _ in good], out=out), labels, failures)


Planned = tuple[int, CropPlan, int]  # (position in the batch or epoch, the crop's plan, label)


def pack_planned(
    planned: list[Planned], alloc: Callable[[int], torch.Tensor] = shared_uint8
) -> tuple[torch.Tensor, torch.Tensor, list[Planned], list[tuple[int, str, str]]]:
    """Planned crops decoded into one buffer: (flat, shapes, kept, failed).

    :func:`decode_packed` of the plans; ``kept`` are
    the items whose crop is in the buffer, in order, ``failed`` the others
    as ``(position, path, message)``. For a folder's batch and a shard's
    chunk alike.
    """
    flat, shapes, failures = decode_packed([plan for _, plan, _ in planned], alloc)
    bad = dict(failures)
    kept = [item for i, item in enumerate(planned) if i not in bad]
    return flat, shapes, kept, [(planned[i][0], planned[i][1].path, m) for i, m in failures]
