"""Whole-batch augmentation on the training device.

Every transform here takes a batch ``B×C×H×W`` and samples its randomness
per image from one ``torch.Generator`` in a single call, so a batch costs a
few tensor operations whatever its size, and the generator's state is all a
checkpoint needs to replay the augmentation exactly.
"""

from __future__ import annotations

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


class CropFlip:
    """The basic CIFAR training augmentation: random crop with padding, flip.

    Works on uint8 batches (cheaper than floats) and owns its generator, so
    its ``state_dict`` can be checkpointed and a resumed run sees the same
    crops and flips as an uninterrupted one.
    """

    def __init__(self, padding: int = 4, seed: int = 0, device: str | torch.device = "cpu"):
        self.padding = padding
        self.generator = torch.Generator(device=device).manual_seed(seed)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Augment one batch of images."""
        images = random_crop(images, self.padding, self.generator)
        return random_hflip(images, self.generator)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The generator state, for exact resumption."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the generator state saved by :meth:`state_dict`."""
        self.generator.set_state(state["generator"])
