"""deit.data.export: image folders written from the real CIFAR-10 (PNG export, ImageNet-like)."""

import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, UnidentifiedImageError

from deit.data.export import SPECIALS, ExportError, export_cifar, main, make_imagenet_like

IMAGE_ENDINGS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
SMALL = {"classes": 3, "train_per_class": 8, "val_per_class": 2, "seed": 0}


def images_in(folder: Path) -> list[Path]:
    """What a reader takes: files with an image ending (any case), hidden ones skipped."""
    return sorted(
        path
        for path in folder.iterdir()
        if path.suffix.lower() in IMAGE_ENDINGS and not path.name.startswith(".")
    )


def all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def like(cifar10, tmp_path_factory) -> Path:
    """A small ImageNet-like folder: 3 classes × (8 train + 2 val), no broken files."""
    return make_imagenet_like(cifar10, tmp_path_factory.mktemp("like") / "out", **SMALL)


def test_export_cifar_reads_back_pixel_identical(cifar10, tmp_path):
    root = export_cifar(cifar10, tmp_path / "out", train_size=20, val_size=12)
    splits = {
        "train": (cifar10.train_images, cifar10.train_labels, 20),
        "val": (cifar10.test_images, cifar10.test_labels, 12),
    }
    assert sorted(p.name for p in root.iterdir()) == ["train", "val"]
    assert len(list((root / "train").iterdir())) == 9  # the first 20 hold no dog
    for split, (images, labels, count) in splits.items():
        names = [cifar10.classes[label] for label in labels[:count].tolist()]
        folders = {p.name: images_in(p) for p in (root / split).iterdir()}
        assert {name: len(files) for name, files in folders.items()} == Counter(names)
        assert set(folders) == set(names)  # only classes that have images get a folder
        for i, name in enumerate(names):
            with Image.open(root / split / name / f"{i:05d}.png") as image:
                assert (image.format, image.mode) == ("PNG", "RGB")
                pixels = np.asarray(image)
            assert np.array_equal(pixels, images[i].permute(1, 2, 0).numpy()), (split, i)


def test_export_cifar_refuses_bad_sizes_and_nonempty_folders(cifar10, tmp_path):
    with pytest.raises(ExportError, match="train size 50001 is not in 0..50000"):
        export_cifar(cifar10, tmp_path / "a", train_size=50001)
    assert not (tmp_path / "a").exists()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "mine.txt").write_text("keep")
    with pytest.raises(ExportError, match="not empty; pass --overwrite"):
        export_cifar(cifar10, tmp_path / "b", train_size=2, val_size=1)
    export_cifar(cifar10, tmp_path / "b", train_size=2, val_size=1, overwrite=True)
    assert (tmp_path / "b" / "mine.txt").read_text() == "keep"  # only its own files replaced


def test_imagenet_like_counts_classes_and_extensions(like):
    ids = ["n01440764", "n01540767", "n01640770"]
    assert (like / "classes.txt").read_text().split() == [
        *(ids[0], "airplane"),
        *(ids[1], "automobile"),
        *(ids[2], "bird"),
    ]
    for split, count in (("train", 8), ("val", 2)):
        assert sorted(p.name for p in (like / split).iterdir() if p.is_dir()) == ids
        for synset in ids:
            assert len(images_in(like / split / synset)) == count, (split, synset)
    assert (like / "train" / "README.txt").is_file()
    assert [p.name for p in (like / "train" / ids[0]).glob(".*")] == [f"._{ids[0]}_0.JPEG"]
    endings = Counter(p.suffix for p in like.rglob("*") if p.is_file())
    assert {".JPEG", ".jpg", ".JPG", ".jpeg"} <= set(endings)
    assert endings[".JPEG"] > endings[".jpg"]


