"""Start a student from trained weights: this project's checkpoints or official DeiT ones.

Fine-tuning at another resolution is the report's future work and the
paper's route to its best CIFAR-10 numbers. What it takes: read the weights
(a ``deit train`` checkpoint, or the published DeiT layout: timm names under
a ``model`` key, 1000-class heads, 224 px, patch 16), work out the
architecture they belong to, and load them into a student built for the new
image size, patch size and class count — the position embedding resampled
to the new patch grid (bicubic, class/distillation entries kept), the patch
projection resampled if the patch size changes, and any head whose class
count differs replaced by a freshly initialised one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from deit import hub
from deit.checkpoint import CheckpointError, load_checkpoint
from deit.models import parse_model_name
from deit.models.deit import VisionTransformer
from deit.models.pos_embed import adapt_pos_embed
from deit.models.registry import find_size, model_name

HEADS = ("head.weight", "head.bias", "head_dist.weight", "head_dist.bias")
HEAD_DIM = 64  # every DeiT size has 64-dimensional attention heads


def read_pretrained(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The weights in ``path`` and the architecture they fit.

    The architecture is a dict of ``embed_dim``, ``depth``, ``num_heads``,
    ``patch_size``, ``img_size``, ``distilled`` and ``num_classes``: read
    from the stored config for this project's checkpoints, inferred from the
    tensor shapes for official ones (with 64-dimensional heads, as in every
    DeiT). An official name (``deit_tiny_distilled_patch16_224``; see
    :mod:`deit.hub`) that is not a file here is fetched into the cache. Raises
    ``CheckpointError`` for anything that is not a DeiT.
    """
    if hub.is_official(str(path)) and not Path(path).exists():
        path = hub.fetch(str(path))
    return pretrained_state(load_checkpoint(path), path)


def pretrained_state(
    payload: Any, path: str | Path
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """:func:`read_pretrained` of a checkpoint already loaded (``path`` names it in errors)."""
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path} holds no state dict")
    config = payload.get("config") if isinstance(payload.get("config"), dict) else {}
    state = payload.get("model", payload)
    if not isinstance(state, dict) or "pos_embed" not in state or "cls_token" not in state:
        raise CheckpointError(f"{path} is not a DeiT checkpoint (no pos_embed / cls_token)")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    arch = infer_architecture(state)
    if "student" in config:  # ours: the config names the heads exactly
        arch["num_heads"] = (
            config.get("num_heads") or parse_model_name(config["student"])["num_heads"]
        )
    return state, arch


def infer_architecture(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The ViT hyper-parameters a DeiT state dict was made with, from its tensor shapes."""
    embed_dim = state["cls_token"].shape[-1]
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))}
    patch_size = state["patch_embed.proj.weight"].shape[-1]
    distilled = "dist_token" in state
    grid = state["pos_embed"].shape[1] - (2 if distilled else 1)
    side = int(round(grid**0.5))
    if side * side != grid:
        raise CheckpointError(f"pos_embed has {grid} grid entries, not a square grid")
    return {
        "embed_dim": embed_dim,
        "depth": len(blocks),
        "num_heads": max(1, embed_dim // HEAD_DIM),
        "patch_size": patch_size,
        "img_size": side * patch_size,
        "distilled": distilled,
        "num_classes": state["head.weight"].shape[0] if "head.weight" in state else 0,
    }


def student_name(arch: dict[str, Any], img_size: int, patch_size: int) -> str:
    """The model name for ``arch`` at a new image and patch size.

    The registered size with exactly ``arch``'s width, depth and heads (MLP ratio 4, as
    every student here) names it, so a checkpoint is fine-tuned under the name of what it
    is; an architecture of no registered size is named ``tiny`` and set by the config's
    size overrides (which :func:`finetune_config` always sets).
    """
    size = find_size(arch["embed_dim"], arch["depth"], arch["num_heads"]) or "tiny"
    return model_name(size, arch["distilled"], patch_size, img_size)


def resample_patch_embed(weight: torch.Tensor, patch_size: int) -> torch.Tensor:
    """A patch projection ``D × C × P × P`` resampled to ``patch_size`` (bicubic).

    Scaled by (P / P')² so that a patch of constant colour gives the same
    embedding at both sizes; an approximation (FlexiViT solves for it
    exactly), good enough as a starting point for fine-tuning.
    """
    old = weight.shape[-1]
    if old == patch_size:
        return weight
    resized = F.interpolate(
        weight.float(), size=(patch_size, patch_size), mode="bicubic", align_corners=False
    )
    return (resized * (old / patch_size) ** 2).to(weight.dtype)


def load_pretrained(model: VisionTransformer, state: dict[str, torch.Tensor]) -> list[str]:
    """Load ``state`` into ``model``, adapting grid, patch and heads; return what was replaced.

    Heads whose shape differs (another class count) keep the model's fresh
    initialisation; every other parameter must be present with the right shape.
    """
    state = adapt_pos_embed(state, model)
    if "patch_embed.proj.weight" in state:
        patch = model.patch_embed.patch_size
        state["patch_embed.proj.weight"] = resample_patch_embed(
            state["patch_embed.proj.weight"], patch
        )
    own = model.state_dict()
    kept = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    replaced = sorted(k for k in own if k not in kept)
    unexpected = sorted(k for k in state if k not in own)
    missing = [k for k in replaced if k not in HEADS]
    if missing or unexpected:
        raise CheckpointError(
            "the weights do not fit the student: "
            + (f"missing or misshapen {missing[:5]}" if missing else "")
            + (f" unexpected {unexpected[:5]}" if unexpected else "")
        )
    model.load_state_dict(kept, strict=False)
    return replaced
