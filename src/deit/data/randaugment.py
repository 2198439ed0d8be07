"""RandAugment on uint8 batches (Cubuk et al. 2020), per image, as tensor operations.

Each image draws its own operations and magnitudes from the run's generator;
every operation runs once per batch on the images that chose it, and all
geometric operations of a round share one ``affine_grid``/``grid_sample``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from deit.data.augment import draw


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
        op = draw(generator, torch.randint, len(kinds), (b,))
        on = draw(generator, torch.rand, b) < op_prob
        m = (magnitude + magnitude_std * draw(generator, torch.randn, b)).clamp(0, 10)
        sign = torch.where(draw(generator, torch.rand, b) < 0.5, -1.0, 1.0)
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
