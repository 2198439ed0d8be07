"""Streaming batches from image files: decode and crop in worker processes, augment on the device.

ImageNet does not fit in memory the way CIFAR does (`deit.data.loader`), so
each image is read, decoded and cropped to the training size in DataLoader
worker processes; what crosses to the training process is a uint8 batch, and
the rest of the augmentation (flip, RandAugment, erasing, Mixup/CutMix) runs
batched on the device (`deit.data.pipeline.TrainAugment`), as for CIFAR.

:class:`StreamLoader` has :class:`~deit.data.loader.BatchLoader`'s interface
and draws the same global order (`deit.data.loader.epoch_order`). Each
image's random crop depends only on ``(seed, epoch, position in the epoch's
global order)``, never on which worker decodes it or how many there are, so
batches are identical with 0 or 8 workers, and a resumed epoch replays the
crops of an uninterrupted one.

The per-image views themselves (random-resized crop, evaluation crop) are
:mod:`deit.data.transforms`'. On a GPU the training crops are resized
there instead (``resize_on_device``): the workers only decode and crop, and
a batch crosses as one buffer of uint8 crops of mixed sizes
(:func:`deit.data.packing.pack_crops`) that the device resizes
(:func:`deit.data.resize.resize_crops`). A batch is assembled in shared
memory in the worker, so it reaches the training process without a copy,
in buffers each worker reuses from batch to batch
(:class:`~deit.data.packing.SharedRing`): the loader resizes the crops,
or copies the images out, as each batch arrives (on a GPU the
DataLoader's pinning copies them), so none is handed on in a reused buffer.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from deit.data.layout import DataError
from deit.data.loader import check_batching, epoch_order, shard_size
from deit.data.packing import Batch, SharedRing, pack_planned, shared_uint8, stack_items
from deit.data.resize import resize_crops
from deit.data.transforms import (
    RATIO,
    SCALE,
    Ratio,
    crop_rng,
    eval_image,
    plain_image,
    plan_crop,
    train_crop,
    train_image,
)
from deit.data.workers import close_at_exit, shut_down, worker_loader

MODES = ("train", "eval", "plain")


class ImageStream(Dataset):
    """The samples as a map-style Dataset keyed by ``(index, epoch, draw)``.

    ``draw`` is the position in the epoch's global order and, with ``seed``
    and ``epoch``, seeds the image's random crop
    (:func:`~deit.data.transforms.crop_rng`): the copies of a repeated image get different
    crops, and no crop depends on the worker. The epoch travels in the key
    because persistent workers hold their own copy of this object.

    An item is ``(image, label, None)``, or ``(None, -1, (path, message))``
    when the file cannot be decoded, so that the training process, not the
    worker, reports it (one line) or skips it; with ``crop_only`` (train
    mode) the image is the crop before its resize, a uint8 h×w×3 array
    (:func:`~deit.data.transforms.train_crop`), and a whole batch comes
    packed into one buffer (:meth:`__getitems__`, into ``ring``'s buffers
    when given). Paths are held in one bytes
    blob: a list of a million ``str`` would be copied page by page into
    every forked worker as their reference counts change.
    """

    def __init__(
        self,
        samples: Sequence[tuple[str, int]],
        *,
        mode: str,
        size: int,
        seed: int = 0,
        scale: Ratio = SCALE,
        ratio: Ratio = RATIO,
        crop_pct: float = 0.875,
        crop_only: bool = False,
        ring: SharedRing | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if crop_only and mode != "train":
            raise ValueError(f"only train crops are resized on the device, not {mode!r} views")
        encoded = [os.fsencode(path) for path, _ in samples]
        self._blob = b"".join(encoded)
        self._ends = np.cumsum([len(e) for e in encoded], dtype=np.int64)
        self.labels = np.array([label for _, label in samples], dtype=np.int64)
        self.mode, self.size, self.seed = mode, size, seed
        self.scale, self.ratio, self.crop_pct = scale, ratio, crop_pct
        self.crop_only, self.ring = crop_only, ring

    def __len__(self) -> int:
        return len(self.labels)

    def path(self, index: int) -> str:
        """The file of sample ``index``."""
        start = int(self._ends[index - 1]) if index else 0
        return os.fsdecode(self._blob[start : int(self._ends[index])])

    def __getitem__(self, key: tuple[int, int, int]):
        index, epoch, draw = key
        path = self.path(index)
        try:
            if self.mode == "train":
                view = train_crop if self.crop_only else train_image
                rng = crop_rng(self.seed, epoch, draw)
                image = view(path, self.size, rng, self.scale, self.ratio)
            elif self.mode == "eval":
                image = eval_image(path, self.size, self.crop_pct)
            else:
                image = plain_image(path, self.size)
        except DataError as err:
            return None, -1, (path, str(err))
        return image, int(self.labels[index]), None

    def __getitems__(self, keys: list[tuple[int, int, int]]) -> Batch:
        """The batch of ``keys`` as a worker sends it (DataLoader asks for whole batches).

        Images are stacked (:func:`stack_items`), crops packed as they are
        decoded: every crop is planned from its file's header first
        (:func:`~deit.data.transforms.plan_crop`), then one buffer of their
        total size is taken and each JPEG decoded into the scratch buffer
        and its crop copied straight into place: one copy of each crop's
        pixels instead of two. Either goes into ``ring``'s next buffer when
        given, else a fresh shared one. Failures keep the batch's order.
        """
        alloc = self.ring or shared_uint8
        if not self.crop_only:
            return stack_items([self[key] for key in keys], alloc)
        planned, failures = [], []  # (position, plan, label); (position, path, message)
        for position, (index, epoch, draw) in enumerate(keys):
            path = self.path(index)
            try:
                rng = crop_rng(self.seed, epoch, draw)
                plan = plan_crop(path, self.size, rng, self.scale, self.ratio)
            except DataError as err:
                failures.append((position, path, str(err)))
                continue
            planned.append((position, plan, int(self.labels[index])))
        flat, shapes, kept, failed = pack_planned(planned, alloc)
        return Batch(
            (flat, shapes) if kept else None,
            torch.tensor([label for _, _, label in kept], dtype=torch.int64),
            [(path, message) for _, path, message in sorted(failures + failed)],
        )


def _as_sent(batch: Batch) -> Batch:
    """The DataLoader's collate: a batch comes whole from :meth:`ImageStream.__getitems__`."""
    return batch


