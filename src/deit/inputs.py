"""What a training run reads: CIFAR held in memory, an image folder streamed from disk, shards.

Each gives the trainer the same three things: a train loader of uint8 batches
on the device in the one global order of :func:`deit.data.loader.epoch_order`
(``len``, ``set_epoch``, ``iter_from`` for a mid-epoch resume), this rank's
evaluation batches, and the class names and normalisation the student uses.

CIFAR stays a tensor on the training device (no workers, no per-image
Python). A folder (``dataset=folder``, ``data_dir`` = its root) is decoded
per image in ``workers`` processes: DeiT's random-resized crop to the
student's size (``train_crop=random_resized``), or the image resized to that
size and then CIFAR's padded crop (``train_crop=none``, for images already
at the model's size). Evaluation is DeiT's: the short side resized to
size/``eval_crop_pct``, then the central square (``train_crop=none``: the
image resized to the size). Evaluation images that fit in 512 MB are decoded
once and kept.

``decode_once=True`` (folders only) trains a folder like CIFAR instead
(:mod:`deit.decode_once`). ``dataset=shards`` streams WebDataset shards
(:mod:`deit.data.shard_loader`) with the folder's per-image views;
``data_dir`` names them (a folder, a pattern or a URL).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch

from deit.budget import with_budget
from deit.config import TrainConfig
from deit.data import (
    CIFAR,
    BatchLoader,
    DataError,
    holdout_validation,
    load_cifar,
    scan_folder,
    truncate,
)
from deit.data.augment import dataset_stats
from deit.data.shard_loader import ShardLoader
from deit.data.shards import find_shard_splits
from deit.data.stream import StreamLoader
from deit.data.subsets import (
    balanced_subset,
    cifar_subset,
    cifar_validation,
    fingerprint,
    validation_part,
)
from deit.decode_once import Batches, DecodeOnce, Samples
from deit.distributed import World
from deit.hardware import usable_cores

# Evaluation batches of 64: on a CPU larger ones spill a student's activations out of cache
# (micro and DeiT-Ti at patch 4 evaluate 1.6x as fast as at 500, same logits bit for bit:
# benchmarks/eval_batch.py); on a GPU evaluation is a small share of an epoch either way.
EVAL_BATCH = 64
CACHE_BYTES = 512 * 2**20  # evaluation images kept decoded up to this size


@dataclass
class RunInputs:
    """The data side of a run: classes, normalisation, the train loader, evaluation batches."""

    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train: BatchLoader | StreamLoader | DecodeOnce | ShardLoader
    eval_batches: Callable[[], Batches]  # this rank's share, every image once over the ranks
    crop_padding: int  # the batched padded crop: 0 after a per-image random-resized crop

    @property
    def num_classes(self) -> int:
        """Number of classes the heads predict."""
        return len(self.classes)

    evaluation: StreamLoader | ShardLoader | None = None  # a folder's or the shards' evaluation
    train_set: dict = dataclasses.field(default_factory=dict)  # see :func:`train_set_record`

    @property
    def skipped(self) -> list[str]:
        """Files that failed to decode and were skipped (``skip_bad_files``), so far."""
        loaders = (self.train, self.evaluation)
        return sorted({path for loader in loaders for path in getattr(loader, "skipped", [])})


def normalization(config: TrainConfig) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The (mean, std) the student's inputs are normalised with."""
    name = config.normalization
    if name == "dataset":
        name = "imagenet" if config.dataset in ("folder", "shards") else config.dataset
    return dataset_stats(name)


def load_inputs(config: TrainConfig, world: World) -> RunInputs:
    """The data of ``config`` on ``world``'s device; ``DataError`` for a missing or bad set.

    Too few images for one batch per rank is a ``DataError`` too, before any work.
    """
    try:
        return _load_inputs(config, world)
    except ValueError as err:  # the loaders' own checks (e.g. no batch fits)
        raise DataError(f"{config.data_dir or config.dataset}: {err}") from None


def _load_inputs(config: TrainConfig, world: World) -> RunInputs:
    mean, std = normalization(config)
    if config.dataset == "folder":
        return _folder_inputs(config, world, mean, std)
    if config.dataset == "shards":
        return _shard_inputs(config, world, mean, std)
    data, kept = cifar_splits(config)
    to, rank, ranks = world.device, world.rank, world.world_size
    train = BatchLoader(
        data.train_images.to(to), data.train_labels.to(to), config.batch_size, seed=config.seed,
        repeats=config.repeated_augmentation, rank=rank, world_size=ranks,
    )  # fmt: skip
    images, labels = data.test_images[rank::ranks].to(to), data.test_labels[rank::ranks].to(to)

    def eval_batches() -> Batches:
        for start in range(0, len(images), EVAL_BATCH):
            yield images[start : start + EVAL_BATCH], labels[start : start + EVAL_BATCH]

    return RunInputs(data.classes, mean, std, train, eval_batches, config.crop_padding,
                     train_set=train_set_record(config, kept))  # fmt: skip


