"""Training subsets that mean something: class-balanced, chosen by their own seed, fingerprinted.

``train_size=N`` trains on N images of the training set, N / classes of
each class (the remainder spread one image each over classes drawn by the
seed; a class with fewer images than its share gives all it has and the
others make up the difference). The images are drawn by ``subset_seed``,
not by the run's ``seed``, so a teacher and every student of a study see
exactly the same images whatever their own seeds. Within a class the draw
is a prefix of one seeded order, so with one ``subset_seed`` the subsets of a
balanced set are nested: the 1,000 images are among the 5,000, those among
the 10,000. A subset keeps the training set's order.

:func:`fingerprint` names a subset by a hash of its indices; runs record it
(``config.json`` ``subset_sha256``, ``summary.json`` ``train_set``), and a run
refuses data whose subset hashes otherwise (a resume on changed data, a
teacher trained on other images).

Tuning on a subset (``validation=true``) holds out a class-balanced tenth of
the N images (:func:`validation_part`), as a user with N photos must.

Today this holds :func:`balanced_subset` (indices), :func:`check_size` (the
refusals, before any work), :func:`fingerprint`, :func:`validation_part` (with
:func:`held_out_count`, its size), and
:func:`cifar_subset` with :func:`cifar_validation`, for an in-memory CIFAR.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace

import torch

from deit.data.cifar import CIFAR


def check_size(size: int, available: int, num_classes: int) -> None:
    """Refuse a ``train_size`` no class-balanced subset can have (``ValueError``, one line)."""
    if size > available:
        raise ValueError(
            f"train_size {size} is larger than the training set ({available} images); "
            f"train_size=0 takes all of it"
        )
    if size < num_classes:
        raise ValueError(
            f"train_size {size} is smaller than the {num_classes} classes: a class-balanced "
            f"subset needs at least one image of each"
        )


def balanced_subset(
    labels: torch.Tensor | Sequence[int], size: int, num_classes: int, seed: int = 0,
    classes: Sequence[str] | None = None,
) -> torch.Tensor:  # fmt: skip
    """Sorted indices of ``size`` items, ``size // num_classes`` (or one more) of each class.

    Drawn by ``seed`` alone. A class with fewer items than its share gives all
    of them and the shortfall goes to the classes with room, in the seed's
    order. A class with no item at all, or a ``size`` outside
    [``num_classes``, ``len(labels)``], raises ``ValueError`` naming it
    (``classes``: names for the message).
    """
    labels = torch.as_tensor(labels, dtype=torch.int64)
    check_size(size, len(labels), num_classes)
    counts = torch.bincount(labels, minlength=num_classes).tolist()
    for c, count in enumerate(counts):
        if count == 0:
            name = classes[c] if classes else f"class {c}"
            raise ValueError(f"{name} has no training images: a subset would leave it empty")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=generator)
    class_order = torch.randperm(num_classes, generator=generator).tolist()
    quota = {c: size // num_classes for c in range(num_classes)}
    for c in class_order[: size % num_classes]:
        quota[c] += 1
    short = 0
    for c in class_order:
        if quota[c] > counts[c]:
            short += quota[c] - counts[c]
            quota[c] = counts[c]
    while short:  # give the shortfall, one image a class at a time, to classes with room
        for c in class_order:
            if short and quota[c] < counts[c]:
                quota[c], short = quota[c] + 1, short - 1
    ordered = labels[order]
    chosen = [order[ordered == c][: quota[c]] for c in range(num_classes)]
    return torch.cat(chosen).sort().values


def fingerprint(indices: torch.Tensor | Sequence[int]) -> str:
    """A short hash of a subset's indices: equal exactly when the subsets are equal."""
    data = torch.as_tensor(indices, dtype=torch.int64).numpy().tobytes()
    return hashlib.sha256(data).hexdigest()[:16]


def held_out_count(size: int, num_classes: int) -> int:
    """Images :func:`validation_part` holds out of ``size``: a tenth, one per class at least."""
    return max(num_classes, round(size / 10))


def validation_part(labels: torch.Tensor | Sequence[int], num_classes: int, seed: int = 0):
    """Split a subset for tuning: (positions kept for training, positions held out).

    A class-balanced tenth of the subset (at least one image of each class),
    drawn by ``seed``, is held out: a user with N images tunes on some of
    those N, never on the test set.
    """
    labels = torch.as_tensor(labels, dtype=torch.int64)
    held = balanced_subset(labels, held_out_count(len(labels), num_classes), num_classes, seed)
    mask = torch.zeros(len(labels), dtype=torch.bool)
    mask[held] = True
    return (~mask).nonzero().flatten(), held


def cifar_subset(data: CIFAR, size: int, seed: int = 0) -> tuple[CIFAR, torch.Tensor]:
    """``data`` with a class-balanced ``size`` of its training images, and their indices.

    ``size`` 0 keeps every training image (the indices are then all of them).
    """
    if not size:
        return data, torch.arange(len(data.train_labels))
    keep = balanced_subset(data.train_labels, size, data.num_classes, seed, data.classes)
    return replace(data, train_images=data.train_images[keep],
                   train_labels=data.train_labels[keep]), keep  # fmt: skip


def cifar_validation(data: CIFAR, kept: torch.Tensor, seed: int = 0) -> tuple[CIFAR, torch.Tensor]:
    """A subset ``data`` (training indices ``kept``) split by :func:`validation_part`.

    The held-out tenth becomes the evaluation set; returns the rest's indices.
    """
    train, held = validation_part(data.train_labels, data.num_classes, seed)
    images, labels = data.train_images, data.train_labels
    return replace(data, train_images=images[train], train_labels=labels[train],
                   test_images=images[held], test_labels=labels[held]), kept[train]  # fmt: skip
