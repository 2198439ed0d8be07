"""Training, distilling, resuming and evaluating on an image folder, end to end."""

import json
import signal
import subprocess

import pytest
import torch
from stop_and_resume import DeitProcess, saved_step, wait_for_step

from deit.cli import main
from deit.config import ConfigError, from_preset
from deit.data.export import export_cifar, make_imagenet_like
from deit.data.subsets import cifar_subset

TINY = ["--preset", "smoke", "--set", "dataset=folder", "--set", "threads=1",
        "--set", "train_size=0"]  # fmt: skip


@pytest.fixture(scope="module")
def cifar_folder(cifar10, tmp_path_factory):
    """CIFAR-10's train_size=512 subset and 128 validation images as a PNG image folder."""
    subset, _ = cifar_subset(cifar10, 512)  # the images `train_size=512` trains on, in order
    return export_cifar(subset, tmp_path_factory.mktemp("png") / "cifar", val_size=128)


@pytest.fixture(scope="module")
def imagenet_like(cifar10, tmp_path_factory):
    """3 classes of ImageNet-like JPEGs (varied sizes around 500×375, odd modes and names)."""
    root = tmp_path_factory.mktemp("inet") / "inet"
    return make_imagenet_like(cifar10, root, train_per_class=16, val_per_class=4, classes=3)


def last_line(stderr: str) -> str:
    return stderr.strip().splitlines()[-1].split("\r")[-1].strip()


def test_a_folder_too_small_for_one_batch_is_one_line(imagenet_like, tmp_path, capsys):
    args = [*TINY, "--data-dir", str(imagenet_like), "--out", str(tmp_path / "run")]
    assert main(["train", *args]) == 2  # 48 images, batches of 64
    assert capsys.readouterr().err.strip().endswith("48 images make no batch of 64 on each of "
                                                    "1 rank(s) with drop_last=True")  # fmt: skip
    assert not (tmp_path / "run").exists()


def test_a_folder_teacher_without_a_subset_follows_the_rule_for_its_size(imagenet_like, tmp_path):
    from deit.teacher_training import TeacherConfig, train_teacher

    config = TeacherConfig(dataset="folder", data_dir=str(imagenet_like), img_size=16,
                           widths=(8, 16, 16), threads=1, workers=1)  # fmt: skip
    assert not train_teacher(config, tmp_path / "t", max_steps=1)["finished"]
    saved = json.loads((tmp_path / "t" / "config.json").read_text())
    assert saved["train_size"] == 0  # 48 images: the subset rule, not CIFAR's batch of 1,024
    assert (saved["batch_size"], saved["epochs"]) == (32, round(160_000 / 48))


def test_a_curve_size_below_one_batch_stops_before_any_work(imagenet_like, tmp_path, capsys):
    args = ["reproduce", "--preset", "smoke", "--train-sizes", "30,48", "--train-teacher", "--set",
            "dataset=folder", "--data-dir", str(imagenet_like), "--out", str(tmp_path)]  # fmt: skip
    assert main(args) == 2
    line = last_line(capsys.readouterr().err)
    assert line.endswith("train size 30 makes no batch of 64: use larger sizes or a smaller "
                         "--set batch_size=")  # fmt: skip
    # 40 images make one batch of 40, but not once validation holds out a tenth of them.
    tuned = [*args[:4], "40", *args[5:], "--set", "batch_size=40", "--set", "validation=true"]
    assert main(tuned) == 2
    err = capsys.readouterr().err
    assert "train size 40 makes no batch of 40 after its validation tenth" in err
    assert not list(tmp_path.iterdir())


def test_a_folder_needs_its_root():
    with pytest.raises(ConfigError, match="dataset=folder needs --data-dir ROOT"):
        from_preset("smoke", dataset="folder")