class _Batches:
    """The batch sampler: lists of dataset keys for the iteration :class:`StreamLoader` set up."""

    def __init__(self, batch_size: int, rank: int, world_size: int) -> None:
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.order, self.epoch, self.first = [], 0, 0

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        order, ws = self.order, self.world_size
        for start in range(self.first * self.batch_size, len(order), self.batch_size):
            stop = min(start + self.batch_size, len(order))
            draws = range(self.rank + start * ws, self.rank + stop * ws, ws)  # global positions
            yield [(i, self.epoch, d) for i, d in zip(order[start:stop], draws, strict=True)]

    def __len__(self) -> int:
        return max(0, math.ceil(len(self.order) / self.batch_size) - self.first)


def device_resizes(asked: bool | None, mode: str, device: torch.device) -> bool:
    """Whether a loader leaves the resize of its crops to ``device``: ``asked``, else on a GPU.

    Only training crops can be (evaluation keeps DeiT's resize, then its
    centre crop): ValueError when asked for another ``mode``. For folders
    and shards alike.
    """
    if asked is None:
        return mode == "train" and device.type == "cuda"
    if asked and mode != "train":
        raise ValueError(f"only train crops are resized on the device, not {mode!r} views")
    return asked


class StreamLoader:
    """Yield ``(images, labels)`` decoded from files: uint8 B×3×S×S and int64, on ``device``.

    The interface of :class:`~deit.data.loader.BatchLoader` (``__len__``,
    :meth:`set_epoch`, :meth:`indices`, :meth:`iter_from`), over ``samples``,
    a sequence of ``(path, label)``. ``mode`` picks the transform:
    ``"train"`` (:func:`train_image`, random resized crop), ``"eval"``
    (:func:`eval_image`, centre ``crop_pct`` of the short side) or
    ``"plain"`` (:func:`plain_image`). The order
    follows ``shuffle`` and ``drop_last``, by default true for train and
    plain, false for eval: with drop_last it is exactly BatchLoader's
    (:func:`~deit.data.loader.epoch_order`: seeded permutation, repeated
    augmentation, rank shards); without, every image is seen exactly once
    across the ranks, with no wrap-around duplicates, so ranks may differ by
    one image (and one batch): sum correct counts across ranks, do not
    average per-rank accuracies or run per-batch collectives.

    ``workers`` processes decode (0: in this process), ``prefetch`` batches
    ahead each; they persist across epochs and use the 'fork' start method
    on Linux. ``resize_on_device`` (default: train crops on a CUDA device)
    leaves the resize of the crops to ``device``: the workers only decode
    and crop, and each batch is resized there in float32
    (:func:`~deit.data.resize.resize_crops`); otherwise each worker resizes
    its crops in uint8 (:func:`~deit.data.resize.resize_uint8`). Both are
    deterministic; they differ from each other by rounding. A file that
    cannot be decoded raises one-line :class:`~deit.data.layout.DataError`
    naming it, or with ``skip_bad`` is dropped from its batch (a batch left
    empty is not yielded) and its path added to :attr:`skipped` (each path
    once).
    """

    def __init__(
        self,
        samples: Sequence[tuple[str, int]],
        batch_size: int,
        *,
        size: int,
        mode: str = "train",
        seed: int = 0,
        repeats: int = 1,
        rank: int = 0,
        world_size: int = 1,
        workers: int = 0,
        device: str | torch.device = "cpu",
        skip_bad: bool = False,
        scale: Ratio = SCALE,
        ratio: Ratio = RATIO,
        crop_pct: float = 0.875,
        prefetch: int = 2,
        shuffle: bool | None = None,
        drop_last: bool | None = None,
        resize_on_device: bool | None = None,
    ) -> None:
        check_batching(batch_size, repeats, rank, world_size)
        if workers < 0:
            raise ValueError(f"workers must be 0 or more, got {workers}")
        device = torch.device(device)
        resize_on_device = device_resizes(resize_on_device, mode, device)
        self.dataset = ImageStream(
            samples, mode=mode, size=size, seed=seed, scale=scale, ratio=ratio,
            crop_pct=crop_pct, crop_only=resize_on_device,
            # Batches are packed into reused buffers (SharedRing's rule): iter_from
            # resizes, copies (or the DataLoader pins) each on receipt, never hands one on.
            ring=SharedRing(prefetch + 2),
        )  # fmt: skip
        self.resize_on_device = resize_on_device
        self.batch_size, self.seed, self.repeats = batch_size, seed, repeats
        self.rank, self.world_size = rank, world_size
        self.shuffle = mode != "eval" if shuffle is None else shuffle
        self.drop_last = mode != "eval" if drop_last is None else drop_last
        self.device, self.skip_bad = device, skip_bad
        self.skipped: list[str] = []
        self.epoch = 0
        if len(self) == 0:
            raise ValueError(
                f"{len(samples)} images make no batch of {batch_size} on each of "
                f"{world_size} rank(s) with drop_last={self.drop_last}"
            )
        self.workers, self.prefetch = workers, prefetch
        self._sampler = _Batches(batch_size, rank, world_size)
        self._loader: DataLoader | None = None

    def _data_loader(self) -> DataLoader:
        """The DataLoader, made on first use and kept, with its workers, until :meth:`close`."""
        if self._loader is None:
            self._loader = worker_loader(
                self.dataset, workers=self.workers, prefetch=self.prefetch, device=self.device,
                batch_sampler=self._sampler, collate_fn=_as_sent,
            )  # fmt: skip
            close_at_exit(self)
        return self._loader

    def close(self) -> None:
        """Stop the worker processes now; the next iteration starts new ones.

        Otherwise they end when the loader is garbage collected (a collection
        that happens to run inside an ``import`` stalls for 5 s per worker: the
        DataLoader's shutdown then waits on its join timeout), or when the
        interpreter exits.
        """
        shut_down(self._loader)
        self._loader = None

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order (and crops) the next iteration draws."""
        self.epoch = epoch

    def _shard(self) -> dict:
        """The arguments shared by :func:`shard_size` and :func:`epoch_order`: no padding."""
        return dict(
            batch_size=self.batch_size,
            world_size=self.world_size,
            rank=self.rank,
            drop_last=self.drop_last,
            pad=False,
        )

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        return math.ceil(shard_size(len(self.dataset), **self._shard()) / self.batch_size)

    def indices(self) -> torch.Tensor:
        """This rank's sample indices for the current epoch, in batch order."""
        order = dict(seed=self.seed, epoch=self.epoch, repeats=self.repeats, shuffle=self.shuffle)
        return epoch_order(len(self.dataset), **order, **self._shard())

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield the epoch's batches."""
        return self.iter_from(0)

    def iter_from(self, first_batch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield the epoch's batches from number ``first_batch`` on (to resume mid-epoch)."""
        s = self._sampler
        s.order, s.epoch, s.first = self.indices().tolist(), self.epoch, first_batch
        nb = self.device.type == "cuda"
        failure = None
        for images, labels, failures in self._data_loader():
            if failures and not self.skip_bad:
                failure = failures[0][1]
                break
            self.skipped += [p for p, _ in dict.fromkeys(failures) if p not in self.skipped]
            if images is None:
                continue
            if self.resize_on_device:
                flat, shapes = images
                flat = flat.to(self.device, non_blocking=nb)
                images = resize_crops(flat, shapes, self.dataset.size)
            elif self.workers and not nb:  # out of the worker's reused buffer (pinning copied it)
                images = images.clone()
            yield images.to(self.device, non_blocking=nb), labels.to(self.device, non_blocking=nb)
        if failure is not None:
            self.close()  # now, not in whatever the garbage collector interrupts later
            raise DataError(failure)
