"""A report on a data set (CIFAR or an image folder): where it was found, its sizes, balance.

The library side of ``deit data``; the command prints what `describe` returns.
"""

from __future__ import annotations

import os
import time
from typing import Any

from deit.data.cifar import load_cifar
from deit.data.folder import check_folder, scan_folder
from deit.data.layout import DataError

__all__ = ["describe"]


def describe(
    dataset: str = "cifar10",
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    check: bool = False,
) -> dict[str, Any]:
    """Find a data set and report what was found, as a JSON-ready dict.

    CIFAR (``cifar10``, ``cifar100``; loaded with `load_cifar`, same arguments):
    ``dataset`` (normalised name), ``root`` (the layout folder read), ``train`` and
    ``test`` (image counts), ``classes``, ``train_per_class``, ``mean`` and ``std``
    (per-channel statistics of the training pixels in [0, 1], 4 places) and
    ``load_seconds``; every file is verified while loading, so ``check`` only adds
    ``bad: []``.

    ``folder`` (``data_dir`` is then the image folder ROOT, see `scan_folder`):
    ``dataset``, ``root``, ``classes``, ``train`` and ``val`` (image counts),
    ``train_per_class``, ``val_per_class`` and ``scan_seconds``; with ``check`` every
    image is decoded (`check_folder`, a progress bar on stderr) and ``bad`` lists
    ``{"path", "reason"}`` of each that fails, with ``check_seconds``.
    """
    if dataset.lower() == "folder":
        return _describe_folder(data_dir, check)
    start = time.perf_counter()
    data = load_cifar(dataset, data_dir, download=download)
    seconds = time.perf_counter() - start
    pixels = data.train_images.float().div_(255)
    return {
        "dataset": data.name,
        "root": str(data.root),
        "train": len(data.train_labels),
        "test": len(data.test_labels),
        "classes": list(data.classes),
        "train_per_class": data.train_labels.bincount().tolist(),
        "mean": [round(v, 4) for v in pixels.mean((0, 2, 3)).tolist()],
        "std": [round(v, 4) for v in pixels.std((0, 2, 3)).tolist()],
        "load_seconds": round(seconds, 3),
    } | ({"bad": []} if check else {})


def _describe_folder(root: str | os.PathLike[str] | None, check: bool) -> dict[str, Any]:
    """`describe` for an image folder."""
    if root is None:
        raise DataError(
            "--dataset folder needs --data-dir ROOT, the folder holding "
            "train/<class>/<image> and val/<class>/<image>"
        )
    start = time.perf_counter()
    folder = scan_folder(root)
    report: dict[str, Any] = {
        "dataset": "folder",
        "root": str(folder.root),
        "classes": list(folder.classes),
        "train": len(folder.train),
        "val": len(folder.val),
        "train_per_class": folder.per_class("train"),
        "val_per_class": folder.per_class("val"),
        "scan_seconds": round(time.perf_counter() - start, 3),
    }
    if check:
        start = time.perf_counter()
        bad = check_folder(folder)
        report["bad"] = [{"path": path, "reason": reason} for path, reason in bad]
        report["check_seconds"] = round(time.perf_counter() - start, 3)
    return report