@pytest.mark.slow
def test_a_student_trains_and_evaluates_on_a_folder(cifar_folder, tmp_path, capsys):
    out = tmp_path / "run"
    args = [*TINY, "--epochs", "2", "--data-dir", str(cifar_folder), "--out", str(out)]
    assert main(["train", *args, "--set", "workers=2"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["test_top1"]) == {"cls", "dist", "avg"}
    assert json.loads((out / "config.json").read_text())["dataset"] == "folder"
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(out / "checkpoint.pt"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["heads"] == summary["test_top1"]  # the same val/ images, the same numbers


@pytest.mark.slow
def test_a_teacher_trained_on_a_folder_distils_a_student_there(imagenet_like, tmp_path):
    teacher = tmp_path / "teacher"  # in-process: no second torch import
    done = main(["teacher", "--out", str(teacher), "--data-dir", str(imagenet_like), "--epochs",
                 "2", "--set", "dataset=folder", "--set", "img_size=32", "--set", "batch_size=16",
                 "--set", "widths=8,16,16", "--set", "threads=1",
                 "--set", "workers=1"])  # fmt: skip
    assert done == 0
    spec = json.loads((teacher / "summary.json").read_text())
    assert spec["classes"] == sorted(p.name for p in (imagenet_like / "train").iterdir()
                                     if p.is_dir())  # fmt: skip
    assert spec["spec"]["img_size"] == 32 and spec["spec"]["mean"] == [0.485, 0.456, 0.406]
    student = tmp_path / "student"
    done = main(["train", *TINY, "--student", "deit_nano_distilled_patch16_64", "--epochs", "1",
                 "--set", "batch_size=16", "--distillation", "hard",
                 "--teacher", str(teacher / "checkpoint.pt"), "--data-dir", str(imagenet_like),
                 "--out", str(student)])  # fmt: skip
    assert done == 0
    summary = json.loads((student / "summary.json").read_text())
    assert summary["teacher_top1"] is not None and summary["model"]["img_size"] == 64


@pytest.mark.slow
def test_a_teacher_for_other_classes_is_refused_before_any_work(imagenet_like, tmp_path, capsys):
    out = tmp_path / "run"
    done = main(["train", *TINY, "--distillation", "hard", "--set", "batch_size=16",
                 "--data-dir", str(imagenet_like), "--out", str(out)])  # fmt: skip
    assert done == 2
    assert last_line(capsys.readouterr().err) == (
        "deit train: error: teacher 'cifar10-teacher' predicts 10 classes but the data set has 3"
    )
    assert not out.exists()


@pytest.mark.slow
def test_a_bad_file_stops_the_run_in_one_line_or_is_skipped(cifar_folder, tmp_path, capsys):
    folder = tmp_path / "folder"
    subprocess.run(["cp", "-r", str(cifar_folder), str(folder)], check=True)
    bad = folder / "train" / "cat" / "zz_broken.jpg"
    bad.write_text("not an image")
    out = tmp_path / "run"  # in-process: the command's exit code and last line, no new torch
    done = main(["train", *TINY, "--epochs", "1", "--set", "train_crop=none",
                 "--data-dir", str(folder), "--out", str(out)])  # fmt: skip
    assert done == 1
    assert last_line(capsys.readouterr().err).startswith(
        f"deit train: error: cannot decode {bad}: not an image Pillow can read; the run stopped "
        "in epoch 1. Remove or replace the file and resume"
    )
    assert main(["train", "--resume", str(out), "--set", "skip_bad_files=true"]) == 0
    assert (out / "skipped_files.txt").read_text() == f"{bad}\n"
    assert json.loads((out / "summary.json").read_text())["skipped_files"] == 1


@pytest.mark.slow
def test_a_folder_run_stopped_then_killed_resumes_bit_identical(cifar_folder, tmp_path):
    """SIGTERM to the whole process group, as a scheduler or a terminal sends it (the loader
    workers get it too), stops the run cleanly; the resumed run, SIGKILLed between
    checkpoints, is resumed with another worker count and ends as the run never stopped."""
    import os

    common = [*TINY, "--epochs", "2", "--set", "workers=2", "--set", "checkpoint_every=3",
              "--set", "mixup=0.8", "--data-dir", str(cifar_folder)]  # fmt: skip
    # The uninterrupted run trains beside the one that is stopped (one thread each).
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    reference = DeitProcess(["train", *common, "--out", str(whole)])
    try:
        process = DeitProcess(["train", *common, "--out", str(cut)], new_session=True)
        wait_for_step(cut, 3, process)
        os.killpg(process.pid, signal.SIGTERM)
        assert process.wait(timeout=60) == 130, process.communicate()[1]
        assert "Traceback" not in process.communicate()[1]
        stopped_at = saved_step(cut)
        assert 3 <= stopped_at <= 12  # 8 steps an epoch, 16 in all
        resumed = DeitProcess(["train", "--resume", str(cut)])
        wait_for_step(cut, stopped_at + 3, resumed)  # the resumed run's own checkpoint
        resumed.send_signal(signal.SIGKILL)
        resumed.wait(timeout=60)
        # Another worker count, the same run; in-process (the CLI's code, no new torch start).
        assert main(["train", "--resume", str(cut), "--set", "workers=0"]) == 0
        assert reference.wait(timeout=300) == 0, reference.communicate()[1]
    finally:  # a failed check must not leave the reference run training
        if reference.poll() is None:
            reference.kill()
            reference.wait()
    first, second = (torch.load(d / "checkpoint.pt", weights_only=True)["model"]
                     for d in (whole, cut))  # fmt: skip
    for key, value in first.items():
        assert torch.equal(value, second[key]), key


@pytest.mark.slow
def test_in_the_same_order_the_folder_path_trains_bit_identical_to_memory(
    cifar_folder, cifar_dir, small_teacher, tmp_path, monkeypatch
):
    """The folder path is the in-memory pipeline: same pixels, same batches, same weights.

    The folder lists images by class and the in-memory set by file position, so
    normally the seeded permutation draws other batches (another sample of the
    same noise as another seed); sorted back into file order, nothing differs.
    """
    import re

    import deit
    from deit import inputs

    real = inputs.folder_selection

    def by_file_index(config):
        classes, train, test, kept = real(config)
        index = lambda sample: int(re.search(r"(\d+)\.png$", sample[0]).group(1))  # noqa: E731
        order = sorted(range(len(train)), key=lambda i: index(train[i]))
        return (classes, tuple(train[i] for i in order), tuple(sorted(test, key=index)),
                [kept[i] for i in order])  # fmt: skip

    common = dict(epochs=2, train_size=512, test_size=128, distillation="hard",
                  teacher=str(small_teacher), mixup=0.8, drop_path_rate=0.1)  # fmt: skip
    memory = deit.train(deit.from_preset("smoke", data_dir=str(cifar_dir), **common),
                        tmp_path / "memory")  # fmt: skip
    monkeypatch.setattr(inputs, "folder_selection", by_file_index)
    folder = deit.train(
        deit.from_preset("smoke", dataset="folder", data_dir=str(cifar_folder), workers=2,
                         train_crop="none", normalization="cifar10", **common),
        tmp_path / "folder",
    )  # fmt: skip
    assert folder["test_top1"] == memory["test_top1"]
    a, b = (torch.load(tmp_path / d / "checkpoint.pt", weights_only=True)["model"]
            for d in ("memory", "folder"))  # fmt: skip
    for key, value in a.items():
        assert torch.equal(value, b[key]), key
