"""Fitting a state dict to a teacher architecture: prefixes, layouts, class count, strict load.

Checkpoints from elsewhere wrap the same tensors in different names: a
``module.`` prefix (DataParallel/DDP), torchvision's ``downsample``/``fc`` for
the CIFAR ResNet-18's ``shortcut``/``linear``. :func:`load_weights` undoes
those and loads strictly, or raises a :class:`~deit.checkpoint.CheckpointError`
that names every missing, unexpected and mis-shaped key.
:func:`head_classes` reads the class count a bare state dict's head predicts.
Used by :mod:`deit.models.teacher_files` (which re-exports ``load_weights``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import torch
import torch.nn as nn

from deit.checkpoint import CheckpointError
from deit.models.cnn import ResNet18

__all__ = ["head_classes", "load_weights", "strip_prefix"]

HEAD_WEIGHTS = ("fc.weight", "linear.weight", "head.weight")
"""Names of a classifier head's weight (torchvision ResNets, CIFAR ResNet-18, FastCNN)."""


def head_classes(state: Mapping[str, torch.Tensor]) -> int | None:
    """Classes predicted by the head of a (possibly ``module.``-prefixed) state dict, or None."""
    state = strip_prefix(state, "module.")
    weight = next((state[k] for k in HEAD_WEIGHTS if k in state), None)
    return int(weight.shape[0]) if weight is not None and weight.ndim == 2 else None


def strip_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """A copy of ``state``, without ``prefix`` if every key has it (DataParallel's ``module.``)."""
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix) :]: v for k, v in state.items()}
    return dict(state)


def _torchvision_to_cifar_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a torchvision-style ResNet state dict (``downsample``, ``fc``) to ours.

    Some public CIFAR-10 ResNet-18 checkpoints keep torchvision's names; the
    tensors are the same, only the names differ.
    """
    renamed = {}
    for key, value in state.items():
        key = key.replace(".downsample.", ".shortcut.")
        if key.startswith("fc."):
            key = "linear." + key[3:]
        renamed[key] = value
    return renamed


def _describe_mismatch(model: nn.Module, state: Mapping[str, torch.Tensor]) -> str | None:
    """Name the keys that keep ``state`` from loading into ``model`` strictly, or None."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]

    def listed(title: str, keys: list[str]) -> str:
        more = f" … (+{len(keys) - 8} more)" if len(keys) > 8 else ""
        return f"{title} ({len(keys)}): {', '.join(keys[:8])}{more}"

    parts = [
        listed(title, keys)
        for title, keys in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches (file vs model)", shapes),
        )
        if keys
    ]
    return "; ".join(parts) or None


def load_weights(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> nn.Module:
    """Load ``state`` into ``model`` strictly; on mismatch raise naming the offending keys.

    BN batch counters (``num_batches_tracked``, absent from checkpoints saved
    before PyTorch 0.4.1) are the one thing a file may lack: they start at 0.
    """
    state = strip_prefix(state, "module.")
    torchvision_layout = "fc.weight" in state or any(".downsample." in k for k in state)
    if isinstance(model, ResNet18) and torchvision_layout:
        state = _torchvision_to_cifar_layout(state)
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(value)
    problem = _describe_mismatch(model, state)
    stem = state.get("conv1.weight")
    if problem and isinstance(model, ResNet18) and stem is not None and stem.shape[-1:] == (7,):
        problem += " (a 7×7 stem: an ImageNet ResNet, arch tv_resnet18, tv_resnet34 or tv_resnet50)"
    if problem:
        raise CheckpointError(
            f"{source} does not fit architecture "
            f"{getattr(model, 'arch', type(model).__name__)!r} "
            f"({json.dumps(getattr(model, 'kwargs', {}))}): {problem}"
        )
    model.load_state_dict(state, strict=True)
    return model
