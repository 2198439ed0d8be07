"""Tests for the batched augmentations against per-image reference loops."""

import torch
import torch.nn.functional as F

from deit.data import augment as aug
from deit.data import mix
from deit.data import randaugment as ra
from deit.data.augment import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    normalize,
    random_crop,
    random_hflip,
)
from deit.data.pipeline import TrainAugment


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


def test_train_augment_state_replays_exactly():
    images, labels = batch(), torch.arange(16) % 10
    full = dict(randaugment_ops=2, erasing=0.25, mixup=0.8, cutmix=1.0, label_smoothing=0.1)
    train_view = TrainAugment(10, CIFAR10_MEAN, CIFAR10_STD, seed=1, **full)
    train_view(images, labels)
    state = train_view.state_dict()
    x, targets = train_view(images, labels)
    train_view.load_state_dict(state)
    x2, targets2 = train_view(images, labels)
    assert torch.equal(x, x2) and torch.equal(targets, targets2)
    assert targets.shape == (16, 10) and torch.allclose(targets.sum(1), torch.ones(16))
    other = TrainAugment(10, CIFAR10_MEAN, CIFAR10_STD, seed=2, **full)
    assert not torch.equal(other(images, labels)[0], x)


def test_train_augment_without_mixing_passes_class_indices():
    images, labels = batch(), torch.arange(16) % 10
    x, targets = TrainAugment(10, CIFAR10_MEAN, CIFAR10_STD)(images, labels)
    assert x.dtype == torch.float32 and x.shape == images.shape
    assert torch.equal(targets, labels)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_sample_beta_moments():
    for a in (0.8, 1.0, 2.5):
        x = mix.sample_beta(a, a, 20000, gen(1))
        var = a * a / ((2 * a) ** 2 * (2 * a + 1))
        assert x.min() >= 0 and x.max() <= 1
        assert abs(float(x.mean()) - 0.5) < 0.01
        assert abs(float(x.var()) - var) < 0.006
    x = mix.sample_beta(0.5, 2.0, 20000, gen(2))
    assert abs(float(x.mean()) - 0.2) < 0.01
    assert torch.equal(x, mix.sample_beta(0.5, 2.0, 20000, gen(2)))


def test_mix_targets_hand_formula_and_rows_sum_to_one():
    labels = torch.tensor([0, 1, 2, 3, 1])
    t = mix.mix_targets(labels, 4, 0.7, smoothing=0.1)
    on, off = 0.9 + 0.025, 0.025
    expected_row0 = 0.7 * torch.tensor([on, off, off, off]) + 0.3 * torch.tensor(
        [off, on, off, off]
    )
    assert torch.allclose(t[0], expected_row0)
    assert torch.allclose(t[2], torch.tensor([off, off, on, off]))  # middle pairs with itself
    assert torch.allclose(t.sum(1), torch.ones(5))
    x = torch.randn(5, 3, 4, 4)
    assert torch.allclose(mix.mixup_images(x, 0.7)[1], 0.7 * x[1] + 0.3 * x[3])


def test_cutmix_box_area_matches_corrected_lambda():
    x = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 3, 32, 32)
    for seed in range(20):
        out, lam = mix.cutmix_images(x, 0.6, gen(seed))
        pasted = (out[0] != x[0]).float().mean()
        assert abs(float(pasted) - (1 - lam)) < 1e-6
        assert torch.equal(out[0] != x[0], out[3] != x[3])
        assert bool(((out[0] == 0) | (out[0] == 3)).all())


def test_mixup_cutmix_shapes_determinism_and_targets():
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,), generator=gen(3))
    for kw in ({}, {"mixup_alpha": 0.0}, {"cutmix_alpha": 0.0}):
        out, t = mix.mixup_cutmix(x, y, 10, gen(4), **kw)
        again, t2 = mix.mixup_cutmix(x, y, 10, gen(4), **kw)
        assert out.shape == x.shape and out.dtype == x.dtype and t.shape == (8, 10)
        assert torch.equal(out, again) and torch.equal(t, t2)
        assert torch.allclose(t.sum(1), torch.ones(8))
        assert torch.allclose(t.max(1).values, t.max(1).values)  # finite
    out, t = mix.mixup_cutmix(x, y, 10, gen(4), mixup_alpha=0.0, cutmix_alpha=0.0)
    assert torch.equal(out, x)
    assert torch.allclose(t, mix.smooth_one_hot(y, 10, 0.1))
    # λ is actually drawn: mixup results differ across seeds and are convex
    outs = [mix.mixup_cutmix(x, y, 10, gen(s), cutmix_alpha=0.0)[1] for s in range(4)]
    assert len({round(float(o[0].max()), 6) for o in outs}) > 1


