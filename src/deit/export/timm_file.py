"""A student as a timm model (``deit export --format timm``), checked bit for bit in timm.

The student's parameter names already are timm's, so the file is its state
dict as safetensors. What timm needs besides is the model to build:
:func:`timm_spec` gives the ``timm.create_model`` name and kwargs — the
model's own timm name where timm has one (DeiT-Ti/S/B at 224 px, patch 16,
and B at 384 px; with or without distillation token), else the nearest
timm DeiT name with the architecture's numbers as kwargs, which build
timm's ``VisionTransformer`` / ``VisionTransformerDistilled`` with them. In
eval mode timm's distilled model returns the average of both heads, as
``deit eval``'s default ``avg``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from deit.export import sample_batch
from deit.inference import Preprocess
from deit.models.deit import VisionTransformer
from deit.models.linear import using_cpu_linear
from deit.models.registry import describe_model

TIMM_NAMES = {
    f"deit_{size}{token}_patch16_{img}"
    for size, img in (("tiny", 224), ("small", 224), ("base", 224), ("base", 384))
    for token in ("", "_distilled")
}
"""The DeiT names timm registers (the official checkpoints' architectures)."""

CHECK_BATCHES = (1, 7)


def timm_spec(model: VisionTransformer) -> tuple[str, dict[str, Any]]:
    """``(name, kwargs)``: ``timm.create_model(name, **kwargs)`` builds ``model``'s architecture."""
    arch = describe_model(model, "")
    token = "_distilled" if arch["distilled"] else ""
    own = f"deit_{arch['size']}{token}_patch{arch['patch_size']}_{arch['img_size']}"
    if own in TIMM_NAMES:
        return own, {"num_classes": model.num_classes}
    kwargs = {k: arch[k] for k in ("img_size", "patch_size", "embed_dim", "depth", "num_heads")}
    if arch["mlp_ratio"] != 4.0:
        kwargs["mlp_ratio"] = arch["mlp_ratio"]
    return f"deit_tiny{token}_patch16_224", kwargs | {"num_classes": model.num_classes}


def write_timm(
    model: VisionTransformer, preprocess: Preprocess, classes, path: Path, source: str
) -> dict[str, Any]:
    """Write ``model``'s state dict to ``path`` and load it strict into timm's model.

    Returns ``{"max_abs_diff": {batch: largest |timm − deit|}, "timm_name",
    "timm_kwargs"}``, measured at batch 1 and 7 on random inputs in the
    model's input range; the caller requires 0 (bit-identical logits).
    """
    import timm
    from safetensors.torch import load_file, save_file

    name, kwargs = timm_spec(model)
    meta = {"timm_name": name, "timm_kwargs": json.dumps(kwargs), "deit.source": source,
            "deit.classes": json.dumps(list(classes)),
            "deit.preprocess": json.dumps({"mode": preprocess.mode, "size": preprocess.size,
                                           "crop_pct": preprocess.crop_pct, "mean": preprocess.mean,
                                           "std": preprocess.std})}  # fmt: skip
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata=meta)
    theirs = timm.create_model(name, pretrained=False, **kwargs)
    theirs.load_state_dict(load_file(str(path)), strict=True)
    theirs.eval()
    diffs = {}
    for size in CHECK_BATCHES:  # timm's linears are aten's: ours too, to compare kernel for kernel
        x = sample_batch(preprocess, size, seed=size)
        with torch.inference_mode(), using_cpu_linear("blas"):
            diffs[size] = float((theirs(x) - model.eval()(x)).abs().max())
    return {"max_abs_diff": diffs, "timm_name": name, "timm_kwargs": kwargs}
