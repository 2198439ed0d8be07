"""Make models by timm-style name: ``deit_{tiny,small,base}[_distilled]_patch{P}_{IMG}``.

Any patch size P that divides the image size IMG is accepted, e.g. ``deit_tiny_patch4_32`` for
CIFAR or ``deit_base_distilled_patch16_224`` for the paper's models. Every name defaults to
``num_classes=10`` (this is a CIFAR tool); pass ``num_classes=1000`` for ImageNet weights.
"""

from __future__ import annotations

import re

from .deit import VisionTransformer

SIZES = {
    "tiny": dict(embed_dim=192, depth=12, num_heads=3, mlp_ratio=4.0),
    "small": dict(embed_dim=384, depth=12, num_heads=6, mlp_ratio=4.0),
    "base": dict(embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0),
}
"""Architecture of each DeiT size (the paper's Ti, S, B)."""

DEFAULT_NUM_CLASSES = 10

NAME_SCHEME = "deit_{tiny,small,base}[_distilled]_patch{P}_{IMG} with P dividing IMG"

_NAME = re.compile(r"deit_(tiny|small|base)(_distilled)?_patch([1-9]\d*)_([1-9]\d*)")

OVERRIDES = (
    "num_classes",
    "img_size",
    "patch_size",
    "in_chans",
    "drop_rate",
    "attn_drop_rate",
    "drop_path_rate",
    "embed_dim",
    "depth",
    "num_heads",
    "mlp_ratio",
    "dynamic_img_size",
)
"""Keyword arguments ``create_model`` accepts on top of what the name sets."""


def parse_model_name(name: str) -> dict:
    """Turn a model name into ``VisionTransformer`` keyword arguments.

    E.g. ``deit_tiny_distilled_patch4_32`` → DeiT-Ti sizes, ``distilled=True``,
    ``patch_size=4``, ``img_size=32``, ``num_classes=10``. Raises ``ValueError`` naming the
    scheme for anything else.
    """
    match = _NAME.fullmatch(name) if isinstance(name, str) else None
    if match is None:
        raise ValueError(f"unknown model name {name!r}; expected {NAME_SCHEME}")
    size, distilled, patch, img = match.groups()
    patch_size, img_size = int(patch), int(img)
    if img_size % patch_size:
        raise ValueError(
            f"bad model name {name!r}: patch size {patch_size} does not divide image size "
            f"{img_size}; expected {NAME_SCHEME}"
        )
    return dict(
        **SIZES[size],
        distilled=distilled is not None,
        patch_size=patch_size,
        img_size=img_size,
        num_classes=DEFAULT_NUM_CLASSES,
    )


def create_model(name: str, **overrides) -> VisionTransformer:
    """Build the model a name describes, with any of ``OVERRIDES`` replacing its settings.

    The one entry point for making students by name (configs, command line, checkpoints),
    so that a name alone reproduces an architecture.
    """
    kwargs = parse_model_name(name)
    unknown = sorted(set(overrides) - set(OVERRIDES))
    if unknown:
        raise TypeError(f"create_model got unknown overrides {unknown}; allowed: {OVERRIDES}")
    kwargs.update(overrides)
    return VisionTransformer(**kwargs)


def list_models() -> list[str]:
    """Common names (every size, with and without distillation token, at 32/4 and 224/16).

    The scheme accepts many more (any patch size that divides the image size).
    """
    return [
        f"deit_{size}{dist}_patch{patch}_{img}"
        for size in SIZES
        for dist in ("", "_distilled")
        for patch, img in ((4, 32), (16, 224))
    ]