def test_imagenet_like_sizes_modes_and_special_files(like):
    seen, sizes = Counter(), []
    for path in like.rglob("*"):
        if path.is_file() and path.suffix.lower() in IMAGE_ENDINGS and path.name[0] != ".":
            with Image.open(path) as image:
                image.load()  # decodes completely
                seen[image.format, image.mode] += 1
                sizes.append(image.size)
                if image.mode == "RGBA":
                    assert image.getchannel("A").getextrema() == (0, 255)  # transparency
    assert len(sizes) == 3 * (8 + 2)
    specials = {("JPEG", "L"), ("JPEG", "CMYK"), ("PNG", "RGBA"), ("PNG", "P"), ("BMP", "RGB")}
    assert specials <= set(seen) and any(fmt == "WEBP" for fmt, _ in seen)
    assert sum(seen.values()) - seen["JPEG", "RGB"] == len(SPECIALS)
    widths, heights = zip(*sizes, strict=True)
    assert min(widths) >= 200 and min(heights) >= 200 and max(widths + heights) <= 640
    assert len(set(sizes)) > 10
    assert (500, 375) in sizes and any(w < h for w, h in sizes)  # the usual size; portraits


def test_imagenet_like_is_deterministic_and_bad_only_adds(cifar10, like, tmp_path):
    again = make_imagenet_like(cifar10, tmp_path / "again", **SMALL)
    assert all_files(again) == all_files(like)
    other = make_imagenet_like(cifar10, tmp_path / "seed1", **{**SMALL, "seed": 1})
    assert all_files(other).keys() == all_files(like).keys() != all_files(other)
    bad = all_files(make_imagenet_like(cifar10, tmp_path / "bad", **SMALL, bad=True))
    extra = {name: data for name, data in bad.items() if name not in all_files(like)}
    assert {name: bad[name] for name in all_files(like)} == all_files(like)
    assert sorted(extra) == [
        "train/n01440764/n01440764_truncated.JPEG",
        "train/n01540767/n01540767_not_an_image.jpg",
    ]
    with pytest.raises(OSError, match="truncated"), Image.open(tmp_path / "bad" / min(extra)) as im:
        im.load()
    with pytest.raises(UnidentifiedImageError):
        Image.open(tmp_path / "bad" / max(extra))


def test_grain_keeps_every_image_and_makes_its_jpeg_larger(cifar10, like, tmp_path):
    """Grain changes only the detail: the same files, the same sizes, far larger JPEGs."""
    grainy = make_imagenet_like(cifar10, tmp_path / "grain", **SMALL, grain=12)
    plain, rough = all_files(like), all_files(grainy)
    assert plain.keys() == rough.keys()
    jpegs = [name for name in plain if name.endswith(".JPEG") and "/." not in name]
    for name in jpegs[:6]:
        with Image.open(like / name) as a, Image.open(grainy / name) as b:
            assert a.size == b.size and a.mode == b.mode
    assert sum(len(rough[n]) for n in jpegs) > 2 * sum(len(plain[n]) for n in jpegs)


def test_cli_refuses_a_nonempty_out_in_one_line(cifar_dir, tmp_path):
    (tmp_path / "old.txt").write_text("x")
    command = [sys.executable, "-m", "deit.data.export", "cifar", "--data-dir", str(cifar_dir)]
    result = subprocess.run([*command, "--out", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "not empty; pass --overwrite" in result.stderr


def test_cli_writes_and_reports_usage_errors_in_one_line(cifar_dir, tmp_path, capsys):
    argv = ["imagenet-like", "--data-dir", str(cifar_dir), "--out", str(tmp_path / "x")]
    assert main([*argv, "--classes", "1", "--train-per-class", "1", "--val-per-class", "1"]) == 0
    assert len(images_in(tmp_path / "x" / "train" / "n01440764")) == 1
    assert "x: 5 files" in capsys.readouterr().out  # 2 images, classes, README, hidden
    assert main([*argv, "--classes", "11", "--overwrite"]) == 2
    assert capsys.readouterr().err == "error: classes 11 is not in 1..10 (cifar10)\n"
    with pytest.raises(SystemExit) as exit_:
        main(["cifar", "--data-dir", str(cifar_dir), "--out", "y", "--train-size", "-1"])
    assert exit_.value.code == 2 and capsys.readouterr().err.count("\n") == 1


@pytest.mark.slow
def test_workers_write_the_same_files(cifar10, like, tmp_path):
    """Spawned processes (each imports torch: seconds) give the same bytes as one process.

    The ImageNet-like export, whose images are drawn from seeds: the CIFAR export's PNGs are
    the pixels as they are, written by the same pool (``_run``).
    """
    root = make_imagenet_like(cifar10, tmp_path / "like", **SMALL, workers=2)
    assert all_files(root) == all_files(like)
