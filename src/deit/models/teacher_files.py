"""Teacher weights on disk: finding, reading, checking and exporting them.

:func:`load_teacher` reads a shipped name (``deit/weights/``), a project
checkpoint or a safetensors file, with errors that say what is wrong;
:func:`export_teacher` writes the safetensors file it reads. A teacher may
record the names of its classes (``model.meta["classes"]``);
:func:`check_teacher_fits` refuses a teacher whose classes are not the data
set's. Wrapping a loaded teacher and running it is :mod:`deit.models.teachers`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from deit.checkpoint import CheckpointError, checkpoint_file, load_checkpoint
from deit.models.cnn import TEACHER_ARCHS, model_from_spec, teacher_spec
from deit.models.state_dicts import head_classes, load_weights
from deit.models.teachers import Teacher
from deit.models.timm_teacher import is_timm_arch, load_timm_teacher
from deit.overrides import ConfigError

__all__ = [
    "MAX_EXPORT_BYTES",
    "SHIPPED_TEACHERS",
    "CheckpointError",
    "check_teacher_fits",
    "export_teacher",
    "load_teacher",
    "load_weights",
]

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
SHIPPED_TEACHERS = {"cifar10-teacher": "cifar10-teacher.safetensors"}
"""Teachers shipped inside the package: name → file in ``deit/weights/``."""

MAX_EXPORT_BYTES = 10 * 1024 * 1024
"""The largest teacher file :func:`export_teacher` writes (what the package may ship)."""


# ----------------------------------------------------------------------------- loading


def _shipped_path(name: str) -> Path:
    path = WEIGHTS_DIR / SHIPPED_TEACHERS[name]
    if not path.is_file():
        raise CheckpointError(
            f"the shipped teacher {name!r} is not installed (expected {path}); train one with "
            f"`deit teacher` and export it with deit.models.teacher_files.export_teacher"
        )
    return path


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and the JSON-decoded metadata of a safetensors file."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a safetensors file: {err}") from None
    decoded = {}
    for key, value in meta.items():
        try:
            decoded[key] = json.loads(value)
        except json.JSONDecodeError:
            decoded[key] = value
    return state, decoded


def _read_torch_checkpoint(path: Path) -> dict[str, Any]:
    payload = load_checkpoint(path)
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path} is not a checkpoint (holds a {type(payload).__name__})")
    return payload


def _unpack(payload: dict[str, Any], path: Path, arch: str | None):
    """(state dict, spec) from a loaded .pt payload of any of the accepted shapes."""
    if "arch" in payload and "model" in payload:  # a teacher run's checkpoint
        spec = dict(payload.get("spec") or {"arch": payload["arch"]})
        classes = payload.get("classes", (payload.get("config") or {}).get("classes"))
        if classes is not None:
            spec["classes"] = list(classes)
        return payload.get("averaged") or payload["model"], spec
    if "model" in payload and "config" in payload:
        raise CheckpointError(
            f"{path} is a student checkpoint ({payload['config'].get('student', '?')}), "
            f"not a teacher"
        )
    for key in ("model", "state_dict", "net"):  # common wrappers of a bare state dict
        if isinstance(payload.get(key), dict):
            payload = payload[key]
            break
    if not payload or not all(isinstance(v, torch.Tensor) for v in payload.values()):
        raise CheckpointError(f"{path} is not a checkpoint: it holds no model state dict")
    if arch is None:
        raise CheckpointError(
            f"{path} is a bare state dict without an architecture: name it with arch= "
            f"(deit train: --set teacher_arch=NAME), one of {', '.join(TEACHER_ARCHS)} or "
            f"timm:NAME (any timm model)"
        )
    num_classes = head_classes(payload)  # the checkpoint's own classes, not a default
    return payload, {
        "arch": arch,
        **({"kwargs": {"num_classes": num_classes}} if num_classes else {}),
    }


def load_teacher(
    name_or_path: str | Path,
    *,
    arch: str | None = None,
    classes: Sequence[str] | None = None,
    **overrides: Any,
) -> nn.Module:
    """Load a trained teacher, in eval mode, carrying its normalisation and resolution.

    Accepts a shipped name (``cifar10-teacher``), a checkpoint written by
    ``train_teacher`` (``.pt``, read with ``weights_only=True``) or its run directory, a
    ``.safetensors`` file with the metadata ``export_teacher`` writes, or a
    bare state dict (a public CIFAR-10 ResNet-18 checkpoint, a torchvision
    ResNet with ``arch="tv_resnet50"``; plain, under ``model``/``state_dict``,
    ``module.``-prefixed) together with ``arch=``, or any timm model's weights
    with ``arch="timm:NAME"`` (:mod:`deit.models.timm_teacher`); a bare state dict's class
    count is that of its head (``fc``/``linear``/``head`` weight).
    ``overrides`` (``mean``, ``std``, ``img_size``, ``maxpool``, …) replace the
    stored settings; ``classes`` names the teacher's classes in logit order
    (else those the file records, if any), exposed as ``model.meta["classes"]``.
    Raises ``FileNotFoundError`` for a missing file and
    :class:`CheckpointError` for a file that is not a checkpoint or whose
    keys do not fit the architecture (the keys are named). Wrap the result
    in :class:`Teacher` to distil from it.
    """
    if str(name_or_path) in SHIPPED_TEACHERS:
        path = _shipped_path(str(name_or_path))
    else:
        path = checkpoint_file(name_or_path)  # a deit teacher run directory: its checkpoint
        if not path.is_file():
            raise FileNotFoundError(
                f"no teacher checkpoint at {path}; give a checkpoint file, a run directory or "
                f"one of the shipped names {list(SHIPPED_TEACHERS)}"
            )
    if is_timm_arch(arch):
        return load_timm_teacher(path, arch, classes, **overrides)
    if path.suffix == ".safetensors":
        state, spec = _read_safetensors(path)
        if arch is None and "arch" not in spec:
            raise CheckpointError(f"{path} has no 'arch' metadata; pass arch=")
    else:
        state, spec = _unpack(_read_torch_checkpoint(path), path, arch)
    spec = {**spec, **({"arch": arch} if arch else {})}
    for key in ("mean", "std", "img_size"):  # stored beside the kwargs, which they override
        if key in overrides:
            spec[key] = overrides.pop(key)
    if classes is not None:
        spec["classes"] = list(classes)
    spec["kwargs"] = {**spec.get("kwargs", {}), **overrides}
    try:
        model = model_from_spec(spec)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: cannot build its architecture {spec}: {err}") from None
    _check_class_names(spec.get("classes"), model, str(path))
    load_weights(model, state, str(path))
    model.meta = {k: v for k, v in spec.items() if k not in ("kwargs",)}
    return model.eval()


def _check_class_names(classes: Sequence[str] | None, model: nn.Module, source: str) -> None:
    """Refuse class names that are not one string per class the model predicts."""
    if classes is None:
        return
    if not all(isinstance(c, str) for c in classes):
        raise CheckpointError(f"{source}: class names must be strings, got {list(classes)[:4]}")
    if len(classes) != model.kwargs["num_classes"]:
        raise CheckpointError(
            f"{source}: {len(classes)} class names for a teacher of "
            f"{model.kwargs['num_classes']} classes"
        )


def _preview(names: Sequence[str], shown: int = 4) -> str:
    return "[" + ", ".join(names[:shown]) + (", ...]" if len(names) > shown else "]")


def check_teacher_fits(
    teacher: nn.Module, num_classes: int, classes: list[str] | None, name: str
) -> None:
    """Refuse, with a one-line :class:`~deit.config.ConfigError`, a teacher unfit for the data.

    ``teacher`` (a loaded architecture or a :class:`Teacher`) must predict
    ``num_classes`` classes; when it records its class names
    (``meta["classes"]``) and the data set's ``classes`` are given, they must
    be the same names in the same order (logit i must mean the data set's
    class i). A teacher without recorded names is checked by count only;
    ``name`` is how the messages call the teacher.
    """
    net = teacher.model if isinstance(teacher, Teacher) else teacher
    predicts = net.kwargs["num_classes"]
    if predicts != num_classes:
        raise ConfigError(
            f"teacher {name!r} predicts {predicts} classes but the data set has {num_classes}"
        )
    own = getattr(net, "meta", {}).get("classes")
    if own is None or classes is None or list(own) == list(classes):
        return
    own, classes = list(own), list(classes)
    pairs = enumerate(zip(own, classes, strict=False))
    index = next((i for i, (a, b) in pairs if a != b), min(len(own), len(classes)))
    mine, theirs = (c[index] if index < len(c) else None for c in (own, classes))
    raise ConfigError(
        f"teacher {name!r} was trained on classes {_preview(own)} in another order or set than "
        f"the data set's {_preview(classes)}: first difference at index {index} "
        f"({mine!r} vs {theirs!r})"
    )


# ----------------------------------------------------------------------------- export


def export_teacher(
    run_dir_or_checkpoint: str | Path,
    dest: str | Path,
    classes: Sequence[str] | None = None,
    max_bytes: int | None = MAX_EXPORT_BYTES,
) -> Path:
    """Write a teacher run's averaged weights and metadata to a ``.safetensors`` file.

    The metadata (architecture and its settings, normalisation mean/std,
    input size, recorded test accuracy with and without TTA, the command)
    is what :func:`load_teacher` needs to rebuild the teacher with the
    inputs it was trained on. ``classes``, the class names in logit order,
    defaults to the run's (``summary.json``, ``config.json`` or the
    checkpoint, whichever records ``classes``); recorded, they let
    :func:`check_teacher_fits` catch a data set with other classes. Refuses
    weights over ``max_bytes`` (``MAX_EXPORT_BYTES``, 10 MiB, the size the
    package may ship; None: no limit).
    """
    from safetensors.torch import save_file

    checkpoint = checkpoint_file(run_dir_or_checkpoint)
    model = load_teacher(checkpoint)
    summary_path = checkpoint.parent / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    spec = teacher_spec(model)
    meta = {key: json.dumps(value) for key, value in spec.items()}
    for key in ("test_top1", "test_top1_tta", "epochs", "train_seconds", "command"):
        if key in summary:
            meta[key] = json.dumps(summary[key])
    if classes is None:
        config_path = checkpoint.parent / "config.json"
        config = json.loads(config_path.read_text()) if config_path.is_file() else {}
        classes = summary.get("classes", config.get("classes", model.meta.get("classes")))
    if classes is not None:
        _check_class_names(classes, model, str(checkpoint))
        meta["classes"] = json.dumps(list(classes))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    size = sum(v.numel() * v.element_size() for v in state.values())
    if max_bytes is not None and size > max_bytes:
        raise CheckpointError(
            f"teacher weights take {size / 2**20:.1f} MiB, over the "
            f"{max_bytes / 2**20:.0f} MiB limit (max_bytes)"
        )
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(dest), metadata=meta)
    return dest
