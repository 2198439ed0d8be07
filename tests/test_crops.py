"""The batched random-resized crop on the device, and training a folder decoded once."""

import math
import os
import signal

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import deit
from deit.config import ConfigError, from_preset
from deit.data.crops import RandomResizedCrops, crop_boxes, random_resized_crop_batch
from deit.data.loader import BatchLoader
from deit.data.transforms import crop_params
from deit.distributed import World
from deit.inputs import load_inputs
from deit.rundir import RunDir, RunInterrupted


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("shape", [(37, 37), (30, 40), (50, 20)])
def test_boxes_fit_with_area_and_aspect_in_range(shape):
    height, width = shape
    scale, ratio = (0.08, 1.0), (3 / 4, 4 / 3)
    left, top, w, h = crop_boxes(20_000, height, width, gen(), scale, ratio).unbind(1)
    assert torch.equal(torch.stack([left, top, w, h]), torch.stack([left, top, w, h]).round())
    assert (left >= 0).all() and (top >= 0).all() and (w >= 1).all() and (h >= 1).all()
    assert (left + w <= width).all() and (top + h <= height).all()
    drawn = (w * h / (height * width) >= scale[0] * 0.8) & (w / h >= ratio[0] * 0.9)
    drawn &= w / h <= ratio[1] / 0.9  # rounding to whole pixels moves small boxes a little
    assert drawn.float().mean() > 0.99  # the rest: the central fallback crop
    area = (w * h / (height * width)).mean().item()
    rng = np.random.default_rng(0)  # the same as the streamed per-image crop, on average
    reference = [crop_params(width, height, rng, scale, ratio) for _ in range(20_000)]
    assert area == pytest.approx(np.mean([b[2] * b[3] for b in reference]) / (height * width),
                                 abs=0.01)  # fmt: skip
    log_aspect = (w / h).log().mean().item()
    assert log_aspect == pytest.approx(np.mean([math.log(b[2] / b[3]) for b in reference]),
                                       abs=0.02)  # fmt: skip


def test_when_no_box_fits_the_central_crop_clipped_to_the_ratio():
    boxes = crop_boxes(4, 30, 40, gen(), scale=(1, 1), ratio=(2, 2))  # aspect 2 never fits
    assert boxes.tolist() == [[0, 5, 40, 20]] * 4  # torchvision: w = width, h = width / 2
    boxes = crop_boxes(3, 40, 40, gen(), scale=(1, 1), ratio=(3 / 4, 4 / 3))
    assert boxes.tolist() == [[0, 0, 40, 40]] * 3  # the whole image


def test_crops_depend_only_on_the_generator_state():
    images = torch.randint(0, 256, (16, 3, 37, 37), dtype=torch.uint8)
    g = gen(7)
    state = g.get_state()
    first = random_resized_crop_batch(images, 32, g)
    second = random_resized_crop_batch(images, 32, g)
    g.set_state(state)
    assert torch.equal(random_resized_crop_batch(images, 32, g), first)
    assert not torch.equal(first, second)


def test_uint8_in_uint8_out_float_in_float_out():
    images = torch.randint(0, 256, (5, 3, 30, 40), dtype=torch.uint8)
    out = random_resized_crop_batch(images, 24, gen())
    assert out.dtype == torch.uint8 and out.shape == (5, 3, 24, 24)
    out = random_resized_crop_batch(images.float() / 255, 24, gen(), mode="bilinear")
    assert out.dtype == torch.float32 and out.shape == (5, 3, 24, 24)


@pytest.mark.parametrize("mode", ["bicubic", "bilinear"])
@pytest.mark.parametrize("size", [37, 32, 48])
def test_a_crop_of_the_whole_image_is_a_plain_resize(mode, size):
    images = torch.randint(0, 256, (4, 3, 37, 37), dtype=torch.uint8)
    out = random_resized_crop_batch(images, size, gen(), scale=(1, 1), ratio=(1, 1), mode=mode)
    plain = F.interpolate(images.float(), size=(size, size), mode=mode, align_corners=False)
    assert (out.float() - plain.round().clamp(0, 255)).abs().max() <= 1
    if size == 37:
        assert torch.equal(out, images)


