"""Tests for the decoders (simplejpeg, and Pillow for the rest) and the uint8 resizes."""

import threading

import numpy as np
import pytest
import torch
from PIL import Image

from deit.data import decode, packing
from deit.data.decode import decode_rgb, image_size, jpeg_reduction, read_file
from deit.data.folder import open_rgb
from deit.data.layout import DataError
from deit.data.packing import SharedRing, SlotPool, pack_crops
from deit.data.resize import resize_crops, resize_uint8
from deit.data.transforms import cut, eval_image, train_crop, train_image

WIDTH, HEIGHT = 203, 117  # odd sizes: a reduced decode rounds up


def photo(width=WIDTH, height=HEIGHT, seed=0):
    """A smooth image with some texture, as photos are (uint8 H×W×3)."""
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, 128 + 60 * np.sin(x / 9 + y / 13)], -1)
    noise = np.random.default_rng(seed).normal(0, 12, base.shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


JPEGS = {
    "rgb420": dict(quality=90),
    "rgb444": dict(quality=90, subsampling=0),
    "progressive": dict(quality=85, progressive=True),
    "gray": dict(quality=90),
}


def write_jpeg(path, kind):
    image = Image.fromarray(photo())
    if kind == "gray":
        image = image.convert("L")
    elif kind == "cmyk":
        image = image.convert("CMYK")
    image.save(path, "JPEG", **JPEGS.get(kind, {}))
    return str(path)


@pytest.fixture
def pillow_only(monkeypatch):
    monkeypatch.setattr(decode, "simplejpeg", None)


@pytest.mark.parametrize("kind", JPEGS)
def test_simplejpeg_decodes_pillows_pixels_at_every_reduction(tmp_path, monkeypatch, kind):
    path = write_jpeg(tmp_path / f"{kind}.jpg", kind)
    data = read_file(path)
    turbo = {}
    with monkeypatch.context() as patch:  # prove Pillow is not used

        def no_pillow(*args, **kwargs):
            raise AssertionError("Pillow used")

        patch.setattr(decode, "open_rgb", no_pillow)
        for s in (1, 2, 4, 8):
            turbo[s] = decode_rgb(data, path, s)
    monkeypatch.setattr(decode, "simplejpeg", None)
    for s, array in turbo.items():
        assert array.dtype == np.uint8 and array.shape == (-(-HEIGHT // s), -(-WIDTH // s), 3)
        assert np.array_equal(array, decode_rgb(data, path, s)), s  # Pillow's draft, same bits
    assert np.array_equal(turbo[1], np.array(open_rgb(path)))


def test_a_scratch_decode_gives_the_same_pixels_and_train_crops_own_theirs(tmp_path, monkeypatch):
    monkeypatch.setattr(decode, "_scratch", threading.local())  # fresh, whatever ran before
    small, large = write_jpeg(tmp_path / "a.jpg", "rgb420"), str(tmp_path / "b.jpg")
    Image.fromarray(photo(WIDTH * 2, HEIGHT * 2, seed=1)).save(large, "JPEG", quality=90)
    data = read_file(small)
    for s in (1, 2, 4, 8):
        view = decode_rgb(data, small, s, scratch=True)
        assert np.array_equal(view, decode_rgb(data, small, s))
    first = decode_rgb(data, small, scratch=True)
    second = decode_rgb(read_file(large), large, scratch=True)  # grows the buffer
    assert second.shape == (HEIGHT * 2, WIDTH * 2, 3) and not np.shares_memory(first, second)
    again = decode_rgb(data, small, scratch=True)
    assert np.shares_memory(again, decode_rgb(data, small, 2, scratch=True))  # reused
    crop = train_crop(small, 32, np.random.default_rng(0))
    kept = crop.copy()
    decode_rgb(read_file(large), large, scratch=True)  # overwrites the scratch buffer
    assert np.array_equal(crop, kept) and crop.flags.owndata
    image = train_image(small, 32, np.random.default_rng(0))
    decode_rgb(read_file(large), large, scratch=True)
    assert torch.equal(image, train_image(small, 32, np.random.default_rng(0)))


@pytest.mark.parametrize("name, mode", [
    ("cmyk.jpg", "CMYK"), ("rgba.png", "RGBA"), ("palette.png", "P"), ("gray.png", "L"),
    ("image.webp", "RGB"), ("image.bmp", "RGB"), ("png-named.JPEG", "RGB"),
])  # fmt: skip
def test_other_formats_and_modes_are_decoded_by_pillow_as_before(tmp_path, name, mode):
    path = tmp_path / name
    image = Image.fromarray(photo()).convert(mode)
    image.save(path, "PNG" if name == "png-named.JPEG" else None)
    data = read_file(str(path))
    array = decode_rgb(data, str(path))
    assert array.shape == (HEIGHT, WIDTH, 3) and np.array_equal(array, np.array(open_rgb(path)))
    assert image_size(data, str(path)) == (WIDTH, HEIGHT)
    if mode == "CMYK":  # reduced through Pillow's draft, to the same size as simplejpeg's
        half = decode_rgb(data, str(path), 2)
        assert half.shape == (59, 102, 3)
        assert np.array_equal(half, np.array(open_rgb(path, (WIDTH // 2, HEIGHT // 2))))


def test_a_jpeg_that_simplejpeg_refuses_is_decoded_by_pillow(tmp_path):
    """libjpeg warns of extraneous bytes before a marker: simplejpeg stops, Pillow reads on."""
    good = read_file(write_jpeg(tmp_path / "good.jpg", "rgb420"))
    after_app0 = 4 + int.from_bytes(good[4:6], "big")
    odd = good[:after_app0] + b"\x00\x00\x00" + good[after_app0:]
    with pytest.raises(ValueError, match="extraneous bytes"):
        decode.simplejpeg.decode_jpeg(odd)
    assert np.array_equal(decode_rgb(odd, "odd.jpg"), decode_rgb(good, "good.jpg"))
    assert image_size(odd, "odd.jpg") == (WIDTH, HEIGHT)


def _truncated(tmp_path):
    data = read_file(write_jpeg(tmp_path / "whole.jpg", "rgb420"))
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "header-only.jpg").write_bytes(data[:300])
    (tmp_path / "text.jpg").write_text("not an image\n")
    (tmp_path / "empty.png").write_bytes(b"")


@pytest.mark.parametrize("turbo", [True, False], ids=["simplejpeg", "pillow"])
@pytest.mark.parametrize("name, reason", [
    ("truncated.jpg", "truncated file"), ("header-only.jpg", ""),
    ("text.jpg", "not an image Pillow can read"), ("empty.png", "not an image Pillow can read"),
    ("missing.jpg", "no such file"),
])  # fmt: skip
def test_bad_files_raise_one_line_naming_them(tmp_path, monkeypatch, turbo, name, reason):
    if not turbo:
        monkeypatch.setattr(decode, "simplejpeg", None)
    _truncated(tmp_path)
    path = str(tmp_path / name)
    for view in (
        lambda: train_image(path, 32, np.random.default_rng(0)),
        lambda: eval_image(path, 32),
    ):
        with pytest.raises(DataError) as caught:
            view()
        message = str(caught.value)
        assert "\n" not in message and message.startswith(f"cannot decode {path}: {reason}")


def test_jpeg_reduction_keeps_at_least_what_is_needed():
    jpeg, png = b"\xff\xd8\xff\xe0", b"\x89PNG"
    assert [jpeg_reduction(jpeg, r) for r in (0.5, 1, 1.99, 2, 3.9, 4, 7.9, 8, 100)] == [
        1, 1, 1, 2, 2, 4, 4, 8, 8,
    ]  # fmt: skip
    assert jpeg_reduction(png, 100) == 1
    with pytest.raises(ValueError, match="reduction"):
        decode_rgb(jpeg, "x.jpg", 3)


@pytest.mark.parametrize("kind", ["rgb420", "gray"])
def test_train_and_eval_views_are_the_same_bits_with_or_without_simplejpeg(
    tmp_path, monkeypatch, kind
):
    path = write_jpeg(tmp_path / "a.jpg", kind)
    # Scales up to 1 at 24 px: reductions 1, 2 and 4 all occur.
    views = [train_image(path, 24, np.random.default_rng(k), (0.3, 1.0)) for k in range(12)]
    evals = [eval_image(path, size) for size in (12, 24, 96)]
    monkeypatch.setattr(decode, "simplejpeg", None)
    assert all(
        torch.equal(v, train_image(path, 24, np.random.default_rng(k), (0.3, 1.0)))
        for k, v in enumerate(views)
    )
    assert all(
        torch.equal(v, eval_image(path, s)) for v, s in zip(evals, (12, 24, 96), strict=True)
    )


def test_uint8_resize_is_pillows_bicubic_up_to_rounding():
    image = photo(WIDTH, HEIGHT)
    for width, height in [(64, 48), (150, 90), (224, 224), (WIDTH, HEIGHT)]:
        ours = resize_uint8(image, width, height)
        assert ours.shape == (3, height, width) and ours.is_contiguous()
        pillow = np.array(Image.fromarray(image).resize((width, height), Image.Resampling.BICUBIC))
        diff = np.abs(ours.permute(1, 2, 0).numpy().astype(int) - pillow)
        assert diff.mean() < 0.1 and diff.max() <= 3, (width, height)


def test_crops_packed_and_resized_as_a_batch_match_one_by_one():
    rng = np.random.default_rng(0)
    image = photo(WIDTH, HEIGHT)
    boxes = [(0, 0, 32, 32), (5, 7, 100, 60), (50, 20, 40, 90), (0, 0, WIDTH, HEIGHT)]
    crops = [image[t : t + h, x : x + w] for x, t, w, h in boxes] + [
        rng.integers(0, 256, (9, 13, 3), np.uint8)
    ]
    flat, shapes = pack_crops(crops)
    assert flat.dtype == torch.uint8 and flat.numel() == sum(c.size for c in crops)
    assert shapes.tolist() == [list(c.shape[:2]) for c in crops]
    batch = resize_crops(flat, shapes, 32)
    assert batch.dtype == torch.uint8 and batch.shape == (5, 3, 32, 32)
    assert torch.equal(batch[0], resize_uint8(crops[0], 32, 32))  # 32×32 crop: unchanged
    for got, crop in zip(batch, crops, strict=True):
        one = resize_uint8(crop, 32, 32)
        assert (got.float() - one.float()).abs().mean() < 0.5


def test_a_shared_ring_reuses_its_slots_in_turn_in_a_worker_and_grows_a_slot_when_needed(
    monkeypatch,
):
    ring = SharedRing(3)
    outside = ring(100), ring(100)  # not in a worker: private, fresh buffers, none kept
    assert outside[0].data_ptr() != outside[1].data_ptr() and not outside[0].is_shared()
    monkeypatch.setattr(packing, "get_worker_info", lambda: object())  # as in a DataLoader worker
    first = [ring(100) for _ in range(3)]
    assert all(b.is_shared() and b.numel() == 100 for b in first)
    assert len({b.data_ptr() for b in first}) == 3
    again = ring(90)  # slot 0 again: the same memory, a shorter view
    assert again.data_ptr() == first[0].data_ptr() and again.numel() == 90
    assert ring(112).data_ptr() == first[1].data_ptr()  # within the eighth to spare
    grown = ring(1000)  # slot 2 too small: a new buffer, kept for next time
    assert grown.numel() == 1000 and grown.data_ptr() != first[2].data_ptr()
    ring(1), ring(1)
    assert ring(1000).data_ptr() == grown.data_ptr()
    crops = [np.full((4, 5, 3), 7, np.uint8), np.full((2, 3, 3), 9, np.uint8)]
    flat, shapes = pack_crops(crops, alloc=ring)
    assert flat.is_shared() and flat.numel() == 78
    assert flat[:60].eq(7).all() and flat[60:].eq(9).all()
    assert shapes.tolist() == [[4, 5], [2, 3]]
    with pytest.raises(ValueError, match="2 slots"):
        SharedRing(1)


def test_a_slot_pool_reuses_a_slot_only_once_released_and_else_gives_a_fresh_buffer():
    pool = SlotPool(workers=2, slots=2)
    a, slot_a = pool.take(1, 100)
    b, slot_b = pool.take(1, 100)
    assert (slot_a, slot_b) == (0, 1) and pool.busy.tolist() == [[0, 0], [1, 1]]
    c, slot_c = pool.take(1, 100)  # both busy: a fresh buffer, not a slot in use
    assert slot_c == -1 and c.data_ptr() not in (a.data_ptr(), b.data_ptr())
    pool.release(1, slot_b)
    again, slot = pool.take(1, 90)  # slot 1's memory again, a shorter view
    assert slot == 1 and again.data_ptr() == b.data_ptr() and again.numel() == 90
    pool.release(1, -1)  # a fresh buffer's: nothing to free
    assert pool.busy.tolist() == [[0, 0], [1, 1]]
    _, slot = pool.take(0, 10)  # another worker's slots are its own
    assert slot == 0 and pool.taken.tolist() == [[1, 0], [3, 1]]
    pool.reset()
    assert not pool.busy.any()


def test_a_box_is_cut_at_the_decoded_scale_in_whole_pixels():
    image = np.zeros((-(-HEIGHT // 8), -(-WIDTH // 8), 3), np.uint8)  # 15×26 at 1/8
    assert cut(image, (0, 0, WIDTH, HEIGHT), 8, (WIDTH, HEIGHT)).shape == (15, 25, 3)
    assert cut(image, (196, 110, 7, 7), 8, (WIDTH, HEIGHT)).shape == (1, 1, 3)  # >= 1 pixel
    full = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    assert cut(full, (3, 4, 50, 60), 1, (WIDTH, HEIGHT)).shape == (60, 50, 3)
