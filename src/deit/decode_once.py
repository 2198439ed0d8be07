"""Folders trained like CIFAR: images decoded once into memory instead of streamed.

What this room holds today: :func:`decode_all` (a list of files → one uint8
N×3×S×S tensor of DeiT's evaluation views and their labels: a teacher's
inputs, or a folder's evaluation set) and :class:`DecodeOnce`, the train
loader of ``decode_once=true`` (train/ decoded on first use, then batched on
the device in exactly the streamed order, with DeiT's random-resized crop
applied there per batch). :mod:`deit.inputs` chooses it.

``decode_once=True`` (folders only): train/ is decoded once, on the first
use of the train loader (so ``deit eval``, which only evaluates, never
decodes it), into a uint8 tensor on the device, batched by
:class:`~deit.data.loader.BatchLoader` in exactly the streamed order.
``train_crop=random_resized``: each image is decoded at
``decode_size`` (0: round(img_size / 0.875)) as its central square (short
side to that size) and every batch gets DeiT's random-resized crop to the
student's size on the device (:class:`deit.data.crops.RandomResizedCrops`:
bicubic, not antialiased, boxes inside that central square).
``train_crop=none``: each image is decoded at the student's size exactly as
streamed (resized, then the padded crop), so the run is the streamed one.
It applies when N × 3 × decode_size² bytes fit on the device: ImageNet's
1 281 167 images at 256 px are 252 GB (no); 50 000 at 37 px are 205 MB (yes).
Under torchrun every rank decodes (and holds) the whole set.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from deit.config import TrainConfig
from deit.data import BatchLoader, DataError
from deit.data.crops import RandomResizedCrops
from deit.data.loader import shard_size
from deit.data.stream import StreamLoader
from deit.distributed import World

Batches = Iterator[tuple[torch.Tensor, torch.Tensor]]
Samples = tuple[tuple[str, int], ...]


def decode_all(
    samples: Samples, size: int, workers: int, crop_pct: float = 0.875
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode ``samples`` once into memory: uint8 ``N×3×size×size`` and int64 labels.

    Each image is DeiT's evaluation view (short side to size/``crop_pct``,
    central square), decoded in ``workers`` processes. For sets that fit in
    memory at a small size (a teacher's input), then trained on like CIFAR.
    """
    images, labels, _ = _decode(samples, size, workers, mode="eval", crop_pct=crop_pct)
    return images, labels


def _decode(
    samples: Samples, size: int, workers: int, *, mode: str, crop_pct: float = 0.875,
    skip_bad: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:  # fmt: skip
    """``samples`` decoded by a StreamLoader in ``mode``: images, labels, files skipped."""
    loader = StreamLoader(samples, 256, size=size, mode=mode, shuffle=False, drop_last=False,
                          workers=workers, crop_pct=crop_pct, skip_bad=skip_bad)  # fmt: skip
    images = torch.empty(len(samples), 3, size, size, dtype=torch.uint8)
    labels = torch.empty(len(samples), dtype=torch.int64)
    done = 0
    try:
        for batch, batch_labels in loader:
            images[done : done + len(batch)], labels[done : done + len(batch)] = batch, batch_labels
            done += len(batch)
    finally:
        loader.close()
    return images[:done], labels[:done], loader.skipped


class DecodeOnce:
    """The train loader of ``decode_once``: ``BatchLoader``'s interface over train/ in memory.

    The images are decoded when first needed (the trainer asks for the
    length before it creates the run directory), not when made, so that
    loading a run's inputs only to evaluate it decodes nothing. Then a
    :class:`BatchLoader` on the device, wrapped in
    :class:`~deit.data.crops.RandomResizedCrops` for ``train_crop=random_resized``.
    """

    def __init__(self, config: TrainConfig, world: World, samples: Samples, workers: int) -> None:
        n, batch, ranks = len(samples), config.batch_size, world.world_size
        if shard_size(n, batch_size=batch, world_size=ranks) < batch:  # BatchLoader's check, now
            raise ValueError(f"{n} images make no batch of {batch} on each of {ranks} rank(s) "
                             f"with drop_last=True")  # fmt: skip
        self.config, self.world, self.samples = config, world, samples
        self.workers = workers
        self.skipped: list[str] = []
        self.epoch = 0
        self._loader: BatchLoader | RandomResizedCrops | None = None

    @property
    def loader(self) -> BatchLoader | RandomResizedCrops:
        """The in-memory loader, decoding train/ on first use (``DataError`` for a bad set)."""
        if self._loader is None:
            try:
                self._loader = self._build()
            except ValueError as err:  # e.g. too few images left once bad ones are skipped
                raise DataError(f"{self.config.data_dir}: {err}") from None
        return self._loader

    def _build(self) -> BatchLoader | RandomResizedCrops:
        config, world = self.config, self.world
        rrc = config.train_crop == "random_resized"
        size = (config.decode_size or round(config.img_size / 0.875)) if rrc else config.img_size
        images, labels, self.skipped = _decode(
            self.samples, size, self.workers, mode="eval" if rrc else "plain", crop_pct=1.0,
            skip_bad=config.skip_bad_files,
        )  # fmt: skip
        to = world.device
        loader = BatchLoader(
            images.to(to), labels.to(to), config.batch_size, seed=config.seed,
            repeats=config.repeated_augmentation, rank=world.rank, world_size=world.world_size,
        )  # fmt: skip
        if not rrc:
            return loader
        return RandomResizedCrops(loader, config.img_size, seed=config.seed,
                                  scale=tuple(config.rrc_scale))  # fmt: skip

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order (and crops) the next iteration draws."""
        self.epoch = epoch

    def indices(self) -> torch.Tensor:
        """This rank's sample indices for the current epoch, in batch order."""
        self.loader.set_epoch(self.epoch)
        return self.loader.indices()

    def __iter__(self) -> Batches:
        return self.iter_from(0)

    def iter_from(self, first_batch: int) -> Batches:
        """Yield the epoch's batches from number ``first_batch`` on (to resume mid-epoch)."""
        self.loader.set_epoch(self.epoch)
        return self.loader.iter_from(first_batch)
