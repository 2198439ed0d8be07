"""Image folders (ImageNet layout): scanning, decoding to RGB, checking, and ``deit data``."""

import json
import os

import pytest
from PIL import Image

from deit.cli import main
from deit.data import DataError, ImageFolder, check_folder, describe, open_rgb, scan_folder

SIZE = (20, 15)


def _image(path, mode="RGB", color=(200, 30, 60), size=SIZE, fmt=None):
    """Write one small image at ``path`` (folders created), format from the ending."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path, format=fmt)
    return path


def _folder(root):
    """A tiny valid folder: 3 train classes (unsorted on disk), val lacks 'bird'; extra junk."""
    train, val = root / "train", root / "val"
    _image(train / "dog" / "b.JPG")
    _image(train / "dog" / "a.Png", fmt="PNG")
    _image(train / "dog" / "nested" / "deeper" / "c.webp", fmt="WEBP")
    _image(train / "cat" / "x.bmp")
    _image(train / "cat" / "y.jpeg")
    _image(train / "bird" / "z.jpg")
    _image(val / "dog" / "v1.jpg")
    _image(val / "cat" / "v2.PNG", fmt="PNG")
    # ignored: hidden files and folders, non-images
    (train / "dog" / "README.txt").write_text("not an image")
    (train / "dog" / ".DS_Store").write_bytes(b"\0\1")
    _image(train / "dog" / ".cache" / "hidden.jpg")
    _image(train / "cat" / ".hidden.jpg")
    _image(train / ".git" / "h.jpg")
    (train / "notes.txt").write_text("a file beside the class folders")
    return root


@pytest.fixture
def root(tmp_path):
    return _folder(tmp_path / "data")


def test_scan_lists_sorted_classes_and_images_with_labels(root):
    folder = scan_folder(root)
    assert isinstance(folder, ImageFolder)
    assert folder.classes == ("bird", "cat", "dog") and folder.num_classes == 3
    rel = [(os.path.relpath(path, root), label) for path, label in folder.train]
    assert rel == [
        ("train/bird/z.jpg", 0),
        ("train/cat/x.bmp", 1),
        ("train/cat/y.jpeg", 1),
        ("train/dog/a.Png", 2),
        ("train/dog/b.JPG", 2),
        ("train/dog/nested/deeper/c.webp", 2),
    ]
    # val lacks 'bird' (allowed); its labels are train's indices
    assert [(os.path.relpath(p, root), label) for p, label in folder.val] == [
        ("val/cat/v2.PNG", 1),
        ("val/dog/v1.jpg", 2),
    ]
    assert folder.per_class("train") == [1, 2, 3] and folder.per_class("val") == [0, 1, 1]
    assert all(os.path.isabs(path) for path, _ in folder.train + folder.val)
    assert repr(folder) == f"ImageFolder(root='{root}', classes=3, train=6, val=2)"
    assert scan_folder(root) == folder  # deterministic


def test_scan_survives_a_symlink_loop(root):
    os.symlink(root / "train" / "dog", root / "train" / "dog" / "loop")
    assert len(scan_folder(root).train) == 6


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing", "{root} does not exist (expected ROOT/train/<class>/..."),
        ("file", "{root} is not a directory"),
        ("empty", "{root} is empty (expected ROOT/train/<class>/..."),
        ("no_val", "{root} has no val/ split (expected ROOT/train/<class>/... and ROOT/val/"),
        ("no_train", "{root} has no train/ split"),
        ("no_classes", "{root}/val has no class folders (expected {root}/val/<class>/<image>)"),
        ("no_images", "class folder {root}/train/cat has no images (.jpg, .jpeg"),
        ("val_extra", "{root}/val has 2 class(es) missing from {root}/train: cow, emu"),
    ],
)
def test_bad_layouts_are_one_line_errors_naming_the_path(tmp_path, case, expected):
    root = tmp_path / "data"
    if case == "file":
        root.write_text("x")
    elif case == "empty":
        root.mkdir()
        (root / ".hidden").write_text("hidden entries do not count")
    elif case != "missing":
        _image(root / "train" / "cat" / "a.jpg")
        _image(root / "val" / "cat" / "b.jpg")
        if case == "no_val":
            (root / "val" / "cat" / "b.jpg").unlink()
            (root / "val" / "cat").rmdir()
            (root / "val").rmdir()
        elif case == "no_train":
            (root / "train" / "cat" / "a.jpg").rename(root / "a.jpg")
            (root / "train" / "cat").rmdir()
            (root / "train").rmdir()
        elif case == "no_classes":
            (root / "val" / "cat" / "b.jpg").rename(root / "val" / "b.jpg")
            (root / "val" / "cat").rmdir()
        elif case == "no_images":
            (root / "train" / "cat" / "a.jpg").rename(root / "train" / "cat" / "a.txt")
        elif case == "val_extra":
            _image(root / "val" / "emu" / "c.jpg")
            _image(root / "val" / "cow" / "d.jpg")
    with pytest.raises(DataError) as info:
        scan_folder(root)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(expected.format(root=root)), message


def test_open_rgb_converts_every_mode_to_rgb(tmp_path):
    cases = {
        "gray.png": ("L", 90, None),
        "palette.png": ("P", 3, None),
        "cmyk.jpg": ("CMYK", (0, 0, 0, 0), None),
        "rgba.png": ("RGBA", (10, 20, 30, 0), None),
    }
    for name, (mode, color, fmt) in cases.items():
        image = open_rgb(_image(tmp_path / name, mode, color, fmt=fmt))
        assert image.mode == "RGB" and image.size == SIZE, name
    assert open_rgb(tmp_path / "rgba.png").getpixel((0, 0)) == (255, 255, 255)  # transparent
    assert open_rgb(tmp_path / "cmyk.jpg").getpixel((0, 0))[0] > 240  # no ink: white


def test_open_rgb_draft_mode_shrinks_a_jpeg_but_not_below_min_size(tmp_path):
    path = _image(tmp_path / "big.jpg", size=(160, 120))
    assert open_rgb(path).size == (160, 120)
    small = open_rgb(path, min_size=(50, 30))
    assert small.mode == "RGB" and small.size == (80, 60)  # scale 1/2: 1/4 would be 40 < 50
    assert open_rgb(path, min_size=(40, 30)).size == (40, 30)


def test_open_rgb_failure_names_the_file(tmp_path):
    with pytest.raises(DataError, match=f"cannot decode {tmp_path / 'nope.jpg'}: no such file"):
        open_rgb(tmp_path / "nope.jpg")


def _break(root):
    """Add a truncated JPEG and a text file named .jpg to the folder; return their paths."""
    noise = Image.effect_noise((64, 64), 80).convert("RGB")
    truncated = root / "train" / "cat" / "truncated.jpg"
    noise.save(truncated, quality=95)
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    text = root / "val" / "dog" / "text.jpg"
    text.write_text("this is not a JPEG")
    return str(truncated), str(text)


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_check_folder_reports_broken_files_with_reasons(root, workers):
    assert check_folder(scan_folder(root), workers=workers, progress=False) == []
    truncated, text = _break(root)
    bad = check_folder(scan_folder(root), workers=workers, progress=False)
    assert [path for path, _ in bad] == [truncated, text]  # scan order: train, then val
    reasons = dict(bad)
    assert "truncated" in reasons[truncated]
    assert reasons[text] == "not an image Pillow can read"


def test_describe_folder_needs_a_root():
    with pytest.raises(DataError, match="--data-dir ROOT"):
        describe("folder", None)


def test_cli_data_folder_json(root, capsys):
    assert main(["data", "--dataset", "folder", "--data-dir", str(root), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dataset"] == "folder" and report["root"] == str(root)
    assert report["classes"] == ["bird", "cat", "dog"]
    assert (report["train"], report["val"]) == (6, 2)
    assert report["train_per_class"] == [1, 2, 3] and report["val_per_class"] == [0, 1, 1]
    assert "bad" not in report


def test_cli_data_folder_check_good_and_bad(root, capsys):
    args = ["data", "--dataset", "folder", "--data-dir", str(root), "--check"]
    assert main([*args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["bad"] == []
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "3 classes, train 6 images, val 2" in out and "checked 8 images: 0 bad" in out

    truncated, text = _break(root)
    assert main(args) == 2
    out = capsys.readouterr().out.splitlines()
    assert f"bad: {text}: not an image Pillow can read" in out
    assert any(line.startswith(f"bad: {truncated}: ") for line in out)
    assert out[-1] == "checked 10 images: 2 bad"
    assert main([*args, "--json"]) == 2
    bad = json.loads(capsys.readouterr().out)["bad"]
    assert [item["path"] for item in bad] == [truncated, text]


def test_cli_data_folder_errors_exit_2(tmp_path, capsys):
    assert main(["data", "--dataset", "folder"]) == 2
    assert "--data-dir ROOT" in capsys.readouterr().err
    root = tmp_path / "data"
    _image(root / "train" / "cat" / "a.jpg")
    assert main(["data", "--dataset", "folder", "--data-dir", str(root)]) == 2
    assert f"{root} has no val/ split" in capsys.readouterr().err


def test_cli_data_help_describes_the_folder_layout(capsys):
    with pytest.raises(SystemExit):
        main(["data", "--help"])
    assert "ROOT/train/<class>/<image>" in " ".join(capsys.readouterr().out.split())
