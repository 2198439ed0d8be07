"""Checkpoints that survive a crash mid-write and load without unpickling code.

A checkpoint is written to a temporary file in the same directory, flushed
to disk, then renamed over the old one: a reader sees the old file or the new
one, never half of either. Loading uses ``weights_only=True``, so a file
from elsewhere cannot run code.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch


class CheckpointError(ValueError):
    """A file that cannot be used as the checkpoint asked for; the message says why."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, tensors and plain data only.

    Raises ``FileNotFoundError`` for a missing file and :class:`CheckpointError`
    for one that is not a readable PyTorch checkpoint (or asks to run code).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for foreign or damaged files
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint this project can read "
            f"(damaged, another format, or it holds code: {type(err).__name__})"
        ) from None
