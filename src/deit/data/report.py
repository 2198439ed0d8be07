"""A report on a data set (CIFAR, an image folder or shards): where it was found, its sizes,
balance, and with a check the files that do not decode.

The library side of ``deit data``; the command prints what `describe` returns.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from typing import Any

from tqdm import tqdm

from deit.data.cifar import load_cifar
from deit.data.decode import decode_rgb
from deit.data.folder import check_folder, decode_failure, scan_folder
from deit.data.layout import DataError
from deit.data.shards import ShardError, ShardSet, find_shard_splits, read_shard
from deit.hardware import usable_cores

__all__ = ["describe"]


def describe(
    dataset: str = "cifar10",
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    check: bool = False,
    val_shards: str = "",
    shard_info: str = "",
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

    ``shards`` (``data_dir``: their folder, pattern or URL; ``val_shards`` and
    ``shard_info`` as a run's settings of those names, see `find_shard_splits`): the same
    keys, and ``train_shards``, ``val_shards``; the counts per class when the info file
    gives them, else empty lists. ``check`` reads every shard to its end and decodes every
    image as training does; a shard cut short is listed under its own name.
    """
    if dataset.lower() == "shards":
        return _describe_shards(data_dir, check, val_shards, shard_info)
    if val_shards or shard_info:
        raise DataError(f"--val-shards and --shard-info are about shards: they need "
                        f"--dataset shards, not {dataset}")  # fmt: skip
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


def _describe_shards(
    spec: str | os.PathLike[str] | None, check: bool, val_shards: str, shard_info: str
) -> dict[str, Any]:
    """`describe` for WebDataset shards."""
    if spec is None:
        raise DataError("--dataset shards needs --data-dir: the shards' folder, pattern or URL")
    start = time.perf_counter()
    train, val = find_shard_splits(str(spec), val_shards, shard_info)
    report: dict[str, Any] = {
        "dataset": "shards",
        "root": str(spec),
        "classes": list(train.classes),
        "train": len(train),
        "val": len(val),
        "train_shards": len(train.sources),
        "val_shards": len(val.sources),
        "train_per_class": list(train.per_class),
        "val_per_class": list(val.per_class),
        "scan_seconds": round(time.perf_counter() - start, 3),
    }
    if check:
        start = time.perf_counter()
        bad = _check_shards(train, val)
        report["bad"] = [{"path": path, "reason": reason} for path, reason in bad]
        report["check_seconds"] = round(time.perf_counter() - start, 3)
    return report


def _check_shards(*splits: ShardSet) -> list[tuple[str, str]]:
    """(name, reason) of every image of the shards that does not decode, and of every shard
    that cannot be read to its end; the shards in worker processes (one per usable core)."""
    sources = [source for split in splits for source in split.sources]
    bar = tqdm(total=sum(len(split) for split in splits), desc="checking images", unit="img",
               file=sys.stderr, mininterval=0.5, dynamic_ncols=True)  # fmt: skip
    workers = min(usable_cores(), len(sources))
    fork = "fork" in multiprocessing.get_all_start_methods()  # no second import of torch
    with bar, multiprocessing.get_context("fork" if fork else None).Pool(workers) as pool:
        bad = []
        for read, failures in pool.imap(_check_shard, sources):
            bar.update(read)
            bad += failures
        return bad


def _check_shard(source: str) -> tuple[int, list[tuple[str, str]]]:
    """(samples read, failures) of one shard (runs in a worker process)."""
    read, failures = 0, []
    try:
        for name, data, _ in read_shard(source):
            read += 1
            if (reason := decode_failure(decode_rgb, name, data)) is not None:
                failures.append((name, reason))
    except ShardError as err:
        failures.append((source, str(err)))
    return read, failures
