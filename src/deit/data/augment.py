"""Whole-batch augmentation on the training device.

Every transform here takes a batch ``B×C×H×W`` and samples its randomness
per image from one ``torch.Generator`` in a single call, so a batch costs a
few tensor operations whatever its size, and the generator's state is all a
checkpoint needs to replay the augmentation exactly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)


def dataset_stats(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel training-set (mean, std) used to normalise ``name``'s images."""
    stats = {"cifar10": (CIFAR10_MEAN, CIFAR10_STD), "cifar100": (CIFAR100_MEAN, CIFAR100_STD)}
    return stats[name]


def random_crop(
    images: torch.Tensor, padding: int, generator: torch.Generator, mode: str = "constant"
) -> torch.Tensor:
    """Crop each image at a random offset from its padded copy.

    The standard CIFAR translation augmentation (pad by ``padding``, crop
    back to the original size), with an independent offset per image.
    ``mode`` is ``F.pad``'s: zeros (``"constant"``) or ``"reflect"`` (float
    images only), which avoids borders the test set never shows.
    """
    if padding == 0:
        return images
    b, _, h, w = images.shape
    padded = F.pad(images, (padding,) * 4, mode=mode)
    span = 2 * padding + 1
    dy = torch.randint(span, (b, 1), generator=generator, device=generator.device)
    dx = torch.randint(span, (b, 1), generator=generator, device=generator.device)
    rows = (dy + torch.arange(h, device=dy.device)).to(images.device)
    cols = (dx + torch.arange(w, device=dx.device)).to(images.device)
    batch = torch.arange(b, device=images.device)[:, None, None]
    pixels = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
    return pixels.permute(0, 3, 1, 2).contiguous()


