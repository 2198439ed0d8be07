"""DeiT's random-resized crop of a whole batch, on the batch's device.

For an image set decoded once into memory (``decode_once``): instead of a
worker process cropping each file (`deit.data.stream`), one call draws every
image's box and one ``grid_sample`` resamples them all, so a batch costs a
few tensor operations and its randomness comes from one ``torch.Generator``.

The boxes follow torchvision's ``RandomResizedCrop.get_params`` (what DeiT
trains with); the resampling is bicubic (DeiT's interpolation) but, unlike
Pillow's, not antialiased: ``grid_sample`` samples the box at the output's
pixel centres, so a box much larger than the output aliases. At the default
``decode_size`` (round(size / 0.875)) a box is at most ≈ 1.15 times the output size.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from deit.data.loader import BatchLoader

Range = tuple[float, float]
SCALE, RATIO = (0.08, 1.0), (3 / 4, 4 / 3)  # DeiT's (timm's, torchvision's) crop ranges


def crop_boxes(
    n: int, height: int, width: int, generator: torch.Generator,
    scale: Range = SCALE, ratio: Range = RATIO, attempts: int = 10,
) -> torch.Tensor:  # fmt: skip
    """``n`` random crop boxes of a ``height``×``width`` image: float ``n×4`` (left, top, w, h).

    torchvision's ``get_params``, vectorised: ``attempts`` (area fraction
    uniform in ``scale``, aspect ratio log-uniform in ``ratio``) pairs per
    box in one draw, the first that fits placed uniformly at whole pixels;
    if none fits, the central crop clipped to the ratio range. On the
    generator's device, with no host synchronisation.
    """

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator, device=generator.device)

    target = height * width * (scale[0] + (scale[1] - scale[0]) * rand(n, attempts))
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * rand(n, attempts))
    w, h = (target * aspect).sqrt().round(), (target / aspect).sqrt().round()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.float().argmax(1, keepdim=True)  # the first attempt that fits
    w, h = w.gather(1, first).squeeze(1), h.gather(1, first).squeeze(1)
    left = (rand(n) * (width - w + 1)).floor()
    top = (rand(n) * (height - h + 1)).floor()
    boxes = torch.stack([left, top, w, h], 1)
    in_ratio = width / height  # the fallback: the central crop within the ratio range
    cw, ch = width, height
    if in_ratio < min(ratio):
        ch = round(width / min(ratio))
    elif in_ratio > max(ratio):
        cw = round(height * max(ratio))
    central = torch.tensor([(width - cw) // 2, (height - ch) // 2, cw, ch], device=boxes.device)
    return torch.where(fits.any(1, keepdim=True), boxes, central.to(boxes.dtype))


def resample_boxes(
    images: torch.Tensor, boxes: torch.Tensor, size: int, mode: str = "bicubic"
) -> torch.Tensor:
    """Box ``boxes[i]`` (left, top, w, h in pixels) of each image resized to ``size``×``size``.

    One ``affine_grid`` + ``grid_sample`` (``mode`` bicubic or bilinear,
    ``align_corners=False``, borders replicated; no antialiasing). uint8 in,
    uint8 out (rounded, clamped); a float batch comes out float, unclamped.
    """
    b, c, height, width = images.shape
    x = images if images.is_floating_point() else images.float()
    left, top, w, h = boxes.to(x.device, x.dtype).unbind(1)
    theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 2] = w / width, (2 * left + w) / width - 1
    theta[:, 1, 1], theta[:, 1, 2] = h / height, (2 * top + h) / height - 1
    grid = F.affine_grid(theta, [b, c, size, size], align_corners=False)
    out = F.grid_sample(x, grid, mode=mode, padding_mode="border", align_corners=False)
    if images.is_floating_point():
        return out
    return out.round_().clamp_(0, 255).to(images.dtype)


def random_resized_crop_batch(
    images: torch.Tensor, size: int, generator: torch.Generator,
    scale: Range = SCALE, ratio: Range = RATIO, mode: str = "bicubic",
) -> torch.Tensor:  # fmt: skip
    """DeiT's random-resized crop of each image of ``images`` (B×C×H×W), to ``size``×``size``.

    :func:`crop_boxes` drawn from ``generator`` (its state replays them),
    then :func:`resample_boxes`: uint8 in, uint8 out; float in, float out.
    """
    b, _, height, width = images.shape
    boxes = crop_boxes(b, height, width, generator, scale, ratio)
    return resample_boxes(images, boxes, size, mode)


class RandomResizedCrops:
    """A :class:`BatchLoader` of decoded images whose batches come out random-resized-cropped.

    The interface of ``BatchLoader`` (``__len__``, ``set_epoch``, ``indices``,
    ``iter_from``). Batch ``k`` of an epoch draws the boxes of the whole
    global batch (every rank's) from a generator seeded by ``(seed, epoch,
    k)`` and this rank keeps its own (positions ``rank, rank + world_size,
    …``): the crops depend on neither the rank count nor any state, so a
    resumed epoch replays them and 2 ranks × 32 crop as 1 process × 64 does.
    """

    def __init__(
        self, loader: BatchLoader, size: int, *, seed: int = 0,
        scale: Range = SCALE, ratio: Range = RATIO, mode: str = "bicubic",
    ) -> None:  # fmt: skip
        self.loader, self.size, self.seed = loader, size, seed
        self.scale, self.ratio, self.mode = scale, ratio, mode
        self.generator = torch.Generator(device=loader.images.device)

    def __len__(self) -> int:
        return len(self.loader)

    @property
    def epoch(self) -> int:
        return self.loader.epoch

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order and crops the next iteration draws."""
        self.loader.set_epoch(epoch)

    def indices(self) -> torch.Tensor:
        """This rank's sample indices for the current epoch, in batch order."""
        return self.loader.indices()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.iter_from(0)

    def iter_from(self, first_batch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield the epoch's cropped batches from number ``first_batch`` on."""
        rank, ranks = self.loader.rank, self.loader.world_size
        for k, (images, labels) in enumerate(self.loader.iter_from(first_batch), first_batch):
            key = np.random.SeedSequence([self.seed, self.epoch, k])
            self.generator.manual_seed(int(key.generate_state(1, np.uint64)[0]))
            _, _, height, width = images.shape
            boxes = crop_boxes(len(images) * ranks, height, width, self.generator,
                               self.scale, self.ratio)[rank::ranks]  # fmt: skip
            yield resample_boxes(images, boxes, self.size, self.mode), labels
