"""Make models by timm-style name: ``deit_<size>[_distilled]_patch{P}_{IMG}``.

The sizes are the paper's three, ``tiny``, ``small`` and ``base`` (DeiT-Ti, -S, -B), and two
smaller students of this project that train on a CPU: ``micro`` (128 wide, 6 deep, 4 heads;
the ``cpu-proxy`` preset's student) and ``nano`` (64 wide, 4 deep, 2 heads; the ``smoke``
preset's). Any patch size P that divides the image size IMG is accepted, e.g.
``deit_tiny_patch4_32`` for CIFAR or ``deit_base_distilled_patch16_224`` for the paper's models.
Every name defaults to ``num_classes=10`` (this is a CIFAR tool); pass ``num_classes=1000`` for
ImageNet weights.

A name is the whole architecture only when no size overrides are given;
:func:`resolve_architecture` says what a name plus overrides really builds, and
:func:`find_size` which registered size (if any) that is.
"""

from __future__ import annotations

import re
from typing import Any

from .deit import VisionTransformer

SIZES = {
    "tiny": dict(embed_dim=192, depth=12, num_heads=3, mlp_ratio=4.0),
    "small": dict(embed_dim=384, depth=12, num_heads=6, mlp_ratio=4.0),
    "base": dict(embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0),
    "micro": dict(embed_dim=128, depth=6, num_heads=4, mlp_ratio=4.0),
    "nano": dict(embed_dim=64, depth=4, num_heads=2, mlp_ratio=4.0),
}
"""Architecture of each size: the paper's Ti, S and B, then this project's CPU students."""

DEFAULT_NUM_CLASSES = 10

NAME_SCHEME = "deit_{" + ",".join(SIZES) + "}[_distilled]_patch{P}_{IMG} with P dividing IMG"

_NAME = re.compile(rf"deit_({'|'.join(SIZES)})(_distilled)?_patch([1-9]\d*)_([1-9]\d*)")

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
    "token_keep",
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


def model_name(size: str, distilled: bool, patch_size: int, img_size: int) -> str:
    """The name of registered ``size`` with or without distillation token, at patch/image size.

    The inverse of :func:`parse_model_name`, so that code which changes one part of a
    name (the token, the resolution) builds the new name from parts instead of editing
    strings. Raises ``ValueError`` for an unregistered size or a patch size that does not
    divide the image size.
    """
    if size not in SIZES:
        raise ValueError(f"unknown model size {size!r}; expected one of {', '.join(SIZES)}")
    name = f"deit_{size}{'_distilled' if distilled else ''}_patch{patch_size}_{img_size}"
    parse_model_name(name)  # checks the patch and image sizes
    return name


def find_size(embed_dim: int, depth: int, num_heads: int, mlp_ratio: float = 4.0) -> str | None:
    """The registered size with exactly this width, depth, head count and MLP ratio, or None.

    Lets a name be given to an architecture known only by its numbers (a checkpoint, a
    config with size overrides), so that it is named for what it is.
    """
    wanted = dict(embed_dim=embed_dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio)
    for size, arch in SIZES.items():
        if arch == wanted:
            return size
    return None


def resolve_architecture(name: str, **overrides: Any) -> dict[str, Any]:
    """What ``create_model(name, **overrides)`` builds, as a plain dict for records.

    Keys: ``name`` (as given), ``size`` (the registered size this architecture is exactly,
    found with :func:`find_size`, or None when the overrides make it none of them),
    ``embed_dim``, ``depth``, ``num_heads``, ``mlp_ratio``, ``patch_size``, ``img_size`` and
    ``distilled``. A name with size overrides does not say what it builds; this does (e.g.
    ``deit_tiny_distilled_patch4_32`` with ``embed_dim=128, depth=6, num_heads=4`` is
    ``micro``). Overrides outside the architecture (``num_classes``, drop rates) are
    accepted and ignored. Raises like :func:`create_model` for a bad name or override.
    """
    kwargs = _kwargs(name, overrides)
    arch = {k: kwargs[k] for k in ("embed_dim", "depth", "num_heads")}
    arch["mlp_ratio"] = float(kwargs["mlp_ratio"])
    return {
        "name": name,
        "size": find_size(**arch),
        **arch,
        "patch_size": kwargs["patch_size"],
        "img_size": kwargs["img_size"],
        "distilled": bool(kwargs["distilled"]),
    }


def _kwargs(name: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The ``VisionTransformer`` keyword arguments of ``name`` with ``overrides`` applied."""
    kwargs = parse_model_name(name)
    unknown = sorted(set(overrides) - set(OVERRIDES))
    if unknown:
        raise TypeError(f"create_model got unknown overrides {unknown}; allowed: {OVERRIDES}")
    kwargs.update(overrides)
    return kwargs


def create_model(name: str, **overrides) -> VisionTransformer:
    """Build the model a name describes, with any of ``OVERRIDES`` replacing its settings.

    The one entry point for making students by name (configs, command line, checkpoints),
    so that a name alone reproduces an architecture.
    """
    return VisionTransformer(**_kwargs(name, overrides))


def list_models() -> list[str]:
    """Common names (every size, with and without distillation token, at 32/4 and 224/16).

    The scheme accepts many more (any patch size that divides the image size).
    """
    return [
        model_name(size, distilled, patch, img)
        for size in SIZES
        for distilled in (False, True)
        for patch, img in ((4, 32), (16, 224))
    ]


def describe_model(model: VisionTransformer, name: str) -> dict:
    """A built student as numbers: name, width, depth, heads, patch and image size, parameters.

    Recorded in every run's summary, so a reader learns the real model, not
    only the name it was made from.
    """
    depth, heads = len(model.blocks), model.blocks[0].attn.num_heads
    mlp_ratio = model.blocks[0].mlp.fc1.out_features / model.embed_dim
    return {
        "name": name,
        "size": find_size(model.embed_dim, depth, heads, mlp_ratio),
        "embed_dim": model.embed_dim,
        "depth": depth,
        "num_heads": heads,
        "mlp_ratio": mlp_ratio,
        "patch_size": model.patch_embed.patch_size,
        "img_size": model.patch_embed.img_size,
        "distilled": model.distilled,
        "params": sum(p.numel() for p in model.parameters()),
    }
