"""``deit export``: a trained student written for another runtime, its parity checked.

What this room holds today:

- :func:`export_model` (``deit.export_model``, ``deit export``): loads a
  student as :func:`deit.load` does, refuses bad input before any work (an
  unknown format, an existing ``--out`` without ``overwrite``, a missing
  optional extra), writes the file through a temporary one, checks it
  against PyTorch and keeps it only if the check passes.
- ``onnx`` (:mod:`.onnx_file`): an ONNX graph with a dynamic batch axis, run
  in ONNX Runtime at batch 1 and 7; fails over 1e-4.
- ``timm`` (:mod:`.timm_file`): a safetensors state dict in timm's names plus
  the ``timm.create_model`` name and kwargs that load it strict; fails unless
  timm's logits are bit-identical.
- ``pt2`` (:mod:`.pt2_file`): a ``torch.export`` program (dynamic batch), loaded
  back and compared; fails over 1e-5. Needs nothing beyond PyTorch.

The optional extras: ``pip install 'deit[onnx]'`` (onnx, onnxscript,
onnxruntime) and ``pip install 'deit[timm]'``.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from deit.config import ConfigError

if TYPE_CHECKING:
    from deit.inference import Preprocess

FORMATS = {"onnx": ("onnx", "onnxscript", "onnxruntime"), "timm": ("timm",), "pt2": ()}
"""Export formats and the modules each needs (its extra has the format's name)."""

TOLERANCE = {"onnx": 1e-4, "timm": 0.0, "pt2": 1e-5}
"""The largest difference from PyTorch's logits each format's check accepts."""


class ExportFailed(Exception):
    """The exported file does not reproduce PyTorch's outputs (one line; exit 1; nothing kept)."""


def sample_batch(preprocess: Preprocess, batch: int, seed: int) -> torch.Tensor:
    """A batch of random uint8 images put through the model's preprocessing (its input range)."""
    generator = torch.Generator().manual_seed(seed)
    size = preprocess.size
    images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=generator)
    return preprocess.batch(images)


def require(modules: tuple[str, ...], extra: str) -> None:
    """Import ``modules`` or raise a one-line :class:`ConfigError` naming the pip install."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise ConfigError(
                f"{extra} export needs {name}, which is not importable ({err}): "
                f"pip install 'deit[{extra}]'"
            ) from None


def export_model(
    checkpoint: str | os.PathLike[str],
    format: str,
    out: str | os.PathLike[str],
    *,
    head: str | None = None,
    overwrite: bool = False,
    download: bool = True,
) -> dict[str, Any]:
    """Write the student of ``checkpoint`` to ``out`` in ``format`` and check it.

    ``checkpoint`` is anything :func:`deit.load` takes; ``head`` picks what
    a distilled student outputs (default ``avg``, as ``deit eval``); ``timm``
    keeps both heads (timm averages them in eval mode). Returns ``{"format",
    "out", "max_abs_diff": {batch: difference}, "tolerance", ...}`` plus what
    the format adds (timm: ``timm_name``, ``timm_kwargs``, ``load``). Raises
    :class:`ConfigError` for bad input before any work and
    :class:`ExportFailed` when the check fails (``out`` is then not written).
    """
    from deit.inference import load

    if format not in FORMATS:
        raise ConfigError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} exists; pass --overwrite to replace it")
    if out.is_dir():
        raise ConfigError(f"{out} is a folder; give a file name")
    if format == "timm" and head not in (None, "avg"):
        raise ConfigError("a timm model outputs the average of both heads; leave --head out")
    require(FORMATS[format], format)
    model, preprocess, classes = load(checkpoint, head=head, download=download)
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(f".{out.stem}.{os.getpid()}.part{out.suffix}")  # same ending
    try:
        if format == "onnx":
            from deit.export.onnx_file import write_onnx

            report = write_onnx(model, preprocess, classes, part, str(checkpoint))
        elif format == "pt2":
            from deit.export.pt2_file import write_pt2

            report = write_pt2(model, preprocess, classes, part, str(checkpoint))
        else:
            from deit.export.timm_file import write_timm

            report = write_timm(model, preprocess, classes, part, str(checkpoint))
        worst = max(report["max_abs_diff"].values())
        if worst > TOLERANCE[format]:
            raise ExportFailed(
                f"the {format} file's outputs differ from PyTorch's by up to {worst:.3g} "
                f"(allowed {TOLERANCE[format]:g}); {out} not written"
            )
        os.replace(part, out)
    finally:
        part.unlink(missing_ok=True)
    return {"format": format, "out": str(out), "tolerance": TOLERANCE[format], **report}
