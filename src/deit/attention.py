"""What the class and distillation tokens look at: attention maps and rollout, as a figure.

For each image, the attention of the class token and of the distillation
token over the patch grid, two ways: the last block's attention averaged over
heads, and attention rollout (Abnar & Zuidema, 2020) — the per-block
head-averaged attention with the residual path added (½A + ½I, rows
renormalised), multiplied through the blocks, so it follows information
across layers. ``deit attention`` draws them over the images with the
predictions of the student's heads and of the teacher.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from deit.checkpoint import CheckpointError
from deit.config import ConfigError
from deit.data import load_cifar
from deit.data.augment import dataset_stats, normalize, resize
from deit.evaluation import load_student
from deit.models.deit import VisionTransformer
from deit.models.teacher_files import load_teacher
from deit.models.teachers import Teacher


def attention_rollout(maps: list[torch.Tensor]) -> torch.Tensor:
    """Rollout of per-block attention maps ``B × heads × T × T`` → ``B × T × T``."""
    rollout = None
    for attention in maps:
        a = attention.mean(1)
        a = 0.5 * a + 0.5 * torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        a = a / a.sum(-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout
    return rollout


def token_attention(model: VisionTransformer, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Attention of the class (and distillation) token over the patch grid, ``B × H × W`` each.

    Keys: ``cls last``, ``cls rollout`` and, for a distilled model, ``dist last``,
    ``dist rollout``. Each is the token's row of attention restricted to the
    patch columns and renormalised to sum to one over the grid.
    """
    model.eval()
    maps = model.attention_maps(x)
    prefix = model.num_prefix_tokens
    side = int(round((maps[-1].shape[-1] - prefix) ** 0.5))
    sources = {"last": maps[-1].mean(1), "rollout": attention_rollout(maps)}
    tokens = {"cls": 0, "dist": 1} if model.distilled else {"cls": 0}
    out = {}
    for token, row in tokens.items():
        for kind, attention in sources.items():
            grid = attention[:, row, prefix:]
            grid = grid / grid.sum(-1, keepdim=True)
            out[f"{token} {kind}"] = grid.reshape(-1, side, side)
    return out


@torch.no_grad()
def attention_figure_data(
    checkpoint: str | Path, images: int = 8, data_dir: str | None = None, download: bool = True
) -> dict[str, Any]:
    """Everything the attention figure shows for the first ``images`` test images."""
    model, config = load_student(checkpoint)
    data = load_cifar(config.dataset, data_dir, download=download)
    mean, std = dataset_stats(config.dataset)
    pixels = data.test_images[:images]
    x = resize(normalize(pixels, mean, std), config.img_size)
    heads = model(x, head="both") if model.distilled else (model(x),)
    names = ("cls", "dist") if model.distilled else ("cls",)
    predictions = {name: logits.argmax(1) for name, logits in zip(names, heads, strict=True)}
    if model.distilled:
        predictions["avg"] = ((heads[0] + heads[1]) / 2).argmax(1)
    try:
        teacher = Teacher(load_teacher(config.teacher), input_mean=mean, input_std=std)
        predictions["teacher"] = teacher(normalize(pixels, mean, std)).argmax(1)
    except (FileNotFoundError, CheckpointError):
        pass  # the run's teacher is gone: show the student's predictions only
    return {
        "pixels": pixels,
        "labels": data.test_labels[:images],
        "classes": data.classes,
        "maps": token_attention(model, x),
        "predictions": predictions,
        "student": config.student,
        "checkpoint": str(checkpoint),
    }


def draw_attention(
    checkpoint: str | Path,
    out: str | Path,
    images: int = 8,
    data_dir: str | None = None,
    download: bool = True,
) -> Path:
    """Draw the attention figure of a student checkpoint's first ``images`` test images to ``out``.

    What ``deit attention`` does; needs matplotlib (the ``plots`` extra).
    """
    if images < 1:
        raise ConfigError(f"images must be at least 1, got {images}")
    try:
        from deit.plots import plot_attention
    except ImportError:
        raise ConfigError("drawing needs matplotlib: pip install 'deit[plots]'") from None
    figure = attention_figure_data(checkpoint, images, data_dir, download=download)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot_attention(figure, out)
    return out
