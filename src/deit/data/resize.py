"""DeiT's bicubic resize of uint8 images: one in a CPU worker, or a batch of crops on the device.

What this room holds: :func:`resize_uint8` (one H×W×3 uint8 array → a
3×h×w uint8 tensor, in the worker), :func:`pack_crops` (a batch of crops of
different sizes, each copied in as it is decoded → one flat uint8 buffer and
their shapes, to cross to the training process in one piece, in shared
memory when in a worker:
:func:`shared_uint8`, or a :class:`SharedRing` of reused buffers) and
:func:`resize_crops` (that buffer → the B×3×S×S uint8 batch, resized on
whatever device the buffer is on).

The filter is Pillow's antialiased bicubic (``Image.resize(..., BICUBIC)``,
a = -0.5, support widened by the downscale factor), as torch's
``interpolate(mode="bicubic", antialias=True)`` implements it. On the CPU the
uint8 kernel is used (integer weights: the same bits on every run; 3.4×
faster than Pillow on ~270 px crops to 224). It rounds and clips between its
two passes otherwise than Pillow: on photo-like images the mean difference
is a few hundredths of a grey level, on random noise single pixels differ by
up to ~25 where overshoots clip. A device resizes in float32 (CUDA has no
uint8 kernel), then rounds: a tenth of a grey level from the CPU's result on
average, and the same bits on every run on the same device.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import get_worker_info

__all__ = ["SharedRing", "pack_crops", "resize_crops", "resize_uint8", "shared_uint8"]


def resize_uint8(image: np.ndarray, width: int, height: int) -> torch.Tensor:
    """A uint8 H×W×3 array resized to ``width``×``height``: a contiguous uint8 tensor 3×h×w.

    Antialiased bicubic (Pillow's filter); an image already at that size is
    only transposed. The result never shares memory with ``image``.
    """
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    if x.shape[1:] != (height, width):
        x = F.interpolate(x[None], (height, width), mode="bicubic", antialias=True)[0]
        return x.contiguous()
    return x.clone(memory_format=torch.contiguous_format)


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


def resize_crops(flat: torch.Tensor, shapes: torch.Tensor, size: int) -> torch.Tensor:
    """:func:`pack_crops`' buffer → every crop resized to ``size``×``size``: uint8 B×3×S×S.

    On ``flat``'s device (a GPU: the workers only decode and crop), in
    float32, antialiased bicubic, rounded and clamped; contiguous. One
    ``interpolate`` per crop (the crops differ in size), the conversions once
    for the batch; ``shapes`` may be on any device.
    """
    pixels = flat.float()
    out, start = [], 0
    for height, width in shapes.tolist():
        stop = start + height * width * 3
        crop = pixels[start:stop].view(1, height, width, 3).permute(0, 3, 1, 2)
        if (height, width) != (size, size):
            crop = F.interpolate(crop, (size, size), mode="bicubic", antialias=True)
        out.append(crop)
        start = stop
    batch = torch.cat(out).round_().clamp_(0, 255)
    return batch.to(torch.uint8, memory_format=torch.contiguous_format)
