"""The order of an epoch over WebDataset shards: a function of the seed, never of the workers.

What this room holds: :func:`epoch_plan` (this rank's sample ids in order,
and the stream each comes from), :func:`stream_shards` (the shards each
stream reads), :func:`buffer_shuffle` (webdataset's shuffle buffer, seeded)
and :func:`fewest` (the samples every rank can be given). The rule:

1. the shards are permuted by ``(seed, epoch)``; rank ``r`` of ``W`` takes
   every ``W``-th, from the ``r``-th, so ranks never share a shard;
2. a rank's shards are dealt to ``STREAMS`` streams (fewer when it has fewer
   shards), each read front to back and shuffled through a buffer of
   ``buffer`` samples seeded by ``(seed, epoch, rank, stream)``;
3. the streams are interleaved one sample each in turn, and the epoch is cut
   to whole batches (training: every rank the same number, the smallest a
   rank can get from its shards) or not at all (evaluation).

:class:`~deit.data.shard_loader.ShardLoader` reads the shards in this order.
"""

from __future__ import annotations

import numpy as np

STREAMS = 16
"""Shard streams per rank: the workers one rank can keep busy, and the shards it reads at once."""


def buffer_shuffle(ids: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``ids`` in the order a shuffle buffer of ``size`` emits them (webdataset's rule): each
    arriving id joins the buffer; once it is full, a uniformly drawn one leaves; at the end the
    rest leave in random order. Samples move at most about ``size`` places from where read."""
    out, held, draws = [], [], rng.random(len(ids))
    for t, sample in enumerate(ids.tolist()):
        held.append(sample)
        if len(held) >= size:
            i = int(draws[t] * len(held))
            out.append(held[i])
            held[i] = held[-1]
            held.pop()
    out += rng.permutation(np.array(held, dtype=np.int64)).tolist()
    return np.array(out, dtype=np.int64)


def stream_shards(
    n: int, *, seed: int, epoch: int, rank: int, world_size: int, shuffle: bool
) -> list[list[int]]:
    """The shards each of this rank's streams reads in ``epoch``, in reading order."""
    shards = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
    mine, streams = shards[rank::world_size], max(1, min(STREAMS, n // world_size))
    return [mine[s::streams].tolist() for s in range(streams)]


def epoch_plan(
    counts: tuple[int, ...], *, seed: int, epoch: int, rank: int = 0, world_size: int = 1,
    shuffle: bool = True, buffer: int = 1000, repeats: int = 1,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """This rank's epoch: (the global sample ids in order, the stream of each position).

    A sample's global id is its shard's first id (the counts before it)
    plus its place in the shard. See the module's text for the rule;
    ``repeats`` (repeated augmentation) repeats each drawn sample that many
    times in a row within its stream, cut back to the stream's length.
    """
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    streams = stream_shards(len(counts), seed=seed, epoch=epoch, rank=rank,
                            world_size=world_size, shuffle=shuffle)  # fmt: skip
    ids, which, turn = [], [], []
    for s, own in enumerate(streams):
        seq = np.concatenate([np.arange(starts[i], starts[i + 1]) for i in own])
        if shuffle and buffer > 1:
            seq = buffer_shuffle(seq, buffer, np.random.default_rng([seed, epoch, rank, s]))
        seq = np.repeat(seq, repeats)[: len(seq)]
        ids.append(seq)
        which.append(np.full(len(seq), s))
        turn.append(np.arange(len(seq)) * len(streams) + s)
    order = np.argsort(np.concatenate(turn), kind="stable")
    return np.concatenate(ids)[order], np.concatenate(which)[order]


def fewest(counts: tuple[int, ...], world_size: int) -> int:
    """The fewest samples a rank can be dealt in an epoch: its fewest shards, the smallest."""
    return sum(sorted(counts)[: len(counts) // world_size])
