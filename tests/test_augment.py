"""Tests for the batched augmentations against per-image reference loops."""

import torch
import torch.nn.functional as F

from deit.data.augment import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CropFlip,
    normalize,
    random_crop,
    random_hflip,
)


def batch(n=16, h=8, w=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, h, w), generator=g, dtype=torch.uint8)


def test_random_crop_matches_per_image_reference():
    images, p = batch(), 3
    out = random_crop(images, p, torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    dy = torch.randint(2 * p + 1, (len(images), 1), generator=g)
    dx = torch.randint(2 * p + 1, (len(images), 1), generator=g)
    padded = F.pad(images, (p,) * 4)
    for i in range(len(images)):
        y, x = int(dy[i]), int(dx[i])
        assert torch.equal(out[i], padded[i, :, y : y + 8, x : x + 8])
    assert out.dtype == torch.uint8 and out.shape == images.shape
    assert len({(int(a), int(b)) for a, b in zip(dy, dx, strict=True)}) > 1


def test_random_crop_reflect_mode_takes_windows_of_the_reflected_image():
    x = torch.randn(32, 3, 8, 8)
    padded = F.pad(x, (2, 2, 2, 2), mode="reflect")
    out = random_crop(x, 2, torch.Generator().manual_seed(0), mode="reflect")
    shifts = set()
    for i in range(len(x)):
        windows = [(dy, dx) for dy in range(5) for dx in range(5)]
        match = [
            w
            for w in windows
            if torch.equal(out[i], padded[i, :, w[0] : w[0] + 8, w[1] : w[1] + 8])
        ]
        assert match, f"image {i} is not a window of its reflected copy"
        shifts.add(match[0])
    assert len(shifts) > 5


def test_random_crop_without_padding_is_identity():
    images = batch()
    assert torch.equal(random_crop(images, 0, torch.Generator()), images)


def test_random_hflip_flips_about_half_exactly():
    images = batch(n=400)
    out = random_hflip(images, torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.equal(o, i.flip(2)) for o, i in zip(out, images, strict=True)])
    kept = torch.tensor([torch.equal(o, i) for o, i in zip(out, images, strict=True)])
    assert bool((flipped | kept).all())
    assert 150 < int(flipped.sum()) < 250


def test_normalize_per_channel():
    images = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
    out = normalize(images, CIFAR10_MEAN, CIFAR10_STD)
    expected = (1 - torch.tensor(CIFAR10_MEAN)) / torch.tensor(CIFAR10_STD)
    assert out.dtype == torch.float32
    assert torch.allclose(out[0, :, 0, 0], expected)


def test_cropflip_state_replays_exactly():
    images = batch()
    aug = CropFlip(padding=4, seed=1)
    aug(images)
    state = aug.state_dict()
    first = aug(images)
    aug.load_state_dict(state)
    assert torch.equal(aug(images), first)
    assert not torch.equal(CropFlip(padding=4, seed=2)(images), CropFlip(padding=4, seed=1)(images))
