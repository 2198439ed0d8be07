"""The per-image views of DeiT's input pipeline: random-resized crop, evaluation crop, resize.

Each takes a file path and returns a uint8 tensor 3×size×size; the random
one takes its numpy generator, so the caller decides what seeds it
(:mod:`deit.data.stream`: seed, epoch and position in the epoch's order).
Decoding is the cost, so it is cut where the view allows: a JPEG is decoded
at 1/2, 1/4 or 1/8 scale (Pillow's draft mode, done by libjpeg in the DCT)
whenever the crop still covers at least the output size after it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numpy.random import Generator
from PIL import Image

from deit.data.folder import open_rgb

BICUBIC = Image.Resampling.BICUBIC
Ratio = tuple[float, float]
SCALE, RATIO = (0.08, 1.0), (3 / 4, 4 / 3)  # DeiT's (timm's, torchvision's) crop ranges


def crop_params(
    width: int, height: int, rng: Generator, scale: Ratio = SCALE, ratio: Ratio = RATIO
) -> tuple[int, int, int, int]:
    """``(left, top, w, h)`` of a random crop of a ``width``×``height`` image.

    torchvision's ``RandomResizedCrop.get_params`` (what DeiT and timm train
    with), drawn from ``rng``: up to 10 attempts of an area fraction uniform
    in ``scale`` and an aspect ratio log-uniform in ``ratio``; the first box
    that fits is placed uniformly. If none fits, the central crop, clipped to
    the ratio range (the whole image when its aspect is inside it).
    """
    area = width * height
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return left, top, w, h
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        w, h = round(height * max(ratio)), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def random_resized_crop(
    image: Image.Image, size: int, rng: Generator, scale: Ratio = SCALE, ratio: Ratio = RATIO
) -> Image.Image:
    """A :func:`crop_params` box of a decoded ``image``, resized to ``size``×``size`` (bicubic).

    The crop and the resize are one Pillow ``resize(box=...)``, which also
    takes fractional boxes (:func:`train_image` needs them on drafted JPEGs).
    """
    left, top, w, h = crop_params(image.width, image.height, rng, scale, ratio)
    return image.resize((size, size), BICUBIC, box=(left, top, left + w, top + h))


def train_image(
    path: str, size: int, rng: Generator, scale: Ratio = SCALE, ratio: Ratio = RATIO
) -> torch.Tensor:
    """The training crop of the image at ``path``: a uint8 tensor 3×``size``×``size``.

    The crop box is drawn from the header's size (``Image.open`` decodes
    nothing), then a JPEG is decoded at the largest draft reduction that
    keeps the box at least ``size`` pixels on each side and the box is
    scaled to the drafted image. Same box, and on a non-JPEG the same pixels,
    as :func:`random_resized_crop` of the fully decoded image.
    """
    header = _header_size(path)
    if header is None:  # open_rgb raises the DataError saying why
        return to_tensor(random_resized_crop(open_rgb(path), size, rng, scale, ratio))
    width, height = header
    left, top, w, h = crop_params(width, height, rng, scale, ratio)
    reduction = min(w, h) / size
    draft = None
    if reduction >= 2:  # draft scale = min(width // dw, height // dh) <= reduction
        draft = (math.ceil(width / reduction), math.ceil(height / reduction))
    image = open_rgb(path, draft)
    sx, sy = _draft_factor((width, height), image.size)
    box = (left * sx, top * sy, (left + w) * sx, (top + h) * sy)
    return to_tensor(image.resize((size, size), BICUBIC, box=box))


def eval_image(path: str, size: int, crop_pct: float = 0.875) -> torch.Tensor:
    """DeiT's evaluation transform of the image at ``path``: uint8 3×``size``×``size``.

    The short side resized to ``int(size / crop_pct)`` (bicubic, long side as
    torchvision's ``Resize`` computes it from the original size), then the
    central ``size``×``size`` crop. A JPEG is first decoded at the largest
    draft reduction that keeps its short side at least that long.
    """
    if not 0 < crop_pct <= 1:
        raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
    short = int(size / crop_pct)
    header = _header_size(path)
    image = open_rgb(path, (short, short) if header else None)
    return to_tensor(eval_crop(image, size, crop_pct, header))


def eval_crop(
    image: Image.Image, size: int, crop_pct: float = 0.875, original: tuple[int, int] | None = None
) -> Image.Image:
    """:func:`eval_image`'s view of an RGB image already decoded (``deit.load``'s preprocess).

    ``original`` is the (width, height) the image had before a draft-mode
    decode, from which the resized size is computed (default: its own size).
    """
    short = int(size / crop_pct)
    width, height = original or image.size
    if width <= height:
        new = (short, int(short * height / width))
    else:
        new = (int(short * width / height), short)
    image = image.resize(new, BICUBIC)
    left, top = round((new[0] - size) / 2), round((new[1] - size) / 2)
    return image.crop((left, top, left + size, top + size))


def plain_image(path: str, size: int) -> torch.Tensor:
    """The image at ``path`` as uint8 3×``size``×``size``, resized (bicubic) only if not already.

    For data sets stored at the training size (CIFAR exported as 32-pixel
    PNGs), whose random crops are done on the device instead.
    """
    return to_tensor(plain_resize(open_rgb(path, (size, size)), size))


def plain_resize(image: Image.Image, size: int) -> Image.Image:
    """:func:`plain_image`'s view of an RGB image already decoded: resized unless at ``size``."""
    return image if image.size == (size, size) else image.resize((size, size), BICUBIC)


def to_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB Pillow image as a contiguous uint8 tensor 3×H×W."""
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()


def _header_size(path: str) -> tuple[int, int] | None:
    """(width, height) read from the file's header, or None if Pillow cannot open it."""
    try:
        with Image.open(path) as image:
            return image.size
    except Exception:  # reported, with its reason, by the open_rgb that follows
        return None


def _draft_factor(original: tuple[int, int], decoded: tuple[int, int]) -> tuple[float, float]:
    """Decoded pixels per original pixel: 1/s for a JPEG drafted at 1/s, else the size ratio."""
    for s in (1, 2, 4, 8):
        if all((o + s - 1) // s == d for o, d in zip(original, decoded, strict=True)):
            return 1 / s, 1 / s
    return decoded[0] / original[0], decoded[1] / original[1]
