"""The training view of a batch: every augmentation of the recipe, in order, from one generator."""

from __future__ import annotations

import torch

from deit.data.augment import normalize, random_crop, random_erasing, random_hflip
from deit.data.mix import mixup_cutmix
from deit.data.randaugment import rand_augment


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
