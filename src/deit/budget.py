"""Equal compute for any training-set size: a budget in images seen, and the teacher's own rule.

A student's ``budget_images`` fixes how many images it sees, whatever the
size N of its training set: ``epochs`` becomes budget / (images per epoch),
and what the preset counts in epochs keeps its share of the run (warm-up,
evaluation cadence, the resolution and token schedules are stretched by the
same factor). A 5,000-image run then costs what the 50,000-image run of the
same preset costs, and at full size a budget of the preset's epochs × N
changes nothing. The stretch is idempotent: applied to an already budgeted
config it changes nothing, so a resumed run settles to the same schedule.

A teacher trained on a subset (``deit teacher --set train_size=N``), or on a
whole image folder of N images, follows :func:`teacher_schedule`: the shipped
recipe on the whole of CIFAR (or 50,000 images or more); on N images,
a fixed 160,000 images seen in batches of about N/16, evaluated about eight
times. At N ≤ 10,000 that is meant to take at most 15 minutes on a 2-core CPU
(measured: results/teacher-pays/).
"""

from __future__ import annotations

import dataclasses
import math

from deit.config import TrainConfig

TEACHER_FULL = {"epochs": 16, "batch_size": 1024, "eval_every": 1}  # the shipped teacher's
TEACHER_SUBSET_IMAGES = 160_000  # images a subset's teacher sees in all
TEACHER_EVALUATIONS = 8  # evaluations of a subset's teacher, about


def stretch_schedule(schedule: tuple, factor: float) -> tuple:
    """``schedule`` (one entry per epoch) for a run ``factor`` times as many epochs long.

    Entry j of the new schedule is the old entry of epoch ⌊j / factor⌋, so every
    setting keeps its share of the run; factor 1 returns it unchanged.
    """
    length = round(len(schedule) * factor)
    return tuple(schedule[min(len(schedule) - 1, math.floor(j / factor))] for j in range(length))


def with_budget(config: TrainConfig, images_per_epoch: int) -> TrainConfig:
    """``config`` with its epochs set by ``budget_images`` (unchanged without a budget).

    ``images_per_epoch`` is what one epoch shows (steps × batch × ranks, repeats
    included). Warm-up, ``eval_every`` and the per-epoch schedules are stretched
    by the same factor, so the preset's shape is kept at any training-set size.
    """
    if not config.budget_images:
        return config
    epochs = max(1, round(config.budget_images / images_per_epoch))
    factor = epochs / config.epochs
    return dataclasses.replace(
        config,
        epochs=epochs,
        warmup_epochs=config.warmup_epochs * factor,
        eval_every=max(1, round(config.eval_every * factor)),
        img_size_schedule=stretch_schedule(config.img_size_schedule, factor),
        token_keep_schedule=stretch_schedule(config.token_keep_schedule, factor),
    )


def teacher_schedule(train_size: int, epochs: int = 0) -> dict[str, int]:
    """Epochs, batch size and evaluation cadence of a teacher on ``train_size`` images (0: all).

    The whole set (or a subset of 50,000 or more) gets the shipped recipe. A
    smaller subset sees :data:`TEACHER_SUBSET_IMAGES` images (at least 16
    epochs) in batches of a power of two near N/16 (64 to 1024, so an epoch has
    16 to 32 steps; never more than N: small batches are slow on a CPU), and is
    evaluated about :data:`TEACHER_EVALUATIONS` times over its ``epochs`` (0: the
    rule's).
    """
    if not train_size or train_size >= 50_000:
        return dict(TEACHER_FULL, epochs=epochs or TEACHER_FULL["epochs"])
    batch = 2 ** int(math.log2(max(1, train_size // 16)))
    epochs = epochs or max(TEACHER_FULL["epochs"], round(TEACHER_SUBSET_IMAGES / train_size))
    return {
        "epochs": epochs,
        "batch_size": min(1024, max(64, batch), 2 ** int(math.log2(train_size))),
        "eval_every": max(1, math.ceil(epochs / TEACHER_EVALUATIONS)),
    }
