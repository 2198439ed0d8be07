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
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def dataset_stats(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel training-set (mean, std) of ``cifar10``, ``cifar100`` or ``imagenet``.

    What a student normalises its inputs with; ImageNet's serve image folders.
    """
    stats = {
        "cifar10": (CIFAR10_MEAN, CIFAR10_STD),
        "cifar100": (CIFAR100_MEAN, CIFAR100_STD),
        "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    }
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


def resize(x: torch.Tensor, size: int, *, pool: bool = False) -> torch.Tensor:
    """Float images ``B × C × H × W`` → ``B × C × size × size``; the project's only resize.

    Same size: ``x`` itself. Downscaling (a student training at a lower
    resolution first, when tokens are cheap) is anti-aliased bilinear, so a
    small image is a faithful small version of the original; upscaling
    (fine-tuning at a higher resolution) is bicubic.

    ``pool=True`` (what a teacher's input uses: :class:`~deit.models.teachers.Teacher`,
    :func:`~deit.models.teachers.predict`) makes a downscale by a whole factor
    average ``factor × factor`` blocks instead: that exactly undoes a
    nearest-neighbour upscale and anti-aliases any other, so a teacher shown a
    student's upscaled batch sees its native images again. Other sizes are
    resized as without it.
    """
    h, w = x.shape[-2:]
    if (h, w) == (size, size):
        return x
    if pool and h % size == 0 and w % size == 0:
        return F.avg_pool2d(x, (h // size, w // size))
    if size > w:
        return F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def draw(generator: torch.Generator, fn, *args, **kwargs) -> torch.Tensor:
    """Call a ``torch`` sampler (``rand``, ``randn``, ...) on the generator's device."""
    return fn(*args, generator=generator, device=generator.device, **kwargs)


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
        return draw(generator, torch.rand, *shape)

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
    noise = draw(generator, torch.randn, images.shape, dtype=images.dtype).to(images.device)
    rows = torch.arange(h, device=top.device)
    cols = torch.arange(w, device=top.device)
    in_rows = (rows >= top[:, None]) & (rows < (top + eh)[:, None])
    in_cols = (cols >= left[:, None]) & (cols < (left + ew)[:, None])
    mask = (in_rows[:, :, None] & in_cols[:, None, :] & on[:, None, None]).to(images.device)
    return torch.where(mask[:, None], noise, images)