def test_rand_augment_shapes_and_determinism():
    images = batch(n=32, h=32, w=32)
    out = ra.rand_augment(images, gen(5))
    assert out.dtype == torch.uint8 and out.shape == images.shape
    assert torch.equal(out, ra.rand_augment(images, gen(5)))
    assert not torch.equal(out, images)
    for op in ra.RAND_AUGMENT_OPS:  # every op runs and keeps the format
        o = ra.rand_augment(images, gen(6), num_ops=1, op_prob=1.0, ops=(op,))
        assert o.dtype == torch.uint8 and o.shape == images.shape


def test_rand_augment_magnitude_zero_identity_like_ops_keep_images():
    images = batch(n=16, h=32, w=32)
    ops = ("identity", "brightness", "color", "contrast", "sharpness", "solarize")
    ops += ra.GEOMETRIC_OPS
    out = ra.rand_augment(
        images, gen(7), num_ops=3, magnitude=0, magnitude_std=0, op_prob=1.0, ops=ops
    )
    assert (out.int() - images.int()).abs().max() <= 1


def test_rand_augment_ops_match_simple_references():
    x = batch(n=4, h=8, w=8).float()
    m, s = torch.full((4,), 10.0), torch.ones(4)
    assert torch.equal(ra._solarize(x, torch.full((4,), 5.0), s), torch.where(x >= 128, 255 - x, x))
    assert torch.equal(ra._posterize(x, torch.full((4,), 5.0), s), (x / 64).floor() * 64)
    out = ra._autocontrast(x, m, s)
    assert torch.equal(out.amin((2, 3)), torch.zeros(4, 3))
    assert torch.allclose(out.amax((2, 3)), torch.full((4, 3), 255.0))
    flipped = ra.rand_augment(
        x.to(torch.uint8),
        gen(0),
        num_ops=1,
        magnitude=0,
        magnitude_std=0,
        op_prob=1.0,
        ops=("rotate",),
    )
    assert torch.equal(flipped, x.to(torch.uint8))


def test_equalize_matches_pil_algorithm():
    x = (batch(n=3, h=8, w=8) // 16).float()  # few distinct levels
    out = ra._equalize(x, None, None)
    for i in range(3):
        for c in range(3):
            vals = x[i, c].long().flatten()
            hist = torch.bincount(vals, minlength=256).tolist()
            nz = [v for v in hist if v]
            step = (sum(nz) - nz[-1]) // 255
            if not step:
                assert torch.equal(out[i, c], x[i, c])
                continue
            lut, n = [], step // 2
            for v in hist:
                lut.append(min(255, n // step))
                n += v
            assert torch.equal(out[i, c].long().flatten(), torch.tensor(lut)[vals])


def test_random_erasing_prob_zero_and_one():
    x = torch.randn(64, 3, 32, 32, generator=gen(8))
    assert torch.equal(aug.random_erasing(x, gen(9), prob=0.0), x)
    out = aug.random_erasing(x, gen(9), prob=1.0)
    changed = (out != x).flatten(1).float().mean(1)
    assert bool((changed > 0.015).all()) and bool((changed < 0.4).all())
    assert torch.equal(out, aug.random_erasing(x, gen(9), prob=1.0))
    assert out.shape == x.shape and out.dtype == x.dtype


def test_sharpness_smoothing_matches_pil_kernel_and_translate_is_exact():
    x = batch(n=4, h=8, w=8).float()
    kernel = torch.tensor([[1.0, 1, 1], [1, 5, 1], [1, 1, 1]]).div(13).expand(3, 1, 3, 3)
    smooth = x.clone()
    smooth[..., 1:-1, 1:-1] = F.conv2d(x, kernel, groups=3).round()
    zero = torch.zeros(4)  # factor 1 - 0.9 = 0.1 at m = 10, sign -1
    got = ra._sharpness(x, torch.full((4,), 10.0), -torch.ones(4))
    assert torch.allclose(got, smooth + 0.1 * (x - smooth), atol=1e-4)
    assert torch.equal(ra._sharpness(x, zero, torch.ones(4)), x)
    images = batch(n=2, h=20, w=20)
    out = ra.rand_augment(
        images,
        gen(0),
        num_ops=1,
        magnitude=10,
        magnitude_std=0,
        op_prob=1.0,
        ops=("translate_x",),
    )  # 45 % of 20 px = 9 px, either way, gray fill
    for o, i in zip(out, images, strict=True):
        left = torch.equal(o[..., :11], i[..., 9:]) and bool((o[..., 11:] == 128).all())
        right = torch.equal(o[..., 9:], i[..., :11]) and bool((o[..., :9] == 128).all())
        assert left or right
