"""Tests for the streaming image-folder loader: crops, order, workers, resume, bad files, draft."""

import math
import multiprocessing

import numpy as np
import pytest
import torch
from PIL import Image

from deit.data import decode, transforms
from deit.data.folder import open_rgb
from deit.data.layout import DataError
from deit.data.loader import BatchLoader, epoch_order
from deit.data.packing import pack_crops
from deit.data.resize import resize_uint8
from deit.data.stream import ImageStream, StreamLoader
from deit.data.transforms import (
    crop_params,
    decode_crop,
    eval_image,
    plain_image,
    plan_crop,
    random_resized_crop,
    to_tensor,
    train_image,
)

SIZE = 32


def write_image(path, width, height, seed, mode="RGB"):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    if mode == "L":
        image = image.convert("L")
    elif mode == "P":
        image = image.convert("P")
    image.save(path)
    return str(path)


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    """40 small images of varied sizes (40×30 to 90×60), JPEG and PNG, a few non-RGB modes."""
    root = tmp_path_factory.mktemp("folder")
    out = []
    for i in range(40):
        width, height = 40 + (i * 7) % 51, 30 + (i * 11) % 31
        ext = ".jpg" if i % 2 else ".png"
        mode = {5: "L", 8: "P"}.get(i, "RGB")
        out.append((write_image(root / f"img{i:02d}{ext}", width, height, i, mode), i % 4))
    return out


def gradient_jpeg(path, width=800, height=600):
    x = np.linspace(0, 255, width)[None, :, None]
    y = np.linspace(0, 255, height)[:, None, None]
    pixels = np.concatenate([x + 0 * y, y + 0 * x, (x + y) / 2], axis=2).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=95)
    return str(path)


def batches(loader, first=0):
    return list(loader.iter_from(first))


def same_batches(a, b):
    return len(a) == len(b) and all(
        torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b, strict=True)
    )


def test_crop_params_follow_scale_and_ratio_and_are_deterministic():
    scale, ratio = (0.08, 1.0), (3 / 4, 4 / 3)
    rng = np.random.default_rng(0)
    boxes = [crop_params(400, 300, rng, scale, ratio) for _ in range(2000)]
    for left, top, w, h in boxes:
        assert left >= 0 and left + w <= 400 and top >= 0 and top + h <= 300
        fallback = (w, h) == (400, 300)
        # Rounding w and h to pixels moves area and aspect by a little.
        assert fallback or scale[0] * 0.95 <= w * h / 120_000 <= scale[1]
        assert fallback or ratio[0] * 0.97 <= w / h <= ratio[1] * 1.03
    fractions = np.array([w * h / 120_000 for _, _, w, h in boxes])
    assert fractions.min() < 0.12 and fractions.max() > 0.9  # the whole range is drawn
    again = np.random.default_rng(0)
    assert boxes == [crop_params(400, 300, again, scale, ratio) for _ in range(2000)]