def test_two_ranks_crop_as_one_process_with_the_global_batch_and_resume_replays():
    images = torch.randint(0, 256, (64, 3, 20, 20), dtype=torch.uint8)
    labels = torch.arange(64)

    def crops(batch, rank=0, ranks=1, first=0):
        loader = BatchLoader(images, labels, batch, seed=3, rank=rank, world_size=ranks)
        wrapped = RandomResizedCrops(loader, 16, seed=3)
        wrapped.set_epoch(1)
        return [x for x, _ in wrapped.iter_from(first)]

    one = crops(16)
    two = [crops(8, rank=r, ranks=2) for r in range(2)]
    for k, batch in enumerate(one):
        assert torch.equal(batch[0::2], two[0][k]) and torch.equal(batch[1::2], two[1][k])
    assert all(torch.equal(a, b) for a, b in zip(crops(16, first=2), one[2:], strict=True))


@pytest.fixture
def tiny_folder(tmp_path):
    """3 classes of 40×30 PNGs: 8 each in train/, 2 each in val/."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 8), ("val", 2)):
        for c, name in enumerate(("ant", "bee", "cat")):
            folder = tmp_path / "data" / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8) // 2 + 40 * c
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return tmp_path / "data"


def tiny_config(root, **changes):
    settings = {"dataset": "folder", "data_dir": str(root), "decode_once": True,
                "epochs": 1, "batch_size": 8, "threads": 1, "workers": 0,
                "train_size": 0}  # fmt: skip
    return from_preset("smoke", **{**settings, **changes})


def test_decode_once_is_for_folders_only():
    with pytest.raises(ConfigError, match="decode_once applies to dataset=folder"):
        from_preset("smoke", decode_once=True)
    with pytest.raises(ConfigError, match="decode_size must not be negative"):
        from_preset("smoke", dataset="folder", data_dir="x", decode_size=-1)


def test_a_folder_decoded_once_gives_batches_of_the_students_size(tiny_folder):
    inputs = load_inputs(tiny_config(tiny_folder), World())
    assert inputs.train._loader is None  # nothing decoded until the trainer asks
    assert len(inputs.train) == 3 and inputs.crop_padding == 0
    assert inputs.train.loader.loader.images.shape == (24, 3, 37, 37)  # round(32 / 0.875)
    batches = list(inputs.train)
    assert all(x.shape == (8, 3, 32, 32) and x.dtype == torch.uint8 for x, _ in batches)
    streamed = load_inputs(tiny_config(tiny_folder, decode_once=False), World())
    assert torch.equal(torch.cat([y for _, y in batches]),  # the streamed order exactly
                       torch.cat([y for _, y in streamed.train]))  # fmt: skip
    plain = tiny_config(tiny_folder, train_crop="none")  # decoded as streamed: the same batches
    decoded = load_inputs(plain, World())
    assert decoded.train.loader.images.shape == (24, 3, 32, 32)
    stream = load_inputs(tiny_config(tiny_folder, train_crop="none", decode_once=False), World())
    for (a, y), (b, z) in zip(decoded.train, stream.train, strict=True):
        assert torch.equal(a, b) and torch.equal(y, z)


def test_a_run_on_a_folder_decoded_once_finishes(tiny_folder, tmp_path):
    summary = deit.train(tiny_config(tiny_folder), tmp_path / "run")
    assert set(summary["test_top1"]) == {"cls", "dist", "avg"}


def test_a_run_stopped_mid_epoch_resumes_bit_identical(tiny_folder, tmp_path, monkeypatch):
    config = tiny_config(tiny_folder, epochs=2, checkpoint_every=2, mixup=0.8)
    deit.train(config, tmp_path / "whole")
    save = RunDir.save_checkpoint

    def save_then_signal(self, state):  # SIGTERM once the first epoch's checkpoint is written
        save(self, state)
        if state["step"] == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(RunDir, "save_checkpoint", save_then_signal)
    with pytest.raises(RunInterrupted):
        deit.train(config, tmp_path / "cut")
    monkeypatch.undo()
    cut = tmp_path / "cut" / "checkpoint.pt"
    assert torch.load(cut, weights_only=True)["step"] == 4  # stopped inside the second epoch
    deit.train(None, tmp_path / "cut", resume=True)
    whole = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)
    resumed = torch.load(cut, weights_only=True)
    assert whole["step"] == resumed["step"] == 6
    for key, value in whole["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
