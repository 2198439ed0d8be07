"""Read and verify CIFAR-10 and CIFAR-100.

The whole data set is returned as uint8 tensors (N×3×32×32) so that training can keep it
on the device and augment whole batches there. Two on-disk layouts are understood, the
official binary one (preferred) and the official python-pickle one; pickles are read with
a restricted unpickler (`deit.data.safe_pickle`) that can rebuild numpy arrays and nothing
else. Every file is checked (presence, size, record count, label range, array shape) before
use: a bad file raises `DataError` naming it, never a silent partial load. A data set that
is not on disk is fetched by `deit.data.download`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deit.data.download import download_cifar
from deit.data.layout import (
    DataError,
    Spec,
    find_layout,
    not_found,
    resolve_data_dir,
    spec_of,
)
from deit.data.safe_pickle import CifarUnpickler, RefusedGlobal

__all__ = [
    "CIFAR",
    "DataError",
    "holdout_validation",
    "load_cifar",
    "resolve_data_dir",
    "truncate",
]

PIXELS = 3 * 32 * 32  # bytes per image: 1024 red, 1024 green, 1024 blue, row-major 32×32


@dataclass(frozen=True, eq=False, repr=False)
class CIFAR:
    """A whole CIFAR data set in memory: uint8 images N×3×32×32 and int64 labels."""

    name: str
    root: Path
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        """Number of classes (10 or 100)."""
        return len(self.classes)

    def __repr__(self) -> str:
        return (
            f"CIFAR(name={self.name!r}, root={str(self.root)!r}, "
            f"train={len(self.train_labels)}, test={len(self.test_labels)}, "
            f"num_classes={self.num_classes})"
        )


# ----------------------------------------------------------------------------- loading


def load_cifar(
    name: str, data_dir: str | os.PathLike[str] | None = None, download: bool = True
) -> CIFAR:
    """Load CIFAR-10 ("cifar10") or CIFAR-100 ("cifar100", fine labels) fully into memory.

    The data directory is resolved by `resolve_data_dir`; inside it the binary layout is
    preferred over the python layout. If neither is there and `download` is true, the
    official archive is fetched, its MD5 checked and extracted first. Every file is
    verified; problems raise `DataError`.
    """
    key, spec = spec_of(name)
    directory = resolve_data_dir(data_dir)
    found = find_layout(spec, directory)
    if found is None:
        if not download:
            raise not_found(spec, directory, "download is disabled")
        download_cifar(key, directory)
        found = find_layout(spec, directory)
        assert found is not None, "download_cifar guarantees the layout folder"
    kind, root = found
    reader = _read_binary_layout if kind == "binary" else _read_python_layout
    train, test, classes = reader(spec, root)
    return CIFAR(key, root, train[0], train[1], test[0], test[1], classes)


def _to_tensors(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
    images = np.concatenate([p[0] for p in parts])  # one contiguous, writable copy
    labels = np.concatenate([p[1] for p in parts]).astype(np.int64)
    return torch.from_numpy(images), torch.from_numpy(labels)


def _check_labels(path: Path, labels: np.ndarray, num_classes: int) -> None:
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"{path}: label {int(labels[i])} at record {i} is out of range 0..{num_classes - 1}"
            f" ({bad.size} bad labels in all)"
        )


def _check_names(path: Path, names: list[str], num_classes: int) -> tuple[str, ...]:
    if len(names) != num_classes:
        raise DataError(f"{path}: {len(names)} class names, expected {num_classes}")
    return tuple(names)


def _file_size(path: Path) -> int:
    if not path.is_file():
        raise DataError(f"{path}: file is missing")
    return path.stat().st_size


# --- binary layout


def _read_binary_file(spec: Spec, path: Path, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (count×3×32×32 view) and labels of one binary file, after checking its size."""
    record = spec.header + PIXELS
    size = _file_size(path)
    if size % record:
        raise DataError(
            f"{path}: size {size} bytes is not a whole number of {record}-byte records "
            f"(truncated or not a {spec.title} file)"
        )
    if size // record != count:
        raise DataError(f"{path}: holds {size // record} records, expected {count}")
    raw = np.fromfile(path, dtype=np.uint8).reshape(count, record)
    labels = raw[:, spec.label_byte]
    _check_labels(path, labels, spec.num_classes)
    return raw[:, spec.header :].reshape(count, 3, 32, 32), labels


def _read_binary_names(spec: Spec, path: Path) -> tuple[str, ...]:
    _file_size(path)
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return _check_names(path, [s.strip() for s in lines if s.strip()], spec.num_classes)