def cifar_splits(config) -> tuple[CIFAR, torch.Tensor]:
    """CIFAR as a run (student or teacher ``config``) selects it, and the training indices kept.

    ``train_size`` keeps a class-balanced subset (:mod:`deit.data.subsets`),
    drawn by ``subset_seed``. ``validation`` evaluates on images held out of
    the training images: a class-balanced tenth of the subset, or 5,000 of the
    whole set (seeded, always the same). ``test_size`` keeps the first images
    of the evaluation set.
    """
    data = load_cifar(config.dataset, config.data_dir, download=config.download)
    if config.validation and not config.train_size:
        data = holdout_validation(data)
    data, kept = cifar_subset(data, config.train_size, config.subset_seed)
    if config.validation and config.train_size:
        data, kept = cifar_validation(data, kept)
    return truncate(data, test_size=config.test_size), kept


def full_train_size(config) -> tuple[int, int]:
    """(images, classes) of the whole training set ``config`` draws its subsets from.

    The training set after the ``validation`` split, before ``train_size``; a
    student's or a teacher's config.
    """
    unnamed = {"subset_sha256": ""} if hasattr(config, "subset_sha256") else {}
    whole = dataclasses.replace(config, train_size=0, **unnamed)
    if config.dataset == "folder":
        classes, train, _, _ = folder_selection(whole)
        return len(train), len(classes)
    data, _ = cifar_splits(whole)
    return len(data.train_labels), data.num_classes


def train_set_record(config, kept: torch.Tensor | list[int]) -> dict:
    """What a run records of its training images: count, subset, seed and fingerprint.

    A config that names a ``subset_sha256`` (a resumed run, or a student told
    its teacher's) must get exactly those images, else ``DataError``.
    """
    record = {"images": len(kept), "train_size": config.train_size,
              "subset_seed": config.subset_seed, "subset_sha256": fingerprint(kept)}  # fmt: skip
    expected = getattr(config, "subset_sha256", "")
    if expected and expected != record["subset_sha256"]:
        raise DataError(
            f"the training images (subset {record['subset_sha256']}) are not the ones recorded "
            f"({expected}): the data set, train_size, subset_seed or validation changed"
        )
    return record


def settle(config: TrainConfig, inputs: RunInputs, world_size: int = 1) -> TrainConfig:
    """``config`` fitted to its data: epochs from ``budget_images``; the subset fingerprint.

    Idempotent, so a resumed run (whose saved config is settled) is unchanged.
    """
    per_epoch = len(inputs.train) * config.batch_size * world_size
    config = with_budget(config, per_epoch)
    return dataclasses.replace(config, subset_sha256=inputs.train_set["subset_sha256"])


def folder_selection(config) -> tuple[tuple[str, ...], Samples, Samples, list[int]]:
    """(classes, train samples, evaluation samples, indices of the training samples kept) of
    the folder, as the config selects them.

    ``validation`` holds out a tenth of each class of ``train/`` (seeded,
    always the same) and evaluates on it instead of ``val/``; ``train_size``
    keeps a class-balanced subset drawn by ``subset_seed``
    (:mod:`deit.data.subsets`) and ``test_size`` a seeded random one. Works for
    a student's or a teacher's config.
    """
    folder = scan_folder(config.data_dir)
    train, test, classes = folder.train, folder.val, folder.classes
    if config.validation and not config.train_size:
        train, test = _hold_out(train, len(classes))
    kept = list(range(len(train)))
    if config.train_size:
        labels = [label for _, label in train]
        kept = balanced_subset(labels, config.train_size, len(classes), config.subset_seed,
                               classes).tolist()  # fmt: skip
    if config.validation and config.train_size:
        rest, held = validation_part([train[i][1] for i in kept], len(classes))
        test, kept = tuple(train[kept[i]] for i in held), [kept[i] for i in rest]
    return classes, tuple(train[i] for i in kept), subset(test, config.test_size), kept


