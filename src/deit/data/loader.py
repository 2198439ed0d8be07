"""Batching of an in-memory image set that lives on the training device.

CIFAR is small enough (150 MB as uint8) to sit whole on the CPU or the GPU,
so a batch is one index into a tensor: no Dataset objects, no per-image
Python, no worker processes. Shuffling is seeded per epoch, which makes a
resumed run draw the same batches as an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch


def check_batching(batch_size: int, repeats: int, rank: int, world_size: int) -> None:
    """Refuse batching settings no loader can follow (``ValueError`` naming the value)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world of size {world_size}")


class BatchLoader:
    """Yield ``(images, labels)`` batches from tensors held on one device.

    Each epoch draws its own permutation from ``seed`` and the epoch number
    (set with :meth:`set_epoch`), so any epoch can be replayed exactly.
    With ``world_size > 1`` every rank sees a disjoint shard of the same
    permutation and the same number of batches, as distributed training
    needs; the global batch is ``batch_size * world_size``.

    ``repeats > 1`` is DeiT's repeated augmentation: each drawn image appears
    ``repeats`` times in a row (so the copies fall in the same global batch and
    get independent augmentations) and the epoch is cut back to the data
    set's size, so an epoch sees ``1/repeats`` of the images, each ``repeats``
    times, for the same number of steps.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool = True,
        drop_last: bool = True,
        seed: int = 0,
        repeats: int = 1,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        check_batching(batch_size, repeats, rank, world_size)
        self.images, self.labels = images, labels
        self.batch_size = batch_size
        self.shuffle, self.drop_last = shuffle, drop_last
        self.seed, self.repeats = seed, repeats
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        if len(self) == 0:
            raise ValueError(
                f"{len(images)} images make no batch of {batch_size} on each of "
                f"{world_size} rank(s) with drop_last={drop_last}"
            )

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose permutation the next iteration draws."""
        self.epoch = epoch

    def _shard_size(self) -> int:
        """Number of examples this rank iterates over in one epoch."""
        return shard_size(
            len(self.images),
            batch_size=self.batch_size,
            world_size=self.world_size,
            drop_last=self.drop_last,
        )

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        per_rank = self._shard_size()
        if self.drop_last:
            return per_rank // self.batch_size
        return math.ceil(per_rank / self.batch_size)

    def indices(self) -> torch.Tensor:
        """This rank's example indices for the current epoch, in batch order."""
        return epoch_order(
            len(self.images),
            seed=self.seed,
            epoch=self.epoch,
            batch_size=self.batch_size,
            repeats=self.repeats,
            rank=self.rank,
            world_size=self.world_size,
            shuffle=self.shuffle,
            drop_last=self.drop_last,
        )

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield the epoch's batches as views gathered on the data's device."""
        return self.iter_from(0)

    def iter_from(self, first_batch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield the epoch's batches from number ``first_batch`` on (to resume mid-epoch)."""
        order = self.indices().to(self.images.device)
        for start in range(first_batch * self.batch_size, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            yield self.images[idx], self.labels[idx]


def shard_size(
    n: int,
    *,
    batch_size: int,
    world_size: int = 1,
    drop_last: bool = True,
    rank: int = 0,
    pad: bool = True,
) -> int:
    """Examples one rank sees per epoch out of ``n`` (see :func:`epoch_order`).

    ``drop_last``: whole global batches only, so every rank gets the same count.
    Otherwise every example once: ``pad`` (what :class:`BatchLoader` does)
    rounds each rank up to ``ceil(n / world_size)`` by wrapping around;
    without it the first ``n % world_size`` ranks get one example more.
    """
    if drop_last:
        return (n // (batch_size * world_size)) * batch_size
    if pad:
        return math.ceil(n / world_size)
    return len(range(rank, n, world_size))


def epoch_order(
    n: int,
    *,
    seed: int,
    epoch: int,
    batch_size: int,
    repeats: int = 1,
    rank: int = 0,
    world_size: int = 1,
    shuffle: bool = True,
    drop_last: bool = True,
    pad: bool = True,
) -> torch.Tensor:
    """This rank's example indices (int64) for one epoch over ``n`` examples, in batch order.

    The one definition of the global order, shared by the in-memory
    :class:`BatchLoader` and the streaming ``deit.data.stream.StreamLoader`` so
    that both draw the same batches. The global order is a permutation seeded
    by ``(seed, epoch)`` (or ``0..n-1`` without ``shuffle``); with ``repeats``
    each drawn example appears that many times in a row and the order is cut
    back to ``n``; it is then cut to whole global batches (``drop_last``) or
    padded by wrapping around (``pad``), and rank ``r`` takes positions
    ``r, r + world_size, ...``, so the copies of a repeated example land on
    different ranks of one global batch. Position ``j`` of the result is
    position ``rank + j * world_size`` of the global order.
    """
    if shuffle:
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(n, generator=g)
    else:
        order = torch.arange(n)
    order = order.repeat_interleave(repeats)[:n]
    per_rank = shard_size(
        n, batch_size=batch_size, world_size=world_size, drop_last=drop_last, rank=rank, pad=pad
    )
    if not drop_last and not pad:
        return order[rank::world_size]
    if not drop_last and per_rank * world_size > n:
        # Pad by wrapping around so every rank gets equally many examples.
        order = torch.cat([order, order[: per_rank * world_size - n]])
    order = order[: per_rank * world_size]
    return order[rank::world_size]
