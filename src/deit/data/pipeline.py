"""The training view of a batch: every augmentation of the recipe, in order, from one generator."""

from __future__ import annotations

import torch

from deit.data.augment import normalize, random_crop, random_erasing, random_hflip
from deit.data.mix import mixup_cutmix
from deit.data.randaugment import rand_augment


class TrainAugment:
    """The training view of a batch: uint8 images and labels in, model input and targets out.

    In order: random crop with padding and horizontal flip (probability
    ``hflip``), RandAugment (if ``randaugment_ops``), normalisation, random
    erasing (if ``erasing``), and Mixup/CutMix (if either alpha is set),
    which turns the labels into soft targets (label smoothing included);
    otherwise the labels pass through as class indices. One generator on the
    images' device drives every draw (on a GPU, a second one on the CPU draws
    Mixup/CutMix's per-batch numbers, so the host never waits for the GPU),
    and their state (see :meth:`state_dict`) is all a checkpoint needs to
    replay the augmentation.
    """

    def __init__(
        self,
        num_classes: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        *,
        padding: int = 4,
        hflip: float = 0.5,
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
        self.padding, self.hflip, self.erasing = padding, hflip, erasing
        self.randaugment = (randaugment_ops, randaugment_magnitude)
        self.mix = (mixup, cutmix, label_smoothing)
        self.generator = torch.Generator(device=device).manual_seed(seed)
        # Mixup/CutMix draw a few numbers per batch that steer Python code (which of the
        # two, λ, the box); drawn on the GPU, reading them would stall the loop on every step.
        self.host_generator = self.generator
        if self.generator.device.type != "cpu":
            self.host_generator = torch.Generator().manual_seed(seed)

    @property
    def mixes(self) -> bool:
        """Whether targets come out soft (Mixup or CutMix on)."""
        return self.mix[0] > 0 or self.mix[1] > 0

    def __call__(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment one batch; return (normalised float images, targets)."""
        g = self.generator
        images = random_hflip(random_crop(images, self.padding, g), g, self.hflip)
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
            x, labels, self.num_classes, self.host_generator, mixup_alpha=mixup,
            cutmix_alpha=cutmix, label_smoothing=smoothing,
        )  # fmt: skip

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The generators' states, for exact resumption."""
        state = {"generator": self.generator.get_state()}
        if self.host_generator is not self.generator:
            state["host_generator"] = self.host_generator.get_state()
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the generators' states saved by :meth:`state_dict`."""
        self.generator.set_state(state["generator"])
        if "host_generator" in state:
            self.host_generator.set_state(state["host_generator"])
