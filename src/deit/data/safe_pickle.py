"""A restricted unpickler for the official CIFAR python-layout files.

A pickle can name any importable callable and have it called, so a downloaded file could run
code. `CifarUnpickler` rebuilds numpy arrays (of plain, non-object dtypes), dicts, lists,
strings and numbers, and refuses every other global with `RefusedGlobal`.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CifarUnpickler", "RefusedGlobal"]


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle named a global outside the allow-list; the message names the file and global."""


def _numpy_multiarray():
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    return multiarray


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """`_codecs.encode` as Python 3 protocol-2 pickles use it for bytes; latin-1 only."""
    if encoding.lower().replace("_", "-") not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refused _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _plain_dtype(*args: Any) -> np.dtype:
    """`numpy.dtype`, refusing object dtypes: CIFAR arrays hold only numbers."""
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise pickle.UnpicklingError(f"refused object dtype {dtype}")
    return dtype


def _allowed_globals() -> dict[tuple[str, str], Any]:
    multiarray = _numpy_multiarray()
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): _plain_dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = multiarray._reconstruct
        allowed[(module, "scalar")] = multiarray.scalar
    return allowed


class CifarUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds numpy arrays, dicts, lists, strings and numbers, nothing else.

    A pickle can name any importable callable and have it called; a downloaded file must not
    be able to run code, so every global outside the short allow-list is refused.
    """

    def __init__(self, file: Any, path: Path) -> None:
        super().__init__(file, encoding="bytes")
        self.path = path
        self.allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.allowed:
            return self.allowed[(module, name)]
        raise RefusedGlobal(
            f"{self.path}: refused to unpickle global '{module}.{name}': a CIFAR pickle holds "
            f"only numpy arrays, lists, dicts, strings and numbers (corrupt or malicious file)"
        )
