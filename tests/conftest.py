"""Shared fixtures: where the real CIFAR-10 lives, and the data set loaded once per session."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYOUTS = ("cifar-10-batches-bin", "cifar-10-batches-py")


def _real_data_dir() -> Path:
    """DEIT_DATA if set, else ../shared/data relative to the repository root."""
    return Path(os.environ.get("DEIT_DATA") or ROOT.parent / "shared" / "data")


@pytest.fixture(scope="session")
def cifar_dir() -> Path:
    """The directory holding the real CIFAR-10 (a layout folder inside it)."""
    directory = _real_data_dir()
    if not any((directory / layout).is_dir() for layout in LAYOUTS):
        pytest.skip(f"real CIFAR-10 not found in {directory} (set DEIT_DATA to a copy)")
    return directory


@pytest.fixture(scope="session")
def cifar10(cifar_dir):
    """The real CIFAR-10, loaded once for the whole session."""
    from deit.data.cifar import load_cifar

    return load_cifar("cifar10", cifar_dir, download=False)
