"""Any timm model as a teacher: ``--teacher FILE --set teacher_arch=timm:NAME``.

What this room holds today: :func:`load_timm_teacher`, which builds timm's
``NAME`` (``timm.create_model``, nothing downloaded) with as many classes as
the file's classifier has, loads the file's weights strict, and gives the
model what a teacher of this project carries (``arch``, ``kwargs``,
``mean``, ``std``, ``img_size``, ``meta``), so that
:class:`~deit.models.teachers.Teacher` feeds it its own inputs and
:func:`~deit.models.teacher_files.check_teacher_fits` checks its classes as
for the project's CNNs.

The input normalisation and resolution are the file's (``mean``, ``std``,
``img_size`` beside the weights in a ``.pt``/``.pth`` dict, or in a
safetensors file's metadata), else timm's pretrained config for ``NAME``
(``mean``, ``std``, ``input_size``); ``overrides`` win over both. The file
is a state dict (plain, or under ``model``/``state_dict``/``state_dict_ema``,
``module.``-prefixed) or a safetensors file. timm is an optional extra
(``pip install 'deit[timm]'``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from deit.checkpoint import CheckpointError, load_checkpoint
from deit.models.state_dicts import load_weights, strip_prefix
from deit.overrides import ConfigError

PREFIX = "timm:"
SETTINGS = ("mean", "std", "img_size", "classes")


def is_timm_arch(arch: str | None) -> bool:
    """Whether a teacher architecture names a timm model (``timm:NAME``)."""
    return bool(arch) and arch.startswith(PREFIX)


def _import_timm():
    try:
        import timm
    except ImportError as err:
        raise ConfigError(
            f"a timm teacher needs timm, which is not importable ({err}): pip install 'deit[timm]'"
        ) from None
    return timm


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The state dict in ``path`` and the settings stored beside it (mean, std, size, classes)."""
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f"{path} is not a safetensors file: {err}") from None
        return state, {k: json.loads(v) for k, v in meta.items() if k in SETTINGS}
    payload = load_checkpoint(path)
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path} holds no state dict")
    settings = {k: payload[k] for k in SETTINGS if k in payload}
    for key in ("model", "state_dict", "state_dict_ema"):
        if isinstance(payload.get(key), dict):
            payload = payload[key]
            break
    if not payload or not all(isinstance(v, torch.Tensor) for v in payload.values()):
        raise CheckpointError(f"{path} holds no model state dict")
    return strip_prefix(payload, "module."), settings


def load_timm_teacher(
    path: Path, arch: str, classes: Sequence[str] | None = None, **overrides: Any
) -> nn.Module:
    """timm's model ``arch`` (``timm:NAME``) with the weights in ``path``, in eval mode.

    Raises :class:`ConfigError` when timm is missing or has no model ``NAME``,
    and :class:`CheckpointError` when the file does not fit it (the keys are
    named).
    """
    timm = _import_timm()
    name = arch.removeprefix(PREFIX)
    if not timm.is_model(name):
        raise ConfigError(f"timm has no model {name!r} (teacher_arch={arch})")
    state, settings = _read(path)
    cfg = timm.models.get_pretrained_cfg(name)
    head = (cfg.classifier if cfg is not None else None) or "head"
    head = head[0] if isinstance(head, (list, tuple)) else head
    weight = state.get(f"{head}.weight")
    if weight is None:
        raise CheckpointError(f"{path} has no {head}.weight: not the weights of timm's {name}")
    num_classes = weight.shape[0]
    model = timm.create_model(name, pretrained=False, num_classes=num_classes)
    load_weights(model, state, str(path))
    cfg = model.pretrained_cfg
    settings = {"mean": list(cfg["mean"]), "std": list(cfg["std"]),
                "img_size": cfg["input_size"][-1]} | settings | overrides  # fmt: skip
    if classes is not None:
        settings["classes"] = list(classes)
    names = settings.get("classes")
    if names is not None and len(names) != num_classes:
        raise CheckpointError(f"{path}: {len(names)} class names for a teacher of {num_classes}")
    model.arch, model.kwargs = arch, {"num_classes": num_classes}
    model.mean, model.std = tuple(settings["mean"]), tuple(settings["std"])
    model.img_size = int(settings["img_size"])
    model.meta = {"arch": arch, **{k: v for k, v in settings.items() if k in SETTINGS}}
    return model.eval()