def _read_binary_layout(spec: Spec, root: Path):
    train = [_read_binary_file(spec, root / f, spec.train_count) for f in spec.bin_train]
    test = [_read_binary_file(spec, root / spec.bin_test, spec.test_count)]
    classes = _read_binary_names(spec, root / spec.bin_names)
    return _to_tensors(train), _to_tensors(test), classes


# --- python layout


def _read_pickle(path: Path) -> dict[str, Any]:
    """Unpickle one CIFAR file safely and return its dict with str keys."""
    _file_size(path)
    with open(path, "rb") as f:
        try:
            obj = CifarUnpickler(f, path).load()
        except RefusedGlobal as e:
            raise DataError(str(e)) from e
        except Exception as e:  # a corrupt pickle can fail in many ways
            raise DataError(f"{path}: not a readable CIFAR pickle ({type(e).__name__}: {e})") from e
    if not isinstance(obj, dict):
        raise DataError(f"{path}: holds a {type(obj).__name__}, expected a dict")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _entry(path: Path, d: dict[str, Any], key: str) -> Any:
    if key not in d:
        raise DataError(f"{path}: no '{key}' entry (has {sorted(map(str, d))})")
    return d[key]


def _read_python_file(spec: Spec, path: Path, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of one pickled batch, after checking dtype, shape and labels."""
    d = _read_pickle(path)
    data, labels = _entry(path, d, "data"), _entry(path, d, spec.py_labels)
    if not (
        isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.shape == (count, PIXELS)
    ):
        got = (
            f"{data.dtype} array of shape {data.shape}"
            if isinstance(data, np.ndarray)
            else type(data).__name__
        )
        raise DataError(
            f"{path}: 'data' is {got}, expected a uint8 array of shape ({count}, {PIXELS})"
        )
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu" or labels.shape != (count,):
        raise DataError(
            f"{path}: '{spec.py_labels}' is {labels.dtype} of shape {labels.shape}, "
            f"expected {count} integers"
        )
    _check_labels(path, labels, spec.num_classes)
    return data.reshape(count, 3, 32, 32), labels


def _read_python_names(spec: Spec, path: Path) -> tuple[str, ...]:
    names = _entry(path, _read_pickle(path), spec.py_names)
    if not isinstance(names, list | tuple) or not all(isinstance(n, bytes | str) for n in names):
        raise DataError(f"{path}: '{spec.py_names}' is not a list of strings")
    decoded = [n.decode("utf-8", errors="replace") if isinstance(n, bytes) else n for n in names]
    return _check_names(path, decoded, spec.num_classes)


def _read_python_layout(spec: Spec, root: Path):
    train = [_read_python_file(spec, root / f, spec.train_count) for f in spec.py_train]
    test = [_read_python_file(spec, root / spec.py_test, spec.test_count)]
    classes = _read_python_names(spec, root / spec.py_meta)
    return _to_tensors(train), _to_tensors(test), classes


# ----------------------------------------------------------------------------- validation split


def truncate(data: CIFAR, test_size: int = 0) -> CIFAR:
    """The first ``test_size`` test images (0: all of them): quick evaluations in tests and runs.

    Training subsets are class-balanced and seeded instead: :mod:`deit.data.subsets`.
    """
    return replace(data, test_images=data.test_images[: test_size or None],
                   test_labels=data.test_labels[: test_size or None])  # fmt: skip


def holdout_validation(data: CIFAR, size: int = 5000, seed: int = 0) -> CIFAR:
    """Split a class-balanced validation set off the training set, for tuning without test data.

    Returns a CIFAR whose train_* are the remaining training images and whose test_* are
    `size` held-out training images (size/num_classes per class), chosen by a seeded
    torch.Generator so the same seed always gives the same split. Both keep the original order.
    """
    labels = data.train_labels
    per_class, rest = divmod(size, data.num_classes)
    counts = torch.bincount(labels, minlength=data.num_classes)
    if size <= 0 or rest:
        raise ValueError(f"size {size} must be a positive multiple of {data.num_classes}")
    if per_class > int(counts.min()):
        raise ValueError(
            f"size {size} needs {per_class} per class; smallest class has {int(counts.min())}"
        )
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    held = torch.zeros(len(labels), dtype=torch.bool)
    for c in range(data.num_classes):
        held[order[labels[order] == c][:per_class]] = True
    keep = ~held
    return CIFAR(
        data.name,
        data.root,
        data.train_images[keep].contiguous(),
        labels[keep],
        data.train_images[held].contiguous(),
        labels[held],
        data.classes,
    )


# ----------------------------------------------------------------------------- moved names
