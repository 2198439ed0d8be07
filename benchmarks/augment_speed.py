"""Batched augmentation: the project's own tensor ops against kornia's, on a CPU batch.

Issue 4 asks for all augmentation batched on the training device, with
kornia or the project's own ops, whichever is faster. This times, on the same
batch of real CIFAR-10 images (uint8 in, float out, as the trainer uses them),
each stage of the DeiT recipe in both implementations:

- crop (pad 4) + horizontal flip + normalisation (every recipe);
- RandAugment, 2 ops at magnitude 9 (the paper's);
- random erasing with probability 0.25;
- Mixup (α 0.8) and CutMix (α 1.0) with soft targets.

kornia is not a dependency of the package; install it in a throwaway
environment to run this (``pip install kornia``). The figures are medians of
``--repeats`` calls after two warm-up calls.

    python benchmarks/augment_speed.py [--batch 128] [--repeats 20] [--data-dir D]
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import time

import torch

from deit.data import load_cifar
from deit.data.augment import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    normalize,
    random_crop,
    random_erasing,
    random_hflip,
)
from deit.data.mix import mixup_cutmix
from deit.data.randaugment import rand_augment
from deit.hardware import hardware


def median_ms(fn, repeats: int) -> float:
    """Median milliseconds of ``repeats`` calls of ``fn`` after two warm-up calls."""
    fn(), fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def ours(images: torch.Tensor, labels: torch.Tensor) -> dict:
    """The project's batched ops, one generator, as ``TrainAugment`` calls them."""
    g = torch.Generator().manual_seed(0)
    x = normalize(images, CIFAR10_MEAN, CIFAR10_STD)
    return {
        "crop + flip + normalise": lambda: normalize(
            random_hflip(random_crop(images, 4, g), g), CIFAR10_MEAN, CIFAR10_STD
        ),
        "RandAugment 2 ops, m9": lambda: rand_augment(images, g, num_ops=2, magnitude=9),
        "random erasing p 0.25": lambda: random_erasing(x, g, prob=0.25),
        "Mixup 0.8 / CutMix 1.0": lambda: mixup_cutmix(
            x, labels, 10, g, mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1
        ),
    }


def kornia_ops(images: torch.Tensor, labels: torch.Tensor) -> dict:
    """kornia's equivalents (float images in [0, 1], as kornia expects)."""
    import kornia.augmentation as K
    from kornia.augmentation.auto import RandAugment

    pixels = images.float().div(255)
    mean, std = torch.tensor(CIFAR10_MEAN), torch.tensor(CIFAR10_STD)
    basic = K.AugmentationSequential(
        K.RandomCrop((32, 32), padding=4),
        K.RandomHorizontalFlip(),
        K.Normalize(mean, std),
    )
    randaugment = RandAugment(n=2, m=9)
    erasing = K.RandomErasing(p=0.25)
    mixup, cutmix = K.RandomMixUpV2(), K.RandomCutMixV2(use_correct_lambda=True)
    x = (pixels - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    half = len(x) // 2  # timm switches between the two per batch; time one of each
    return {
        "crop + flip + normalise": lambda: basic(pixels),
        "RandAugment 2 ops, m9": lambda: randaugment(pixels),
        "random erasing p 0.25": lambda: erasing(x),
        "Mixup 0.8 / CutMix 1.0": lambda: (
            mixup(x[:half], labels[:half]),
            cutmix(x[half:], labels[half:]),
        ),
    }


def main() -> None:
    """Print the markdown table for benchmarks/RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    data = load_cifar("cifar10", args.data_dir, download=False)
    images, labels = data.train_images[: args.batch], data.train_labels[: args.batch]
    mine = {k: median_ms(fn, args.repeats) for k, fn in ours(images, labels).items()}
    try:
        import kornia

        theirs = {k: median_ms(fn, args.repeats) for k, fn in kornia_ops(images, labels).items()}
        version = kornia.__version__
    except ImportError:
        theirs, version = {}, "not installed"
    hw = hardware()
    print(f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC · {hw['cpu']} · "
          f"{hw['threads']} threads · torch {hw['torch']} · kornia {version} · batch "
          f"{args.batch} · median of {args.repeats}\n")  # fmt: skip
    print("| stage | deit (ms) | kornia (ms) | kornia / deit |")
    print("|---|---:|---:|---:|")
    for stage, ms in mine.items():
        other = theirs.get(stage)
        cells = f"{other:.2f} | ×{other / ms:.1f}" if other is not None else "– | –"
        print(f"| {stage} | {ms:.2f} | {cells} |")


if __name__ == "__main__":
    main()
