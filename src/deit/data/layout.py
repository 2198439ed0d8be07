"""Where a CIFAR data set lives and what its files are: the layouts, the data directory.

Shared by reading (`deit.data.cifar`) and downloading (`deit.data.download`), so
that neither has to import the other.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


class DataError(Exception):
    """A data set is missing, corrupt, or cannot be fetched; the message says how to fix it."""


@dataclass(frozen=True)
class Spec:
    """What the files of one data set look like in each layout."""

    title: str
    num_classes: int
    header: int  # label bytes before the pixels of a binary record
    label_byte: int  # index of the label we use among them (CIFAR-100: fine label)
    train_count: int  # records per training file
    test_count: int
    bin_folder: str
    bin_train: tuple[str, ...]
    bin_test: str
    bin_names: str
    py_folder: str
    py_train: tuple[str, ...]
    py_test: str
    py_meta: str
    py_labels: str
    py_names: str


SPECS: dict[str, Spec] = {
    "cifar10": Spec(
        title="CIFAR-10",
        num_classes=10,
        header=1,
        label_byte=0,
        train_count=10000,
        test_count=10000,
        bin_folder="cifar-10-batches-bin",
        bin_train=tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
        bin_test="test_batch.bin",
        bin_names="batches.meta.txt",
        py_folder="cifar-10-batches-py",
        py_train=tuple(f"data_batch_{i}" for i in range(1, 6)),
        py_test="test_batch",
        py_meta="batches.meta",
        py_labels="labels",
        py_names="label_names",
    ),
    "cifar100": Spec(
        title="CIFAR-100",
        num_classes=100,
        header=2,
        label_byte=1,
        train_count=50000,
        test_count=10000,
        bin_folder="cifar-100-binary",
        bin_train=("train.bin",),
        bin_test="test.bin",
        bin_names="fine_label_names.txt",
        py_folder="cifar-100-python",
        py_train=("train",),
        py_test="test",
        py_meta="meta",
        py_labels="fine_labels",
        py_names="fine_label_names",
    ),
}


def dataset_classes(name: str) -> int:
    """Number of classes of data set ``name`` (``cifar10``: 10, ``cifar100``: 100), unread."""
    if name not in SPECS:
        raise DataError(f"unknown data set {name!r}; choose one of {', '.join(SPECS)}")
    return SPECS[name].num_classes


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the directory to look for data sets in.

    The argument wins, then the environment variable DEIT_DATA, then a per-user cache
    directory ($XDG_CACHE_HOME/deit or ~/.cache/deit), so the command line, the shell and a
    default all work without configuration.
    """
    if data_dir is not None:
        return Path(data_dir).expanduser()
    if os.environ.get("DEIT_DATA"):
        return Path(os.environ["DEIT_DATA"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "deit"


def spec_of(name: str) -> tuple[str, Spec]:
    """The canonical key and file description of data set ``name`` (``CIFAR-10`` → ``cifar10``)."""
    key = name.lower().replace("-", "").replace("_", "")
    if key not in SPECS:
        raise ValueError(f"unknown data set {name!r}; choose one of {sorted(SPECS)}")
    return key, SPECS[key]


def find_layout(spec: Spec, directory: Path) -> tuple[str, Path] | None:
    """(``binary`` or ``python``, its folder) of the layout found in ``directory``, or None."""
    for kind, folder in (("binary", spec.bin_folder), ("python", spec.py_folder)):
        if (directory / folder).is_dir():
            return kind, directory / folder
    return None


def not_found(spec: Spec, directory: Path, why: str) -> DataError:
    """The error for a data set absent from ``directory``, saying where to put it."""
    return DataError(
        f"{spec.title} not found in {directory} (looked for the folders "
        f"{spec.bin_folder}/ and {spec.py_folder}/), and {why}. Fix: pass --data-dir DIR "
        f"(or set DEIT_DATA=DIR) to a directory holding one of those folders, or allow the "
        f"download (drop --no-download / download=True) with network access."
    )
