"""Position embeddings at another image or patch size: DeiT's bicubic resampling.

The paper fine-tunes at a higher resolution by interpolating the position
embedding of the patch grid (§6, "fine-tuning at different resolution"); the
class and distillation tokens' entries stay as they are.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def resample_pos_embed(
    pos_embed: torch.Tensor,
    new_grid: tuple[int, int],
    num_prefix_tokens: int,
    old_grid: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Resample the patch-grid part of a position embedding to a new grid size.

    Used to fine-tune or evaluate at another image or patch size (the paper's "upscaling"):
    the ``num_prefix_tokens`` leading entries (class and distillation tokens) are kept as they
    are; the H·W grid entries are resampled bicubically (``align_corners=False``) to H'·W'.

    Args:
        pos_embed: ``1 × (prefix + H·W) × D``.
        new_grid: ``(H', W')``.
        num_prefix_tokens: number of leading non-grid entries (1 plain, 2 distilled).
        old_grid: ``(H, W)``; inferred as square when omitted.

    Returns:
        ``1 × (prefix + H'·W') × D``; the input itself when the grid is unchanged.
    """
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    if old_grid is None:
        side = math.isqrt(grid.shape[1])
        if side * side != grid.shape[1]:
            raise ValueError(f"cannot infer a square grid from {grid.shape[1]} position entries")
        old_grid = (side, side)
    old_grid, new_grid = tuple(old_grid), tuple(new_grid)
    if old_grid[0] * old_grid[1] != grid.shape[1]:
        raise ValueError(f"old_grid {old_grid} does not match {grid.shape[1]} position entries")
    if old_grid == new_grid:
        return pos_embed
    dim = grid.shape[-1]
    grid = grid.reshape(1, *old_grid, dim).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=new_grid, mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], dim)
    return torch.cat([prefix, grid.to(pos_embed.dtype)], dim=1)


def adapt_pos_embed(state_dict: dict, model: nn.Module) -> dict:
    """A copy of ``state_dict`` whose ``pos_embed`` is resampled to ``model``'s patch grid.

    ``model`` is a :class:`~deit.models.deit.VisionTransformer` (anything with its
    ``pos_embed``, ``patch_embed.grid_size`` and ``num_prefix_tokens``).

    Lets weights trained at one image or patch size load (``strict=True``) into a model built
    for another, e.g. to fine-tune at a higher resolution; other entries are left as they are.
    """
    state = dict(state_dict)
    pos = state.get("pos_embed")
    if pos is not None and pos.shape != model.pos_embed.shape:
        grid = model.patch_embed.grid_size
        state["pos_embed"] = resample_pos_embed(pos, grid, model.num_prefix_tokens)
    return state
