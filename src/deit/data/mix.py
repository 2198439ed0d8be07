"""Mixup and CutMix on whole batches, with soft targets (Zhang et al. 2018; Yun et al. 2019).

DeiT's "batch mode": one mixing ratio λ per batch, image i mixed with image
B−1−i. λ comes from Beta(α, α), sampled from the run's own generator so a
checkpoint replays it (``torch.distributions`` cannot take a generator).
"""

from __future__ import annotations

import torch

from deit.data.augment import draw


def sample_gamma(alpha: float, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` draws from Gamma(alpha, 1), every random number from ``generator``.

    ``torch.distributions`` cannot take a generator, so this is
    Marsaglia and Tsang's rejection method (vectorised: rejected draws are
    redrawn until all are accepted), with the ``U**(1/alpha)`` boost for
    ``alpha < 1``. The loop is data-dependent but replays exactly from the
    generator state. Returns float32 on the generator's device.
    """
    a = alpha + 1.0 if alpha < 1 else alpha
    d = a - 1.0 / 3.0
    c = 1.0 / (9.0 * d) ** 0.5
    out = torch.zeros(n, device=generator.device)
    todo = torch.arange(n, device=out.device)
    while todo.numel():
        x = draw(generator, torch.randn, todo.numel())
        u = draw(generator, torch.rand, todo.numel())
        v = (1 + c * x) ** 3
        ok = (v > 0) & (u.log() < 0.5 * x * x + d - d * v + d * v.clamp_min(1e-30).log())
        out[todo[ok]] = d * v[ok]
        todo = todo[~ok]
    if alpha < 1:
        out = out * draw(generator, torch.rand, n) ** (1.0 / alpha)
    return out


def sample_beta(a: float, b: float, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` draws from Beta(a, b) as ``X / (X + Y)`` of two Gamma variates."""
    x, y = sample_gamma(a, n, generator), sample_gamma(b, n, generator)
    return x / (x + y).clamp_min(1e-30)


def smooth_one_hot(labels: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """Label-smoothed one-hot rows: ``1 - s + s/K`` on the label, ``s/K`` elsewhere."""
    off = smoothing / num_classes
    out = torch.full((len(labels), num_classes), off, device=labels.device)
    return out.scatter_(1, labels[:, None], 1.0 - smoothing + off)


def mix_targets(
    labels: torch.Tensor, num_classes: int, lam: float, smoothing: float = 0.1
) -> torch.Tensor:
    """Soft targets for a batch mixed with its reverse: ``λ·y_i + (1-λ)·y_{B-1-i}``.

    Both terms are label-smoothed, as in DeiT/timm, so each row sums to one.
    """
    y = smooth_one_hot(labels, num_classes, smoothing)
    return lam * y + (1.0 - lam) * y.flip(0)


def mixup_images(images: torch.Tensor, lam: float) -> torch.Tensor:
    """Blend each image with its partner in the reversed batch: ``λ·x + (1-λ)·x.flip(0)``."""
    return images * lam + images.flip(0) * (1.0 - lam)


def cutmix_box(
    height: int, width: int, lam: float, generator: torch.Generator
) -> tuple[int, int, int, int]:
    """A random box ``(y0, y1, x0, x1)`` of nominal area ``(1-λ)·H·W``.

    Its centre is uniform over the image and the box is clipped at the
    borders (timm's ``rand_bbox``), so the actual area can be smaller;
    callers recompute λ from the returned box.
    """
    ratio = (1.0 - lam) ** 0.5
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy = int(draw(generator, torch.randint, height, (1,)))
    cx = int(draw(generator, torch.randint, width, (1,)))
    y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    return y0, y1, x0, x1


def cutmix_images(
    images: torch.Tensor, lam: float, generator: torch.Generator
) -> tuple[torch.Tensor, float]:
    """Paste a box of each reversed-batch partner into each image.

    Returns the mixed batch and λ corrected to the fraction of each image
    that is still its own (one box, the same for the whole batch).
    """
    h, w = images.shape[-2:]
    y0, y1, x0, x1 = cutmix_box(h, w, lam, generator)
    out = images.clone()
    out[..., y0:y1, x0:x1] = images.flip(0)[..., y0:y1, x0:x1]
    return out, 1.0 - (y1 - y0) * (x1 - x0) / (h * w)


def mixup_cutmix(
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    generator: torch.Generator,
    mixup_alpha: float = 0.8,
    cutmix_alpha: float = 1.0,
    switch_prob: float = 0.5,
    label_smoothing: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DeiT/timm batch-mode Mixup or CutMix with label-smoothed soft targets.

    One λ ~ Beta(α, α) per batch; image ``i`` is mixed with image ``B-1-i``.
    With both alphas positive, CutMix is chosen with probability
    ``switch_prob``; an alpha of 0 disables that part (both 0: no mixing,
    only smoothed targets). CutMix's λ is corrected to the pasted box's
    area. Returns ``(mixed float images, targets B×num_classes)``.
    """
    use_mixup, use_cutmix = mixup_alpha > 0, cutmix_alpha > 0
    if use_mixup and use_cutmix:
        use_cutmix = float(draw(generator, torch.rand, 1)) < switch_prob
        use_mixup = not use_cutmix
    if use_cutmix:
        lam = float(sample_beta(cutmix_alpha, cutmix_alpha, 1, generator))
        images, lam = cutmix_images(images, lam, generator)
    elif use_mixup:
        lam = float(sample_beta(mixup_alpha, mixup_alpha, 1, generator))
        images = mixup_images(images, lam)
    else:
        lam = 1.0
    return images, mix_targets(labels, num_classes, lam, label_smoothing).to(images.device)
