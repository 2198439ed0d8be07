"""The per-image views of DeiT's input pipeline: random-resized crop, evaluation crop, resize.

Each takes a file path (or its bytes, ``data=``) and returns a uint8 tensor
3×size×size; the random one takes its numpy generator, so the caller decides
what seeds it (:mod:`deit.data.stream`: seed, epoch and position in the
epoch's order). :func:`train_crop` stops before the resize, for a device
that resizes whole batches (:func:`deit.data.resize.resize_crops`); it is
:func:`plan_crop` (box and scale from the header) then :func:`decode_crop`,
so a batch can place its crops before decoding them
(:func:`deit.data.packing.decode_packed`).

Decoding is the cost, so it is cut where the view allows: a JPEG is decoded
by libjpeg-turbo (:mod:`deit.data.decode`) at 1/2, 1/4 or 1/8 scale, in the
DCT, whenever the region still covers at least the output size after it;
the crop is cut in uint8 at that scale and resized with Pillow's
antialiased bicubic filter in torch's uint8 kernel
(:func:`deit.data.resize.resize_uint8`). The eval and plain views of an
image already decoded (``eval_crop``, ``plain_resize``: ``deit.load``'s
preprocess) use the same resize.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from numpy.random import Generator
from PIL import Image

from deit.data.decode import decode_rgb, image_size, jpeg_reduction, read_file
from deit.data.layout import DataError
from deit.data.resize import resize_uint8

Ratio = tuple[float, float]
SCALE, RATIO = (0.08, 1.0), (3 / 4, 4 / 3)  # DeiT's (timm's, torchvision's) crop ranges


def crop_rng(seed: int, epoch: int, draw: int) -> Generator:
    """The generator of one image's random crop: seeded by ``(seed, epoch, draw)`` alone.

    ``draw`` is the image's position in the epoch's global order, so a crop
    depends on neither the worker that decodes it nor the loader (folder or
    shards): a resumed epoch replays it, and copies of a repeated image differ.
    """
    return np.random.default_rng([seed, epoch, draw])


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

    :func:`train_image`'s crop and resize of an image already decoded (the
    same pixels as :func:`train_image` of a file that is not drafted).
    """
    left, top, w, h = crop_params(image.width, image.height, rng, scale, ratio)
    crop = np.array(image)[top : top + h, left : left + w]
    return Image.fromarray(resize_uint8(crop, size, size).permute(1, 2, 0).numpy())


class CropPlan(NamedTuple):
    """A training crop decided from its file's header, nothing decoded yet (:func:`plan_crop`)."""

    path: str
    data: bytes  # the file's bytes
    box: tuple[int, int, int, int]  # left, top, w, h in the original's pixels
    reduction: int  # the JPEG is decoded at 1/reduction
    original: tuple[int, int]  # the header's (width, height)
    shape: tuple[int, int, int]  # the crop's h×w×3 at the decoded scale


