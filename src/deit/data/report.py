"""A report on a CIFAR data set: where it was found, its sizes, class balance and statistics.

The library side of ``deit data``; the command prints what `describe` returns.
"""

from __future__ import annotations

import os
import time
from typing import Any

from deit.data.cifar import load_cifar

__all__ = ["describe"]


def describe(
    dataset: str = "cifar10", data_dir: str | os.PathLike[str] | None = None, download: bool = True
) -> dict[str, Any]:
    """Load a data set with `load_cifar` (same arguments) and report what was found.

    Returns a JSON-ready dict: ``dataset`` (normalised name), ``root`` (the layout folder
    read), ``train`` and ``test`` (image counts), ``classes`` (class names),
    ``train_per_class`` (training images per class), ``mean`` and ``std`` (per-channel
    statistics of the training pixels scaled to [0, 1], rounded to 4 places) and
    ``load_seconds`` (time to find, download if needed, read and check the files).
    """
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
    }
