"""deit.load / deit.predict / ``deit predict``: deit eval's preprocessing, outputs, bad input."""

import csv
import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image

import deit
from deit.checkpoint import CheckpointError
from deit.cli import main
from deit.config import ConfigError, TrainConfig
from deit.data.augment import dataset_stats, normalize, resize
from deit.distributed import World
from deit.inference import CIFAR10_CLASSES, BadImage, find_images, load, predict
from deit.inputs import load_inputs
from deit.models import create_model

NANO = "deit_nano_distilled_patch4_32"


def save_student(path, config: TrainConfig, num_classes: int, seed: int = 0):
    """A checkpoint as deit train writes it (config and weights), of a random student."""
    torch.manual_seed(seed)
    model = create_model(config.student, num_classes=num_classes, **config.model_overrides())
    torch.save({"config": dataclasses.asdict(config), "model": model.state_dict()}, path)
    return path


def write_images(folder, count, rng, size=(40, 30)):
    """``count`` random RGB images of varied sizes and formats under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        w, h = size[0] + 7 * i, size[1] + 3 * i
        image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        path = folder / f"{i:02d}{['.png', '.JPG', '.jpeg'][i % 3]}"
        image.save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """ROOT/train/<class>/ and ROOT/val/<class>/ with a few odd-sized images each."""
    root = tmp_path_factory.mktemp("folder")
    rng = np.random.default_rng(0)
    for split, count in (("train", 2), ("val", 4)):
        for name in ("bee", "cow", "owl"):
            write_images(root / split / name, count, rng)
    return root


def folder_config(root) -> TrainConfig:
    return TrainConfig(student=NANO, dataset="folder", data_dir=str(root), workers=0, batch_size=2)


@pytest.fixture(scope="module")
def folder_student(image_folder, tmp_path_factory):
    config = folder_config(image_folder)
    return save_student(tmp_path_factory.mktemp("run") / "checkpoint.pt", config, 3)


def test_the_class_names_saved_in_the_checkpoint_win_when_the_folder_is_gone(tmp_path):
    config = folder_config(tmp_path / "moved")  # the training folder is no longer there
    path = save_student(tmp_path / "c.pt", config, 3)
    assert load(path)[2] == ("0", "1", "2")  # an older checkpoint: indices
    payload = torch.load(path, weights_only=True) | {"classes": ["bee", "cow", "owl"]}
    torch.save(payload, path)
    assert load(path)[2] == ("bee", "cow", "owl")


def test_predict_gives_deit_evals_predictions_for_a_folder_student(image_folder, folder_student):
    """Image by image, predict's class is the argmax deit eval computes on the same batches."""
    model, preprocess, classes = load(folder_student)
    assert classes == ("bee", "cow", "owl") and not model.training and model.eval_head == "avg"
    inputs = load_inputs(folder_config(image_folder), World())
    with torch.inference_mode():
        expected = [
            model(normalize(images, inputs.mean, inputs.std)).softmax(1)
            for images, _ in inputs.eval_batches()
        ]
    expected = torch.cat(expected)
    result = predict(folder_student.parent, [image_folder / "val"], topk=2, batch_size=5,
                     workers=0, progress=False)  # fmt: skip
    records = result["predictions"]
    assert result["images"] == len(records) == 12 and result["skipped"] == []
    assert [r["path"] for r in records] == [inputs.evaluation.dataset.path(i) for i in range(12)]
    got = torch.tensor([r["indices"][0] for r in records])
    assert torch.equal(got, expected.argmax(1))
    top_probs = torch.tensor([r["probs"][0] for r in records])
    assert torch.allclose(top_probs, expected.max(1).values, atol=1e-6)
    assert all(r["classes"][0] == classes[r["indices"][0]] for r in records)
    right = sum(r["classes"][0] == r["path"].split("/")[-2] for r in records)
    assert deit.evaluate(folder_student)["top1"] == pytest.approx(100 * right / 12)


def test_preprocess_of_a_pil_image_equals_the_streamed_one(image_folder, folder_student):
    _, preprocess, _ = load(folder_student)
    path = sorted((image_folder / "val" / "cow").iterdir())[1]
    loader = preprocess.loader([str(path)], 1, workers=0, skip_bad=False)
    streamed = preprocess.batch(next(iter(loader))[0])[0]
    assert torch.equal(preprocess(Image.open(path)), streamed)
    assert torch.equal(preprocess(path), streamed)
    assert streamed.shape == (3, 32, 32)


def test_a_cifar_student_sees_32_pixel_images_resized_as_deit_eval_does(tmp_path):
    """CIFAR path: the image at 32 px, normalised, then resized to a fine-tuned model's 48 px."""
    config = TrainConfig(student="deit_nano_patch4_48")
    save_student(tmp_path / "c.pt", config, 10)
    model, preprocess, classes = load(tmp_path / "c.pt")
    assert classes == CIFAR10_CLASSES and model.eval_head == "cls"
    pixels = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "x.png")
    uint8 = torch.from_numpy(pixels).permute(2, 0, 1)[None]
    expected = resize(normalize(uint8, *dataset_stats("cifar10")), 48)[0]
    assert torch.equal(preprocess(tmp_path / "x.png"), expected)


def test_head_is_chosen_and_checked(folder_student, tmp_path):
    assert load(folder_student, head="dist")[0].eval_head == "dist"
    plain = save_student(tmp_path / "p.pt", TrainConfig(student="deit_nano_patch4_32"), 10)
    with pytest.raises(ConfigError, match="needs a distillation token"):
        load(plain, head="avg")


