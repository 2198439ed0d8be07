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

Decoding is the cost, so it is cut where the transform allows: a JPEG is
decoded at 1/2, 1/4 or 1/8 scale (Pillow's draft mode, done by libjpeg in
the DCT) whenever the crop still covers at least the output size after it.
"""

from __future__ import annotations

import math
import os
import signal
import sys
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from numpy.random import Generator
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from deit.data.folder import open_rgb
from deit.data.layout import DataError
from deit.data.loader import epoch_order, shard_size

MODES = ("train", "eval", "plain")
BICUBIC = Image.Resampling.BICUBIC
Ratio = tuple[float, float]
SCALE, RATIO = (0.08, 1.0), (3 / 4, 4 / 3)  # DeiT's (timm's, torchvision's) crop ranges


def crop_params(
    width: int, height: int, rng: Generator, scale: Ratio = SCALE, ratio: Ratio = RATIO
) -> tuple[int, int, int, int]:
    """``(left, top, w, h)`` of a random crop of a ``width``×``height`` image.

    torchvision's ``RandomResizedCrop.get_params`` (what DeiT and timm train
    with), drawn from ``rng``: up to 10 attempts of an area fraction uniform
    in ``scale`` and an aspect ratio log-uniform in ``ratio``; the first box
    that fits is placed uniformly. If none fits, the central crop, clipped to
    the ratio range (the whole image when its aspect is inside it).
    """
    area = width * height
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return left, top, w, h
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        w, h = round(height * max(ratio)), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def random_resized_crop(
    image: Image.Image, size: int, rng: Generator, scale: Ratio = SCALE, ratio: Ratio = RATIO
) -> Image.Image:
    """A :func:`crop_params` box of a decoded ``image``, resized to ``size``×``size`` (bicubic).

    The crop and the resize are one Pillow ``resize(box=...)``, which also
    takes fractional boxes (:func:`train_image` needs them on drafted JPEGs).
    """
    left, top, w, h = crop_params(image.width, image.height, rng, scale, ratio)
    return image.resize((size, size), BICUBIC, box=(left, top, left + w, top + h))


def train_image(
    path: str, size: int, rng: Generator, scale: Ratio = SCALE, ratio: Ratio = RATIO
) -> torch.Tensor:
    """The training crop of the image at ``path``: a uint8 tensor 3×``size``×``size``.

    The crop box is drawn from the header's size (``Image.open`` decodes
    nothing), then a JPEG is decoded at the largest draft reduction that
    keeps the box at least ``size`` pixels on each side and the box is
    scaled to the drafted image. Same box, and on a non-JPEG the same pixels,
    as :func:`random_resized_crop` of the fully decoded image.
    """
    header = _header_size(path)
    if header is None:  # open_rgb raises the DataError saying why
        return to_tensor(random_resized_crop(open_rgb(path), size, rng, scale, ratio))
    width, height = header
    left, top, w, h = crop_params(width, height, rng, scale, ratio)
    reduction = min(w, h) / size
    draft = None
    if reduction >= 2:  # draft scale = min(width // dw, height // dh) <= reduction
        draft = (math.ceil(width / reduction), math.ceil(height / reduction))
    image = open_rgb(path, draft)
    sx, sy = _draft_factor((width, height), image.size)
    box = (left * sx, top * sy, (left + w) * sx, (top + h) * sy)
    return to_tensor(image.resize((size, size), BICUBIC, box=box))


def eval_image(path: str, size: int, crop_pct: float = 0.875) -> torch.Tensor:
    """DeiT's evaluation transform of the image at ``path``: uint8 3×``size``×``size``.

    The short side resized to ``int(size / crop_pct)`` (bicubic, long side as
    torchvision's ``Resize`` computes it from the original size), then the
    central ``size``×``size`` crop. A JPEG is first decoded at the largest
    draft reduction that keeps its short side at least that long.
    """
    if not 0 < crop_pct <= 1:
        raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
    short = int(size / crop_pct)
    header = _header_size(path)
    image = open_rgb(path, (short, short) if header else None)
    width, height = header or image.size
    if width <= height:
        new = (short, int(short * height / width))
    else:
        new = (int(short * width / height), short)
    image = image.resize(new, BICUBIC)
    left, top = round((new[0] - size) / 2), round((new[1] - size) / 2)
    return to_tensor(image.crop((left, top, left + size, top + size)))


def plain_image(path: str, size: int) -> torch.Tensor:
    """The image at ``path`` as uint8 3×``size``×``size``, resized (bicubic) only if not already.

    For data sets stored at the training size (CIFAR exported as 32-pixel
    PNGs), whose random crops are done on the device instead.
    """
    image = open_rgb(path, (size, size))
    if image.size != (size, size):
        image = image.resize((size, size), BICUBIC)
    return to_tensor(image)


def to_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB Pillow image as a contiguous uint8 tensor 3×H×W."""
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()


def _header_size(path: str) -> tuple[int, int] | None:
    """(width, height) read from the file's header, or None if Pillow cannot open it."""
    try:
        with Image.open(path) as image:
            return image.size
    except Exception:  # reported, with its reason, by the open_rgb that follows
        return None


def _draft_factor(original: tuple[int, int], decoded: tuple[int, int]) -> tuple[float, float]:
    """Decoded pixels per original pixel: 1/s for a JPEG drafted at 1/s, else the size ratio."""
    for s in (1, 2, 4, 8):
        if all((o + s - 1) // s == d for o, d in zip(original, decoded, strict=True)):
            return 1 / s, 1 / s
    return decoded[0] / original[0], decoded[1] / original[1]


class ImageStream(Dataset):
    """The samples as a map-style Dataset keyed by ``(index, epoch, draw)``.

    ``draw`` is the position in the epoch's global order and, with ``seed``
    and ``epoch``, seeds the image's random crop (``numpy.random.default_rng([
    seed, epoch, draw])``): the copies of a repeated image get different
    crops, and no crop depends on the worker. The epoch travels in the key
    because persistent workers hold their own copy of this object.

    An item is ``(image, label, None)``, or ``(None, -1, (path, message))``
    when the file cannot be decoded, so that the training process, not the
    worker, reports it (one line) or skips it. Paths are held in one bytes
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
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        encoded = [os.fsencode(path) for path, _ in samples]
        self._blob = b"".join(encoded)
        self._ends = np.cumsum([len(e) for e in encoded], dtype=np.int64)
        self.labels = np.array([label for _, label in samples], dtype=np.int64)
        self.mode, self.size, self.seed = mode, size, seed
        self.scale, self.ratio, self.crop_pct = scale, ratio, crop_pct

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
                rng = np.random.default_rng([self.seed, epoch, draw])
                image = train_image(path, self.size, rng, self.scale, self.ratio)
            elif self.mode == "eval":
                image = eval_image(path, self.size, self.crop_pct)
            else:
                image = plain_image(path, self.size)
        except DataError as err:
            return None, -1, (path, str(err))
        return image, int(self.labels[index]), None


def collate(items: list) -> tuple[torch.Tensor | None, torch.Tensor, list[tuple[str, str]]]:
    """Stack the decoded items of a batch; list the failures ``(path, message)`` apart."""
    good = [(image, label) for image, label, failure in items if failure is None]
    failures = [failure for _, _, failure in items if failure is not None]
    images = torch.stack([image for image, _ in good]) if good else None
    return images, torch.tensor([label for _, label in good], dtype=torch.int64), failures


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


def _ignore_stop_signals(worker_id: int) -> None:
    """In a worker: leave Ctrl-C and SIGTERM to the training process.

    A terminal or a scheduler signals the whole process group; a worker killed
    by it would end the run with a traceback before the training process could
    save its checkpoint. The training process stops cleanly, then shuts the
    workers down itself.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


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
    on Linux. A file that cannot be decoded raises one-line
    :class:`~deit.data.layout.DataError` naming it, or with ``skip_bad`` is
    dropped from its batch (a batch left empty is not yielded) and its path
    added to :attr:`skipped` (each path once).
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
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if repeats < 1:
            raise ValueError(f"repeats must be at least 1, got {repeats}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world of size {world_size}")
        if workers < 0:
            raise ValueError(f"workers must be 0 or more, got {workers}")
        self.dataset = ImageStream(
            samples, mode=mode, size=size, seed=seed, scale=scale, ratio=ratio, crop_pct=crop_pct
        )
        self.batch_size, self.seed, self.repeats = batch_size, seed, repeats
        self.rank, self.world_size = rank, world_size
        self.shuffle = mode != "eval" if shuffle is None else shuffle
        self.drop_last = mode != "eval" if drop_last is None else drop_last
        self.device, self.skip_bad = torch.device(device), skip_bad
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
            self._loader = DataLoader(
                self.dataset,
                batch_sampler=self._sampler,
                num_workers=self.workers,
                collate_fn=collate,
                pin_memory=self.device.type == "cuda",
                prefetch_factor=self.prefetch if self.workers else None,
                persistent_workers=self.workers > 0,
                multiprocessing_context="fork"
                if sys.platform == "linux" and self.workers
                else None,
                # Its own generator: DataLoader draws a seed at every iteration,
                # which would otherwise advance the global torch RNG.
                generator=torch.Generator(),
                worker_init_fn=_ignore_stop_signals,
            )
        return self._loader

    def close(self) -> None:
        """Stop the worker processes now; the next iteration starts new ones.

        Otherwise they end when the loader is garbage collected, and a
        collection that happens to run inside an ``import`` stalls for 5 s per
        worker (the DataLoader's shutdown then waits on its join timeout).
        """
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
            if images is not None:
                yield (
                    images.to(self.device, non_blocking=nb),
                    labels.to(self.device, non_blocking=nb),
                )
        if failure is not None:
            self.close()  # now, not in whatever the garbage collector interrupts later
            raise DataError(failure)
