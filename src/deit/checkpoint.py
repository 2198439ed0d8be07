"""Files that survive a crash mid-write, and checkpoints that load without running code.

Every file a run writes goes through :func:`write_atomic`: the bytes go to a
temporary file in the same directory, are flushed to disk, and the file is
renamed over the old one, so a reader sees the old file or the new one, never
half of either. A write that fails (disk full, permission denied, directory
gone) leaves the old file as it was, removes its temporary file, and raises
:class:`WriteError` naming the file and the cause in one line.

Checkpoints are serialised in memory first: ``torch.save`` straight into a
file on a full disk fails with a C++ assertion instead of the system's
"No space left on device". Loading uses ``weights_only=True``, so a file from
elsewhere cannot run code.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

_UMASK = os.umask(0)
os.umask(_UMASK)


class CheckpointError(ValueError):
    """A file that cannot be used as the checkpoint asked for; the message says why."""


class WriteError(Exception):
    """A run file could not be written; the message names the file and the cause.

    ``run_path`` is the run's directory once the run engine has seen the error
    (None before), so the error line can say whether a checkpoint is left.
    """

    run_path: Path | None = None


def write_error(path: str | Path, err: OSError) -> WriteError:
    """The one-line error of a failed write of ``path``: the file and the system's reason."""
    return WriteError(f"cannot write {path}: {err.strerror or err}")


def write_atomic(path: str | Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` atomically (temporary file, fsync, rename).

    Raises :class:`WriteError` on any failure of the file system; ``path``
    then still holds its previous content and no temporary file is left.
    """
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it private; a run's files are not
        os.replace(tmp, path)
    except OSError as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise write_error(path, err) from None
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` to ``path`` atomically; :class:`WriteError` if the disk refuses."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomic(path, buffer.getbuffer())


def checkpoint_file(path: str | Path) -> Path:
    """The checkpoint ``path`` names: a run directory's ``checkpoint.pt``, else ``path`` itself.

    Every command that reads a trained model takes a run directory as well as
    its checkpoint file; a directory without one is a one-line ``CheckpointError``.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        if not (path / "checkpoint.pt").is_file():
            raise CheckpointError(f"{path} holds no checkpoint.pt (not a run directory)")
        return path / "checkpoint.pt"
    return path


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