def plan_crop(
    path: str, size: int, rng: Generator, scale: Ratio = SCALE, ratio: Ratio = RATIO,
    *, data: bytes | None = None,
) -> CropPlan:  # fmt: skip
    """:func:`train_crop`'s decisions, made before decoding: the box, the DCT scale, the shape.

    The box is drawn by :func:`crop_params` from the header's size, so it
    depends only on ``rng`` and the file. A JPEG is decoded at 1/2, 1/4 or
    1/8 scale (in the DCT, libjpeg-turbo) when the box keeps at least
    ``size`` pixels on its short side at that scale. Knowing every crop's
    shape first lets a batch lay its crops out in one buffer and decode each
    straight into place (:class:`deit.data.stream.ImageStream`).
    ``data``: the file's bytes if already read (``path`` then only names it).
    Raises DataError naming the file when it cannot be read or parsed.
    """
    data = read_file(path) if data is None else data
    header = image_size(data, path)
    if header is None:  # not parsed: decode_rgb raises the DataError saying why
        image = decode_rgb(data, path)
        header = image.shape[1], image.shape[0]
    width, height = header
    box = crop_params(width, height, rng, scale, ratio)
    s = jpeg_reduction(data, min(box[2], box[3]) / size)
    decoded = np.broadcast_to(np.uint8(0), (-(-height // s), -(-width // s), 3))  # no memory
    return CropPlan(path, data, box, s, header, cut(decoded, box, s, header).shape)


def decode_crop(plan: CropPlan) -> np.ndarray:
    """The planned crop, uint8 h×w×3: a view of this thread's scratch decode, valid until the next.

    Raises DataError naming the file when it cannot be decoded, or decodes
    to another size than its header gave (the crop would not be the planned one).
    """
    image = decode_rgb(plan.data, plan.path, plan.reduction, scratch=True)
    crop = cut(image, plan.box, plan.reduction, plan.original)
    if crop.shape != plan.shape:
        width, height = plan.original
        raise DataError(
            f"cannot decode {plan.path}: its header says {width}×{height}, it decodes to "
            f"{image.shape[1] * plan.reduction}×{image.shape[0] * plan.reduction}"
        )
    return crop


def train_crop(
    path: str, size: int, rng: Generator, scale: Ratio = SCALE, ratio: Ratio = RATIO,
    *, data: bytes | None = None,
) -> np.ndarray:  # fmt: skip
    """The training crop of the image at ``path``, not yet resized: uint8 h×w×3 at decoded scale.

    :func:`plan_crop` then :func:`decode_crop`, copied out of the scratch
    buffer (the box's edges rounded to whole decoded pixels). Raises
    DataError naming the file when it cannot be decoded.
    """
    return decode_crop(plan_crop(path, size, rng, scale, ratio, data=data)).copy()


def cut(
    image: np.ndarray, box: tuple[int, int, int, int], reduction: int, original: tuple[int, int]
) -> np.ndarray:
    """The view of ``box`` (left, top, w, h in the original's pixels) in a decoded ``image``.

    ``image`` is the file decoded at 1/``reduction`` (a JPEG's last pixel may
    cover less than ``reduction`` pixels), or at full size when 1 (then the
    box is scaled by the decoded / ``original`` (width, height) ratio, which
    is 1 for every format read today). Edges are rounded to whole decoded
    pixels; at least one pixel is kept.
    """
    left, top, w, h = box
    if reduction > 1:
        fy = fx = 1 / reduction
    else:
        fy, fx = image.shape[0] / original[1], image.shape[1] / original[0]
    rows = slice(round(top * fy), max(round((top + h) * fy), round(top * fy) + 1))
    cols = slice(round(left * fx), max(round((left + w) * fx), round(left * fx) + 1))
    return image[rows, cols]


def train_image(
    path: str, size: int, rng: Generator, scale: Ratio = SCALE, ratio: Ratio = RATIO,
    *, data: bytes | None = None,
) -> torch.Tensor:  # fmt: skip
    """The training view of the image at ``path``: a uint8 tensor 3×``size``×``size``.

    :func:`train_crop` (DeiT's random-resized crop box, JPEGs decoded at the
    largest DCT reduction the box allows) resized by :func:`resize_uint8`
    (Pillow's antialiased bicubic, torch's uint8 kernel).
    """
    plan = plan_crop(path, size, rng, scale, ratio, data=data)
    return resize_uint8(decode_crop(plan), size, size)


def eval_image(
    path: str, size: int, crop_pct: float = 0.875, *, data: bytes | None = None
) -> torch.Tensor:
    """DeiT's evaluation transform of the image at ``path``: uint8 3×``size``×``size``.

    The short side resized to ``int(size / crop_pct)`` (bicubic, long side as
    torchvision's ``Resize`` computes it from the original size), then the
    central ``size``×``size`` crop. A JPEG is first decoded at the largest
    DCT reduction that keeps its short side at least that long.
    """
    if not 0 < crop_pct <= 1:
        raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
    data = read_file(path) if data is None else data
    header = image_size(data, path)
    s = jpeg_reduction(data, min(header) / int(size / crop_pct)) if header else 1
    return _eval_view(decode_rgb(data, path, s), size, crop_pct, header)


def eval_crop(
    image: Image.Image, size: int, crop_pct: float = 0.875, original: tuple[int, int] | None = None
) -> Image.Image:
    """:func:`eval_image`'s view of an RGB image already decoded (``deit.load``'s preprocess).

    ``original`` is the (width, height) the image had before a reduced
    decode, from which the resized size is computed (default: its own size).
    """
    view = _eval_view(np.array(image), size, crop_pct, original)
    return Image.fromarray(view.permute(1, 2, 0).numpy())


def _eval_view(
    image: np.ndarray, size: int, crop_pct: float, original: tuple[int, int] | None
) -> torch.Tensor:
    """:func:`eval_image`'s resize and central crop of a decoded H×W×3 array."""
    short = int(size / crop_pct)
    width, height = original or (image.shape[1], image.shape[0])
    if width <= height:
        new = (short, int(short * height / width))
    else:
        new = (int(short * width / height), short)
    resized = resize_uint8(image, *new)
    left, top = round((new[0] - size) / 2), round((new[1] - size) / 2)
    return resized[:, top : top + size, left : left + size].contiguous()


def plain_image(path: str, size: int, *, data: bytes | None = None) -> torch.Tensor:
    """The image at ``path`` as uint8 3×``size``×``size``, resized (bicubic) only if not already.

    For data sets stored at the training size (CIFAR exported as 32-pixel
    PNGs), whose random crops are done on the device instead.
    """
    data = read_file(path) if data is None else data
    header = image_size(data, path)
    s = jpeg_reduction(data, min(header) / size) if header else 1
    return resize_uint8(decode_rgb(data, path, s), size, size)


def plain_resize(image: Image.Image, size: int) -> Image.Image:
    """:func:`plain_image`'s view of an RGB image already decoded: resized unless at ``size``."""
    if image.size == (size, size):
        return image
    return Image.fromarray(resize_uint8(np.array(image), size, size).permute(1, 2, 0).numpy())


def to_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB Pillow image as a contiguous uint8 tensor 3×H×W."""
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()