def _hold_out(samples: Samples, num_classes: int) -> tuple[Samples, Samples]:
    """Split a seeded tenth of every class off ``samples``: (the rest, the held-out part)."""
    order = torch.randperm(len(samples), generator=torch.Generator().manual_seed(0)).tolist()
    members: list[list[int]] = [[] for _ in range(num_classes)]  # each class in that order
    for i in order:
        members[samples[i][1]].append(i)
    held = {i for own in members for i in own[: len(own) // 10]}
    keep = tuple(s for i, s in enumerate(samples) if i not in held)
    return keep, tuple(s for i, s in enumerate(samples) if i in held)


def subset(samples: Samples, size: int) -> Samples:
    """A seeded random ``size`` of ``samples`` in their order (0: all)."""
    if not size or size >= len(samples):
        return samples
    order = torch.randperm(len(samples), generator=torch.Generator().manual_seed(0))
    return tuple(samples[i] for i in sorted(order[:size].tolist()))


def workers(config: TrainConfig) -> int:
    """Loader processes: ``workers``, where -1 means one per core of this process's share.

    The share is :func:`~deit.hardware.usable_cores`: under torchrun the
    ranks on one machine split its cores instead of each starting one
    worker per core of the whole machine.
    """
    return usable_cores() if config.workers < 0 else config.workers


def _folder_inputs(config: TrainConfig, world: World, mean, std) -> RunInputs:
    """Streamed training batches and (cached when small) evaluation batches of a folder."""
    # Rank 0 lists the folder, the others take its listing: one scan of a shared file
    # system, and every rank the same samples under the same indices.
    selection = world.from_main(lambda: folder_selection(config))
    classes, train_samples, eval_samples, kept = selection
    size, rrc = config.img_size, config.train_crop == "random_resized"
    common = {"size": size, "rank": world.rank, "world_size": world.world_size,
              "workers": workers(config), "device": world.device}  # fmt: skip
    if config.decode_once:
        train = DecodeOnce(config, world, train_samples, workers(config))
    else:
        train = StreamLoader(
            train_samples, config.batch_size, mode="train" if rrc else "plain", seed=config.seed,
            repeats=config.repeated_augmentation, skip_bad=config.skip_bad_files,
            scale=tuple(config.rrc_scale), **common,
        )  # fmt: skip
    evaluation = StreamLoader(
        eval_samples, EVAL_BATCH, mode="eval" if rrc else "plain", shuffle=False,
        drop_last=False, skip_bad=config.skip_bad_files, crop_pct=config.eval_crop_pct, **common,
    )  # fmt: skip
    padding = 0 if rrc else config.crop_padding
    eval_batches = _kept(evaluation, len(eval_samples) * 3 * size * size <= CACHE_BYTES)
    return RunInputs(classes, mean, std, train, eval_batches, padding, evaluation,
                     train_set_record(config, kept))  # fmt: skip


def _kept(evaluation: StreamLoader | ShardLoader, fits: bool) -> Callable[[], Batches]:
    """The evaluation batches: decoded on the first pass, then kept when they ``fits``."""
    cache: list[tuple[torch.Tensor, torch.Tensor]] = []

    def eval_batches() -> Batches:
        if cache:
            yield from cache
            return
        decoded = []
        for batch in evaluation:
            decoded.append(batch)
            yield batch
        evaluation.close()
        if fits:
            cache.extend(decoded)

    return eval_batches


def _shard_inputs(config: TrainConfig, world: World, mean, std) -> RunInputs:
    """Training and evaluation batches streamed from the shards ``data_dir`` names.

    The classes come from the training shards (their info file, else their
    labels); the evaluation shards must use the same classes.
    """

    # Rank 0 reads the info file (or counts the shards), every rank uses what it found.
    train_set, val_set = world.from_main(
        lambda: find_shard_splits(config.data_dir, config.val_shards, config.shard_info)
    )
    size, rrc = config.img_size, config.train_crop == "random_resized"
    common = {"size": size, "rank": world.rank, "world_size": world.world_size,
              "workers": workers(config), "device": world.device,
              "skip_bad": config.skip_bad_files}  # fmt: skip
    train = ShardLoader(
        train_set, config.batch_size, mode="train" if rrc else "plain", seed=config.seed,
        repeats=config.repeated_augmentation, scale=tuple(config.rrc_scale),
        buffer=config.shard_buffer, **common,
    )  # fmt: skip
    evaluation = ShardLoader(val_set, EVAL_BATCH, mode="eval" if rrc else "plain",
                             crop_pct=config.eval_crop_pct, **common)  # fmt: skip
    eval_batches = _kept(evaluation, len(val_set) * 3 * size * size <= CACHE_BYTES)
    record = train_set_record(config, list(range(len(train_set))))
    record["per_class"] = list(train_set.per_class)
    return RunInputs(train_set.classes, mean, std, train, eval_batches,
                     0 if rrc else config.crop_padding, evaluation, record)  # fmt: skip