def test_find_images_recurses_skips_hidden_and_takes_named_files(tmp_path):
    rng = np.random.default_rng(2)
    write_images(tmp_path / "a" / "deep", 2, rng)
    write_images(tmp_path / "a" / ".hidden", 1, rng)
    (tmp_path / "a" / ".dot.png").write_bytes(b"")
    (tmp_path / "a" / "notes.txt").write_text("x")
    (tmp_path / "named.txt").write_text("x")
    found = find_images([tmp_path / "a", tmp_path / "named.txt"])
    assert [p.split("/")[-1] for p in found] == ["00.png", "01.JPG", "named.txt"]


def test_official_layout_checkpoint_loads_with_imagenet_preprocessing(tmp_path):
    torch.manual_seed(0)
    model = create_model(  # official DeiTs have 64-dimensional heads, as read from the shapes
        "deit_tiny_distilled_patch16_224", num_classes=1000, embed_dim=128, depth=2, num_heads=2
    )
    torch.save({"model": model.state_dict()}, tmp_path / "official.pth")
    loaded, preprocess, classes = load(tmp_path / "official.pth")
    assert len(classes) == 1000 and classes[0].startswith("tench")
    assert (preprocess.mode, preprocess.size, preprocess.crop_pct) == ("eval", 224, 0.875)
    assert preprocess.mean == dataset_stats("imagenet")[0]
    x = torch.randn(2, 3, 224, 224)
    assert torch.equal(loaded(x), model.eval()(x))


# ----------------------------------------------------------------------------- command line


def test_cli_writes_json_lines_and_csv(folder_student, image_folder, tmp_path, capsys):
    val = str(image_folder / "val")
    assert main(["predict", "--checkpoint", str(folder_student), val, "--json", "--topk", "2"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 12 and all(len(r["classes"]) == 2 for r in lines)
    out = tmp_path / "p.csv"
    assert main(["predict", "--checkpoint", str(folder_student), val, "--csv", str(out)]) == 0
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["path", "class_1", "prob_1", "class_2", "prob_2", "class_3", "prob_3"]
    assert [r[0] for r in rows[1:]] == [r["path"] for r in lines]
    assert [r[1] for r in rows[1:]] == [r["classes"][0] for r in lines]
    assert main(["predict", "--checkpoint", str(folder_student), val, "--csv", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["predict", "--checkpoint", str(folder_student), val, "--csv", str(out),
                 "--overwrite", "--topk", "1"]) == 0  # fmt: skip
    assert len(next(csv.reader(out.open()))) == 3


@pytest.fixture
def bad_files(tmp_path):
    folder = tmp_path / "mixed"
    good = write_images(folder, 3, np.random.default_rng(3))
    jpeg = folder / "00.jpeg"
    Image.open(good[0]).save(jpeg, quality=90)
    (folder / "truncated.jpg").write_bytes(jpeg.read_bytes()[:300])
    (folder / "text.jpg").write_text("not an image\n")
    return folder


def test_a_bad_file_is_named_and_exits_1(folder_student, bad_files, capsys):
    assert main(["predict", "--checkpoint", str(folder_student), str(bad_files)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "text.jpg" in err[0]  # the first bad file in order
    with pytest.raises(BadImage, match="truncated.jpg"):
        predict(folder_student, [bad_files / "truncated.jpg"], progress=False)


def test_skip_bad_lists_both_and_writes_every_other_result(folder_student, bad_files, capsys):
    code = main(["predict", "--checkpoint", str(folder_student), str(bad_files), "--json",
                 "--skip-bad"])  # fmt: skip
    assert code == 0
    out, err = capsys.readouterr()
    records = [json.loads(line) for line in out.splitlines()]
    errors = {r["path"].split("/")[-1]: r["error"] for r in records if "error" in r}
    assert sorted(errors) == ["text.jpg", "truncated.jpg"]
    assert "truncated" in errors["truncated.jpg"] and "not an image" in errors["text.jpg"]
    assert sum("error" not in r for r in records) == 4
    assert err.count("skipped: ") == 2 and "4 images" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--head", "dist"], "needs a distillation token"),
        (["--topk", "0"], "topk"),
        (["MISSING"], "no such file or folder"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    plain = save_student(tmp_path / "p.pt", TrainConfig(student="deit_nano_patch4_32"), 10)
    write_images(tmp_path / "imgs", 1, np.random.default_rng(4))
    paths = [str(tmp_path / "imgs")] if "MISSING" not in args else [str(tmp_path / "nope")]
    flags = [a for a in args if a != "MISSING"]
    assert main(["predict", "--checkpoint", str(plain), *paths, *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_checkpoints_that_are_not_students_are_refused(tmp_path, capsys):
    teacher = tmp_path / "teacher.pt"
    torch.save({"arch": "fastcnn", "model": {"w": torch.zeros(1)}}, teacher)
    with pytest.raises(CheckpointError, match="is not a DeiT student"):
        load(teacher)
    (tmp_path / "img.png").write_bytes(b"")
    for checkpoint in (str(teacher), str(tmp_path), "deit_huge_patch16_224"):
        assert main(["predict", "--checkpoint", checkpoint, str(tmp_path / "img.png")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
    assert "deit_tiny_distilled_patch16_224" in err[0]  # the official names are listed


def test_public_api_names_and_help(capsys):
    assert deit.load is load and deit.predict is predict
    for command, words in (("predict", "preprocessing"), ("export", "ONNX Runtime")):
        with pytest.raises(SystemExit) as done:
            main([command, "--help"])
        assert done.value.code == 0 and words in capsys.readouterr().out
    assert main(["predict", "--checkpoint", "cifar10-teacher", "x.png"]) == 2
    assert "is a teacher, not a student" in capsys.readouterr().err
