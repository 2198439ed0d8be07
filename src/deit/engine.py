"""One epoch of training and the evaluation of every head.

The optimisation recipe follows DeiT: AdamW without weight decay on norms,
biases, position embedding and tokens; a per-step linear warm-up, then a
cosine decay to a floor.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn as nn
from tqdm import tqdm

from deit.data.augment import normalize, resize


class ResizeInput(nn.Module):
    """Feed ``model`` its batches resized to ``size`` (None: as they come).

    This is how a student trains at a lower resolution for its first epochs
    (cheap tokens) while the loss, and so the teacher, still gets the
    full-resolution augmented view: a CNN teacher shown upscaled 16-pixel
    images is barely better than chance (32.8 % for the shipped one against
    93.6 % on the real images), and its hard labels would then be noise.
    """

    def __init__(self, model: nn.Module, size: int | None = None):
        super().__init__()
        self.model, self.size = model, size

    def forward(self, x: torch.Tensor):
        """The wrapped model's output for ``x`` at ``size``×``size``."""
        return self.model(x if self.size is None else resize(x, self.size))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Split parameters into a decayed group and an undecayed one, as DeiT does.

    Norm weights, biases (every 0-d or 1-d tensor) and the names the model lists
    in ``no_weight_decay()`` (position embedding, class/distillation tokens) are
    not decayed: shrinking them towards zero only hurts.
    """
    skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name in skip else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def cosine_lr(step: int, total: int, warmup: int, peak: float, floor: float) -> float:
    """Learning rate at ``step``: linear warm-up to ``peak``, cosine decay to ``floor``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train_one_epoch(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    augment: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    lr_at: Callable[[int], float],
    first_step: int,
    *,
    loss_fn: Callable[[Any, torch.Tensor, torch.Tensor], torch.Tensor],
    stop: Callable[[int], bool] = lambda step: False,
    clip_grad: float = 0.0,
    bf16: bool = False,
    ema: Any = None,
    desc: str = "train",
    total: int | None = None,
    initial: int = 0,
    sync_every: int = 1,
    show: bool = True,
) -> dict[str, float]:
    """Train ``model`` on ``batches``; return the loss sum, images, steps, seconds and the
    seconds of them spent waiting for the next batch (``data_seconds``: a loader that cannot
    keep up shows here, not in the step's speed).

    ``augment(images, labels)`` turns a uint8 batch into the model's input
    and the targets (class indices, or soft targets under Mixup/CutMix).
    ``lr_at`` maps the global step to a learning rate, set before each step.
    ``loss_fn(outputs, labels, x)`` gets the student's outputs and the very
    augmented batch ``x`` the student was given, so a teacher can be fed
    exactly that batch (a :class:`ResizeInput` student sees it downscaled).
    ``clip_grad`` caps the gradient norm (0: off); ``bf16`` runs forward and
    loss under bfloat16 autocast; ``ema`` (a ``ModelEMA``) is updated after
    every optimizer step.

    The host looks at the loss only every ``sync_every`` steps (1 on a CPU,
    where it costs nothing; more on a GPU, where reading a value waits for
    the queued work): there the progress bar is updated, a non-finite loss
    raises ``FloatingPointError`` and ``stop(steps done in all)`` is asked
    whether to end the epoch early (the caller checkpoints, then goes on or
    stops). With ``sync_every=1`` a non-finite
    loss is caught before the optimizer can spread it into the weights.
    Sums rather than means are returned so that the parts of an epoch split
    by an interruption add up. ``total`` and ``initial`` place the progress
    bar within the epoch; ``show=False`` hides it (ranks other than 0).
    """
    model.train()
    loss_sum: torch.Tensor | float = 0.0
    images_seen, steps, start = 0, 0, time.perf_counter()
    bar = tqdm(batches, desc, total, initial=initial, leave=False, dynamic_ncols=True,
               disable=not show)  # fmt: skip
    data_seconds, asked = 0.0, start  # asked: when the loop asked for the next batch
    for images, labels in bar:
        data_seconds += time.perf_counter() - asked
        step = first_step + steps
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        x, targets = augment(images, labels)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(model(x), targets, x)
        if sync_every == 1 and not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {loss.item()} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip_grad:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        optimizer.step()
        if ema is not None:
            ema.update(model)
        loss_sum = loss_sum + loss.detach().double() * len(labels)
        images_seen += len(labels)
        steps += 1
        if steps % sync_every == 0:
            mean_loss = float(loss_sum) / images_seen
            if not math.isfinite(mean_loss):
                raise FloatingPointError(f"non-finite loss by step {step}")
            elapsed = time.perf_counter() - start
            bar.set_postfix(loss=f"{mean_loss:.3f}", img_s=f"{images_seen / elapsed:.0f}")
            if stop(step + 1):
                break
        asked = time.perf_counter()
    bar.close()
    loss_total = float(loss_sum)
    if not math.isfinite(loss_total):
        raise FloatingPointError(f"non-finite loss in the last {sync_every} steps")
    seconds = time.perf_counter() - start
    return {"loss_sum": loss_total, "images": images_seen, "steps": steps, "seconds": seconds,
            "data_seconds": data_seconds}  # fmt: skip


@torch.inference_mode()
def count_correct(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    reference: torch.Tensor | None = None,
    img_size: int | None = None,
) -> dict[str, int]:
    """Correct predictions of every head over ``batches`` of uint8 images, and ``images``.

    Heads: ``cls``, and ``dist``/``avg`` if distilled; one forward pass per
    batch serves all. With ``img_size`` the images are first resized to it (a
    model fine-tuned at another resolution). With ``reference`` (e.g. the
    teacher's predicted classes, in the batches' order) also ``agreement``:
    the images where the model's default prediction (``avg`` or ``cls``)
    equals it. Counts, not percentages, so that shares of several ranks add up.
    """
    was_training = model.training
    model.eval()
    distilled = getattr(model, "distilled", False)
    correct: dict[str, int] = {}
    seen = 0
    for images, y in batches:
        x = normalize(images, mean, std)
        x = x if img_size is None else resize(x, img_size)
        if distilled:
            cls, dist = model(x, head="both")
            heads = {"cls": cls, "dist": dist, "avg": (cls + dist) / 2}
        else:
            heads = {"cls": model(x)}
        if reference is not None:
            default = heads.get("avg", heads["cls"]).argmax(1)
            agree = default == reference[seen : seen + len(y)]
            correct["agreement"] = correct.get("agreement", 0) + int(agree.sum())
        for name, logits in heads.items():
            correct[name] = correct.get(name, 0) + int((logits.argmax(1) == y).sum())
        seen += len(y)
    model.train(was_training)
    return correct | {"images": seen}


def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    batch_size: int = 500,
    reference: torch.Tensor | None = None,
    img_size: int | None = None,
) -> dict[str, float]:
    """Top-1 accuracy in percent of every head on in-memory uint8 ``images`` (and ``agreement``).

    :func:`count_correct` over batches of ``batch_size``, as percentages.
    """
    batches = (
        (images[i : i + batch_size], labels[i : i + batch_size])
        for i in range(0, len(images), batch_size)
    )
    counts = count_correct(
        model, batches, mean=mean, std=std, reference=reference, img_size=img_size
    )
    seen = counts.pop("images")
    return {name: 100.0 * c / seen for name, c in counts.items()}
