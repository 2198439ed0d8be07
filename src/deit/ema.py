"""Exponential moving average of a model's weights (the paper's "model EMA").

The average of the recent weights is often a better model than the last
weights, at the cost of one extra copy and one lerp per step; it is
evaluated next to the trained model and checkpointed with it.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEMA:
    """A frozen copy of ``model`` whose weights follow ``decay·ema + (1−decay)·model``."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average one step towards ``model``'s current weights (buffers copied)."""
        for ema_p, p in zip(self.module.parameters(), model.parameters(), strict=True):
            ema_p.lerp_(p.detach(), 1 - self.decay)
        for ema_b, b in zip(self.module.buffers(), model.buffers(), strict=True):
            ema_b.copy_(b)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights, for checkpoints."""
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the averaged weights saved by :meth:`state_dict`."""
        self.module.load_state_dict(state)