def random_hflip(images: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror each image left-right with probability ``p``."""
    flip = torch.rand(len(images), generator=generator, device=generator.device) < p
    flip = flip.to(images.device)[:, None, None, None]
    return torch.where(flip, images.flip(3), images)


def normalize(
    images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]
) -> torch.Tensor:
    """Turn uint8 images into float32 ``(x/255 - mean) / std`` per channel."""
    m = torch.tensor(mean, device=images.device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=images.device).view(1, -1, 1, 1)
    return (images.float() / 255 - m) / s


def _draw(generator: torch.Generator, fn, *args, **kwargs) -> torch.Tensor:
    """Call a ``torch`` sampler (``rand``, ``randn``, ...) on the generator's device."""
    return fn(*args, generator=generator, device=generator.device, **kwargs)


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
        x = _draw(generator, torch.randn, todo.numel())
        u = _draw(generator, torch.rand, todo.numel())
        v = (1 + c * x) ** 3
        ok = (v > 0) & (u.log() < 0.5 * x * x + d - d * v + d * v.clamp_min(1e-30).log())
        out[todo[ok]] = d * v[ok]
        todo = todo[~ok]
    if alpha < 1:
        out = out * _draw(generator, torch.rand, n) ** (1.0 / alpha)
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
    cy = int(_draw(generator, torch.randint, height, (1,)))
    cx = int(_draw(generator, torch.randint, width, (1,)))
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
        use_cutmix = float(_draw(generator, torch.rand, 1)) < switch_prob
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


def _col(v: torch.Tensor) -> torch.Tensor:
    """Shape a per-image vector ``(n,)`` to broadcast over ``n×C×H×W``."""
    return v.view(-1, 1, 1, 1)


def _grayscale(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma (PIL's ``convert("L")``) as ``n×1×H×W``; single-channel input as is."""
    if x.shape[1] == 1:
        return x
    weights = torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True)


def _enhance_factor(m: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """timm's "increasing" enhancement factor ``1 ± 0.9·m/10`` for colour ops."""
    return 1.0 + sign * 0.09 * m


def _blend(degenerate: torch.Tensor, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL ``ImageEnhance``: ``degenerate + factor·(x - degenerate)`` per image."""
    return degenerate + _col(factor) * (x - degenerate)


def _brightness(x, m, sign):
    """Scale intensities towards black (factor < 1) or up (factor > 1)."""
    return _blend(torch.zeros_like(x), x, _enhance_factor(m, sign))


def _color(x, m, sign):
    """Move colours towards (or away from) the image's own grayscale version."""
    return _blend(_grayscale(x), x, _enhance_factor(m, sign))


def _contrast(x, m, sign):
    """Move pixels towards (or away from) the image's mean gray level."""
    mean = _grayscale(x).mean((1, 2, 3), keepdim=True).round()
    return _blend(mean, x, _enhance_factor(m, sign))


def _sharpness(x, m, sign):
    """Blend with PIL's 3×3 smoothing filter (borders kept) to blur or sharpen."""
    inner = x[..., 1:-1, 1:-1]
    smooth = x.clone()  # kernel [[1,1,1],[1,5,1],[1,1,1]]/13 = (9·box3x3 + 4·centre)/13
    smooth[..., 1:-1, 1:-1] = ((9 * F.avg_pool2d(x, 3, stride=1) + 4 * inner) / 13).round()
    return _blend(smooth, x, _enhance_factor(m, sign))


def _posterize(x, m, sign):
    """Keep the top ``4 - int(0.4·m)`` bits of each value (more magnitude, fewer bits)."""
    step = 2.0 ** (8 - (4 - (0.4 * m).floor()))
    return (x / _col(step)).floor() * _col(step)


def _solarize(x, m, sign):
    """Invert values at or above ``256·(1 - m/10)`` (m = 0 changes nothing)."""
    threshold = _col(256.0 * (1.0 - m / 10.0))
    return torch.where(x >= threshold, 255.0 - x, x)


def _autocontrast(x, m, sign):
    """Stretch each channel linearly to the full 0..255 range (constant ones kept)."""
    lo = x.amin((2, 3), keepdim=True)
    hi = x.amax((2, 3), keepdim=True)
    scale = 255.0 / (hi - lo).clamp_min(1.0)
    return torch.where(hi > lo, (x - lo) * scale, x)


def _equalize(x, m, sign):
    """PIL histogram equalisation per channel, via one batched histogram and LUT."""
    n, c, h, w = x.shape
    flat = x.reshape(n * c, h * w).long()
    hist = torch.zeros(n * c, 256, device=x.device).scatter_add_(
        1, flat, torch.ones_like(x).view(n * c, -1)
    )
    last = 255 - (hist.flip(1) > 0).float().argmax(1, keepdim=True)
    step = ((h * w - hist.gather(1, last)) / 255).floor()
    lut = ((hist.cumsum(1) - hist + (step / 2).floor()) / step.clamp_min(1)).floor().clamp(0, 255)
    out = lut.gather(1, flat)
    return torch.where(step > 0, out, flat.float()).view(n, c, h, w)


COLOR_OPS = {
    "identity": lambda x, m, sign: x,
    "autocontrast": _autocontrast,
    "equalize": _equalize,
    "brightness": _brightness,
    "color": _color,
    "contrast": _contrast,
    "sharpness": _sharpness,
    "posterize": _posterize,
    "solarize": _solarize,
}
GEOMETRIC_OPS = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")
RAND_AUGMENT_OPS = tuple(COLOR_OPS) + GEOMETRIC_OPS


def _affine_matrices(
    kinds: list[str], op: torch.Tensor, m: torch.Tensor, sign: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """Per-image ``n×2×3`` ``affine_grid`` matrices (output → input, normalised coords).

    Rotation up to 30°, shear up to 0.3 and translation up to 45 % of the
    side at m = 10 (timm's ranges), all about the image centre.
    """
    v = sign * m / 10.0

    def amount(name: str, scale: float) -> torch.Tensor:
        chosen = op == kinds.index(name) if name in kinds else torch.zeros_like(op, dtype=bool)
        return torch.where(chosen, scale * v, 0.0)

    angle, shx, shy = amount("rotate", torch.pi / 6), amount("shear_x", 0.3), amount("shear_y", 0.3)
    tx, ty = amount("translate_x", 0.9), amount("translate_y", 0.9)
    cos, sin = angle.cos(), angle.sin()
    # pixel-space matrix [[a, b], [c, d]] mapped to normalised coords: b·H/W, c·W/H
    a, b = cos, (-sin + shx) * (height / width)
    c, d = (sin + shy) * (width / height), cos
    return torch.stack([torch.stack([a, b, tx], 1), torch.stack([c, d, ty], 1)], 1)


def _geometric(x, op, m, sign, kinds, fill):
    """Apply each image's affine op with one batched ``grid_sample`` (bilinear).

    Pixels from outside the image get ``fill`` (timm fills with gray).
    """
    theta = _affine_matrices(kinds, op, m, sign, x.shape[-2], x.shape[-1])
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    return (
        F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        + fill
    )


def rand_augment(
    images: torch.Tensor,
    generator: torch.Generator,
    num_ops: int = 2,
    magnitude: float = 9.0,
    magnitude_std: float = 0.5,
    op_prob: float = 0.5,
    ops: tuple[str, ...] = RAND_AUGMENT_OPS,
    fill: float = 128.0,
) -> torch.Tensor:
    """Batched RandAugment on uint8 images (timm's ``rand-m9-mstd0.5-inc1`` style).

    ``num_ops`` rounds; in each, every image draws one op uniformly from
    ``ops`` (with replacement, as timm), applies it with probability
    ``op_prob`` (timm: 0.5) at magnitude ~ N(magnitude, magnitude_std)
    clipped to [0, 10] and a random sign. Each op runs only on the images
    that chose it; all geometric ones share one ``grid_sample``. Values are
    rounded to integers after each op, like PIL. Returns uint8, same shape.
    """
    kinds = list(ops)
    geometric = torch.tensor([k in GEOMETRIC_OPS for k in kinds], device=generator.device)
    b = len(images)
    x = images.float()
    for _ in range(num_ops):
        op = _draw(generator, torch.randint, len(kinds), (b,))
        on = _draw(generator, torch.rand, b) < op_prob
        m = (magnitude + magnitude_std * _draw(generator, torch.randn, b)).clamp(0, 10)
        sign = torch.where(_draw(generator, torch.rand, b) < 0.5, -1.0, 1.0)
        op = torch.where(on, op, kinds.index("identity") if "identity" in kinds else -1)
        op, m, sign = op.to(x.device), m.to(x.device), sign.to(x.device)
        for k, name in enumerate(kinds):
            if name in COLOR_OPS and name != "identity":
                idx = (op == k).nonzero().squeeze(1)
                if idx.numel():
                    x[idx] = COLOR_OPS[name](x[idx], m[idx], sign[idx]).round().clamp(0, 255)
        idx = (on & geometric.to(x.device)[op.clamp_min(0)]).nonzero().squeeze(1)
        if idx.numel():
            warped = _geometric(x[idx], op[idx], m[idx], sign[idx], kinds, fill)
            x[idx] = warped.round().clamp(0, 255)
    return x.to(torch.uint8)


def random_erasing(
    images: torch.Tensor,
    generator: torch.Generator,
    prob: float = 0.25,
    area: tuple[float, float] = (0.02, 1 / 3),
    aspect: tuple[float, float] = (0.3, 1 / 0.3),
    attempts: int = 10,
) -> torch.Tensor:
    """timm-style random erasing ("pixel" mode) on a normalised float batch.

    Each image, with probability ``prob``, gets one rectangle of area
    fraction in ``area`` and log-uniform aspect ratio in ``aspect`` replaced
    by per-pixel N(0, 1) noise. As in timm, up to ``attempts`` rectangles
    are drawn and the first that fits is used (none fits: image kept).
    """
    b, c, h, w = images.shape

    def rand(*shape: int) -> torch.Tensor:
        return _draw(generator, torch.rand, *shape)

    on = rand(b) < prob
    target = h * w * (area[0] + (area[1] - area[0]) * rand(b, attempts))
    log_lo, log_hi = math.log(aspect[0]), math.log(aspect[1])
    ratio = torch.exp(log_lo + (log_hi - log_lo) * rand(b, attempts))
    eh = (target * ratio).sqrt().round().long()
    ew = (target / ratio).sqrt().round().long()
    fits = (eh < h) & (ew < w)
    first = fits.float().argmax(1, keepdim=True)
    on = on & fits.any(1)
    eh, ew = eh.gather(1, first).squeeze(1), ew.gather(1, first).squeeze(1)
    top = (rand(b) * (h - eh + 1)).floor().long()
    left = (rand(b) * (w - ew + 1)).floor().long()
    noise = _draw(generator, torch.randn, images.shape, dtype=images.dtype).to(images.device)
    rows = torch.arange(h, device=top.device)
    cols = torch.arange(w, device=top.device)
    in_rows = (rows >= top[:, None]) & (rows < (top + eh)[:, None])
    in_cols = (cols >= left[:, None]) & (cols < (left + ew)[:, None])
    mask = (in_rows[:, :, None] & in_cols[:, None, :] & on[:, None, None]).to(images.device)
    return torch.where(mask[:, None], noise, images)


class TrainAugment:
    """The training view of a batch: uint8 images and labels in, model input and targets out.

    In order: random crop with padding and horizontal flip, RandAugment (if
    ``randaugment_ops``), normalisation, random erasing (if ``erasing``), and
    Mixup/CutMix (if either alpha is set), which turns the labels into soft
    targets (label smoothing included); otherwise the labels pass through as
    class indices. One generator drives every draw, so its state (see
    :meth:`state_dict`) is all a checkpoint needs to replay the augmentation.
    """

    def __init__(
        self,
        num_classes: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        *,
        padding: int = 4,
        randaugment_ops: int = 0,
        randaugment_magnitude: float = 9.0,
        erasing: float = 0.0,
        mixup: float = 0.0,
        cutmix: float = 0.0,
        label_smoothing: float = 0.0,
        seed: int = 0,
        device: str | torch.device = "cpu",
    ):
        self.num_classes, self.mean, self.std = num_classes, mean, std
        self.padding, self.erasing = padding, erasing
        self.randaugment = (randaugment_ops, randaugment_magnitude)
        self.mix = (mixup, cutmix, label_smoothing)
        self.generator = torch.Generator(device=device).manual_seed(seed)

    @property
    def mixes(self) -> bool:
        """Whether targets come out soft (Mixup or CutMix on)."""
        return self.mix[0] > 0 or self.mix[1] > 0

    def __call__(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment one batch; return (normalised float images, targets)."""
        g = self.generator
        images = random_hflip(random_crop(images, self.padding, g), g)
        ops, magnitude = self.randaugment
        if ops:
            images = rand_augment(images, g, num_ops=ops, magnitude=magnitude)
        x = normalize(images, self.mean, self.std)
        if self.erasing:
            x = random_erasing(x, g, prob=self.erasing)
        if not self.mixes:
            return x, labels
        mixup, cutmix, smoothing = self.mix
        return mixup_cutmix(
            x, labels, self.num_classes, g, mixup_alpha=mixup, cutmix_alpha=cutmix,
            label_smoothing=smoothing,
        )  # fmt: skip

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The generator state, for exact resumption."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the generator state saved by :meth:`state_dict`."""
        self.generator.set_state(state["generator"])