def test_crop_params_fall_back_to_the_central_crop_clipped_to_the_ratio():
    rng = np.random.default_rng(0)
    # No area fraction in (2, 3) fits, so every attempt fails.
    assert crop_params(400, 100, rng, (2.0, 3.0)) == ((400 - 133) // 2, 0, 133, 100)
    assert crop_params(100, 400, rng, (2.0, 3.0)) == (0, (400 - 133) // 2, 100, 133)
    assert crop_params(120, 100, rng, (2.0, 3.0)) == (0, 0, 120, 100)


def test_random_resized_crop_output_and_train_image_agree_without_draft(samples):
    path = samples[0][0]  # a PNG: no draft mode, so the same pixels
    image = open_rgb(path)
    crop = random_resized_crop(image, SIZE, np.random.default_rng(7))
    assert crop.size == (SIZE, SIZE) and crop.mode == "RGB"
    direct = train_image(path, SIZE, np.random.default_rng(7))
    assert direct.dtype == torch.uint8 and direct.shape == (3, SIZE, SIZE)
    assert torch.equal(direct, to_tensor(crop))


@pytest.mark.parametrize("turbo", [True, False], ids=["simplejpeg", "pillow"])
def test_large_jpeg_is_decoded_at_a_dct_reduction_that_keeps_the_crop(tmp_path, monkeypatch, turbo):
    path = gradient_jpeg(tmp_path / "big.jpg")
    if not turbo:
        monkeypatch.setattr(decode, "simplejpeg", None)
    calls = []

    def spy(data, name, reduction=1, **scratch):
        image = decode.decode_rgb(data, name, reduction, **scratch)
        calls.append((reduction, image.shape))
        return image

    monkeypatch.setattr(transforms, "decode_rgb", spy)
    scale = (0.5, 1.0)
    out = train_image(path, SIZE, np.random.default_rng(3), scale)
    [(reduction, shape)] = calls
    _, _, w, h = crop_params(800, 600, np.random.default_rng(3), scale)
    assert reduction == 8 and shape == (75, 100, 3)  # 600 / 8, 800 / 8
    assert min(w, h) / reduction >= SIZE  # the reduced crop still covers the output
    full = to_tensor(random_resized_crop(open_rgb(path), SIZE, np.random.default_rng(3), scale))
    assert (out.float() - full.float()).abs().mean() < 4  # same crop, reduced decode

    calls.clear()
    assert eval_image(path, SIZE).shape == (3, SIZE, SIZE)
    [(reduction, shape)] = calls
    assert reduction == 8 and min(shape[:2]) >= int(SIZE / 0.875)


def test_train_batches_do_not_depend_on_workers_or_repetition_and_differ_by_epoch(samples):
    kwargs = dict(size=SIZE, seed=5, repeats=3)
    a = StreamLoader(samples, 8, workers=0, **kwargs)
    b = StreamLoader(samples, 8, workers=2, prefetch=1, **kwargs)
    first = batches(a)
    assert len(first) == len(a) == 5
    x, y = first[0]
    assert x.dtype == torch.uint8 and x.shape == (8, 3, SIZE, SIZE) and y.dtype == torch.int64
    assert same_batches(first, batches(b))
    assert same_batches(first, batches(b))  # the persistent workers again
    # Repeated copies sit side by side with different crops.
    assert torch.equal(y[:3], y[:1].expand(3)) and not torch.equal(x[0], x[1])
    b.set_epoch(1)
    other = batches(b)
    assert not torch.equal(first[0][0], other[0][0])
    a.set_epoch(1)
    assert same_batches(other, batches(a))


@pytest.mark.parametrize("repeats", [1, 3])
def test_order_is_batchloaders_including_rank_shards(samples, repeats):
    n = len(samples)
    images, labels = torch.zeros(n, 1), torch.tensor([y for _, y in samples])
    for rank, world in [(0, 1), (0, 2), (1, 2)]:
        kw = dict(seed=2, repeats=repeats, rank=rank, world_size=world)
        stream = StreamLoader(samples, 4, size=SIZE, **kw)
        memory = BatchLoader(images, labels, 4, **kw)
        for epoch in (0, 3):
            stream.set_epoch(epoch)
            memory.set_epoch(epoch)
            assert torch.equal(stream.indices(), memory.indices())
            assert len(stream) == len(memory)
    shards = [StreamLoader(samples, 4, size=SIZE, seed=2, rank=r, world_size=2) for r in (0, 1)]
    whole = torch.stack([s.indices() for s in shards], dim=1).flatten()
    assert torch.equal(whole, epoch_order(n, seed=2, epoch=0, batch_size=8))
    got = torch.cat([torch.cat([y for _, y in s]) for s in shards]).sort().values
    assert torch.equal(got, labels[whole].sort().values)


@pytest.mark.parametrize("workers", [0, 2])
def test_iter_from_resumes_mid_epoch(samples, workers):
    loader = StreamLoader(samples, 8, size=SIZE, seed=1, workers=workers)
    loader.set_epoch(2)
    full = batches(loader)
    partial = loader.iter_from(0)
    next(partial)  # an abandoned iteration must not leak into the next one
    del partial
    assert same_batches(batches(loader, 3), full[3:])
    assert batches(loader, len(loader)) == []


def test_device_resize_is_exact_across_workers_and_resume_and_close_to_worker_resize(samples):
    """The GPU path, forced on the CPU: workers decode and crop, the loader resizes batches."""
    kwargs = dict(size=SIZE, seed=5, repeats=2, resize_on_device=True)
    a = StreamLoader(samples, 8, workers=0, **kwargs)
    b = StreamLoader(samples, 8, workers=2, prefetch=1, **kwargs)
    a.set_epoch(1)
    b.set_epoch(1)
    first = batches(a)
    x, y = first[0]
    assert x.dtype == torch.uint8 and x.shape == (8, 3, SIZE, SIZE) and y.dtype == torch.int64
    assert same_batches(first, batches(b))
    assert same_batches(batches(b, 2), first[2:])  # resumed mid-epoch
    in_workers = StreamLoader(samples, 8, size=SIZE, seed=5, repeats=2)
    in_workers.set_epoch(1)
    for (xa, ya), (xb, yb) in zip(first, batches(in_workers), strict=True):
        assert torch.equal(ya, yb)  # the same images and crops, resized in float or in uint8
        assert (xa.float() - xb.float()).abs().mean() < 0.5
    with pytest.raises(ValueError, match="train crops"):
        StreamLoader(samples, 8, size=SIZE, mode="eval", resize_on_device=True)


def test_eval_mode_sees_every_image_once_in_order_with_resize_and_centre_crop(samples):
    subset = samples[:39]
    shards = [StreamLoader(subset, 8, size=SIZE, mode="eval", rank=r, world_size=2) for r in (0, 1)]
    assert [len(s) for s in shards] == [3, 3]
    seen = [list(s) for s in shards]
    assert [len(y) for _, y in seen[0]] == [8, 8, 4] and [len(y) for _, y in seen[1]] == [8, 8, 3]
    order = torch.cat([s.indices() for s in shards]).sort().values
    assert torch.equal(order, torch.arange(39))
    assert same_batches(seen[0], list(shards[0]))  # deterministic
    # Sample 0 is a 40×30 PNG: short side to int(32 / 0.875) = 36, then the central 32×32.
    image = np.array(Image.open(subset[0][0]).convert("RGB"))
    assert image.shape == (30, 40, 3)
    resized = resize_uint8(image, int(36 * 40 / 30), 36)
    left, top = round((resized.shape[2] - SIZE) / 2), round((resized.shape[1] - SIZE) / 2)
    expected = resized[:, top : top + SIZE, left : left + SIZE]
    assert torch.equal(seen[0][0][0][0], expected)
    assert torch.equal(eval_image(subset[0][0], SIZE), expected)


def test_plain_mode_resizes_only_images_of_another_size(tmp_path):
    exact = write_image(tmp_path / "a.png", SIZE, SIZE, 0)
    other = write_image(tmp_path / "b.png", 40, 30, 1)
    assert torch.equal(plain_image(exact, SIZE), to_tensor(Image.open(exact)))
    resized = resize_uint8(np.array(Image.open(other)), SIZE, SIZE)
    assert torch.equal(plain_image(other, SIZE), resized)
    loader = StreamLoader([(exact, 0), (other, 1)], 2, size=SIZE, mode="plain")
    assert next(iter(loader))[0].shape == (2, 3, SIZE, SIZE)


@pytest.fixture(scope="module")
def with_bad_files(samples, tmp_path_factory):
    """38 good images and two bad ones: a truncated JPEG and a text file named .jpg."""
    root = tmp_path_factory.mktemp("bad")
    truncated = root / "truncated.jpg"
    Image.fromarray(np.full((60, 80, 3), 90, np.uint8)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:300])
    text = root / "notes.jpg"
    text.write_text("not an image\n")
    good = samples[:38]
    return good[:10] + [(str(truncated), 1)] + good[10:30] + [(str(text), 2)] + good[30:]


@pytest.mark.parametrize("workers", [0, 2])
def test_a_bad_file_raises_one_line_naming_it(with_bad_files, workers):
    loader = StreamLoader(with_bad_files, 8, size=SIZE, mode="eval", workers=workers)
    with pytest.raises(DataError) as caught:
        list(loader)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("cannot decode ")
    assert "truncated.jpg" in message or "notes.jpg" in message


@pytest.mark.parametrize("workers, on_device", [(0, False), (2, False), (2, True)])
def test_skip_bad_drops_the_file_from_its_batch_and_lists_it(with_bad_files, workers, on_device):
    loader = StreamLoader(with_bad_files, 8, size=SIZE, seed=4, workers=workers, skip_bad=True,
                          resize_on_device=on_device)  # fmt: skip
    got = list(loader)
    assert sum(len(y) for _, y in got) == 38 and all(x.shape[0] == len(y) for x, y in got)
    bad = {with_bad_files[10][0], with_bad_files[31][0]}
    assert set(loader.skipped) == bad and len(loader.skipped) == 2
    list(loader)  # a second epoch lists them once
    assert len(loader.skipped) == 2


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_batches_kept_by_the_caller_survive_the_workers_reusing_their_buffers(samples, mode):
    """Workers pack batches into a ring of prefetch + 2 reused buffers; what is yielded is not."""
    one = StreamLoader(samples, 2, size=SIZE, mode=mode, seed=1)
    two = StreamLoader(samples, 2, size=SIZE, mode=mode, seed=1, workers=2, prefetch=1)
    kept = batches(two)  # 20 batches, 10 a worker: each worker's 3 buffers reused 3 times over
    assert len(kept) == 20 and same_batches(kept, batches(one))


def test_a_packed_batch_holds_each_crop_as_train_crop_cuts_it_and_failures_in_order(
    samples, with_bad_files, tmp_path
):
    """Crops planned first and decoded straight into one buffer: the per-image crops exactly."""
    big = gradient_jpeg(tmp_path / "big.jpg")  # 800×600: decoded at 1/2 to 1/8 where it can
    truncated, text = with_bad_files[10], with_bad_files[31]  # fail decoding, fail planning
    chosen = [truncated, samples[0], samples[1], (big, 3), text, samples[2], (big, 3)]
    stream = ImageStream(chosen, mode="train", size=SIZE, seed=3, crop_only=True)
    keys = [(i, 2, 100 + i) for i in range(len(chosen))]
    (flat, shapes), labels, failures = stream.__getitems__(keys)
    one_by_one = [stream[key] for key in keys]  # train_crop, image by image
    good = [(image, label) for image, label, failure in one_by_one if failure is None]
    expected_flat, expected_shapes = pack_crops([image for image, _ in good])
    assert torch.equal(flat, expected_flat) and torch.equal(shapes, expected_shapes)
    assert labels.tolist() == [label for _, label in good] == [0, 1, 3, 2, 3]
    assert [path for path, _ in failures] == [truncated[0], text[0]]  # the batch's order
    assert shapes[2].tolist() != shapes[4].tolist()  # the two crops of the big image differ


def test_an_image_that_decodes_to_another_size_than_its_header_is_a_bad_file(samples):
    path = samples[0][0]  # a 40×30 PNG
    plan = plan_crop(path, SIZE, np.random.default_rng(0))
    assert decode_crop(plan).shape == plan.shape
    lying = plan._replace(original=(80, 30))
    with pytest.raises(DataError) as caught:
        decode_crop(lying)
    assert str(caught.value) == f"cannot decode {path}: its header says 80×30, it decodes to 40×30"


def test_iterating_leaves_the_global_torch_rng_alone(samples):
    loader = StreamLoader(samples, 8, size=SIZE, workers=2)
    state = torch.get_rng_state()
    list(loader)
    assert torch.equal(state, torch.get_rng_state())


def test_close_stops_the_workers_while_an_iteration_is_held(samples):
    """close() stops them now, not when the last iteration is garbage collected."""
    before = set(multiprocessing.active_children())
    loader = StreamLoader(samples, 8, size=SIZE, workers=2)
    held = iter(loader)
    next(held)
    assert len(set(multiprocessing.active_children()) - before) == 2
    loader.close()
    assert set(multiprocessing.active_children()) - before == set()
    held.close()


def test_bad_arguments_raise(samples):
    with pytest.raises(ValueError, match="no batch"):
        StreamLoader(samples, 64, size=SIZE)
    with pytest.raises(ValueError, match="mode"):
        StreamLoader(samples, 8, size=SIZE, mode="crop")
    with pytest.raises(ValueError, match="rank"):
        StreamLoader(samples, 8, size=SIZE, rank=2, world_size=2)
    assert math.isclose(len(StreamLoader(samples, 64, size=SIZE, mode="eval")), 1)
