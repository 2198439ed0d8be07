"""The command line as a user meets it: help, errors, and a real smoke run."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from deit.cli import main
from deit.config import PRESETS

RESULTS = Path(__file__).resolve().parents[1] / "results"


def deit(*args):
    return subprocess.run(
        [sys.executable, "-m", "deit", *args], capture_output=True, text=True, timeout=300
    )


def test_help_lists_the_working_subcommands(capsys):
    result = deit("--help")  # the real entry point, once; the subcommands' help in-process
    assert result.returncode == 0
    assert "train" in result.stdout and "data" in result.stdout
    for command in ("train", "data"):
        with pytest.raises(SystemExit) as done:
            main([command, "--help"])
        assert done.value.code in (0, None), command
        assert "usage:" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--preset", "smoke", "--set", "nonsense=1"], "unknown config key"),
        (["--preset", "smoke", "--set", "lr=-1"], "lr must be positive"),
        (["--student", "deit_huge_patch4_32"], "deit_huge_patch4_32"),
    ],
)
def test_bad_train_config_fails_with_one_line_and_exit_2(tmp_path, capsys, args, message):
    assert main(["train", "--out", str(tmp_path / "run"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists(), "no work may start on a bad config"


def test_missing_data_without_download_is_a_clear_error(tmp_path, capsys):
    assert main(["data", "--data-dir", str(tmp_path), "--no-download"]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "cifar-10-batches-bin" in err


def test_data_command_describes_real_cifar10(cifar_dir, capsys):
    assert main(["data", "--data-dir", str(cifar_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["train"] == 50000 and report["test"] == 10000
    assert report["train_per_class"] == [5000] * 10


@pytest.mark.slow
def test_smoke_training_run_writes_the_run_directory(cifar_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "smoke"
    args = ["train", "--preset", "smoke", "--data-dir", str(cifar_dir), "--out", str(out)]
    args += ["--student", "deit_nano_distilled_patch8_32", "--set", "train_size=1024"]
    monkeypatch.setattr(sys, "argv", ["deit", *args])  # as the console script sees it
    assert main(args) == 0  # in-process: the entry point itself is test_help's
    # The smoke preset evaluates on the first 2,000 test images; `deit eval` on all 10,000.
    assert "s: test top-1 (2,000 images) cls " in capsys.readouterr().out
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == PRESETS["smoke"]["epochs"]
    record = json.loads(lines[-1])
    assert set(record["test_top1"]) == {"cls", "dist", "avg"}
    assert min(record["test_top1"].values()) > 15, "smoke training should beat chance (10 %)"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["command"][:2] == ["deit", "train"]
    model = summary["model"]
    assert (model["size"], model["embed_dim"], model["depth"], model["num_heads"]) == (
        "nano",
        64,
        4,
        2,
    )
    assert (model["patch_size"], model["img_size"], model["params"]) == (8, 32, 214_996)
    config = json.loads((out / "config.json").read_text())
    assert config["train_size"] == 1024
    assert (config["embed_dim"], config["depth"], config["num_heads"]) == (64, 4, 2)
    assert (out / "checkpoint.pt").exists()


@pytest.mark.slow
def test_eval_reproduces_the_shipped_teacher_accuracy(cifar_dir, capsys):
    args = ["eval", "--checkpoint", "cifar10-teacher", "--data-dir", str(cifar_dir), "--json"]
    assert main(args) == 0  # in-process: the whole test set, without a second torch import
    recorded = json.loads(RESULTS.joinpath("teacher", "summary.json").read_text())["test_top1"]
    report = json.loads(capsys.readouterr().out)
    assert round(report["top1"], 2) == round(recorded, 2) == 94.01 and report["images"] == 10_000


@pytest.mark.slow
def test_eval_of_a_student_checkpoint_reports_every_head(cifar_dir, tmp_path, capsys):
    out = tmp_path / "run"
    # Patch 8: 16 tokens, so evaluating the whole test set costs a quarter of patch 4's.
    args = ["--data-dir", str(cifar_dir), "--set", "epochs=1", "--set", "train_size=256",
            "--set", "test_size=64", "--student", "deit_nano_distilled_patch8_32"]  # fmt: skip
    assert main(["train", "--preset", "smoke", "--out", str(out), *args]) == 0
    capsys.readouterr()
    args = ["eval", "--checkpoint", str(out), "--data-dir", str(cifar_dir)]  # the run directory
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "student" and set(report["heads"]) == {"cls", "dist", "avg"}
    assert report["top1"] == report["heads"]["avg"] and report["images"] == 10_000


@pytest.mark.parametrize(
    "checkpoint, message",
    [
        ("missing.pt", "no checkpoint at"),
        ("README.md", "not a PyTorch checkpoint"),
        ("docs", "docs holds no checkpoint.pt (not a run directory)"),
    ],
)
def test_eval_errors_are_one_clear_line(capsys, checkpoint, message):
    assert main(["eval", "--checkpoint", str(RESULTS.parent / checkpoint)]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_teacher_command_trains_a_tiny_teacher(cifar_dir, tmp_path, capsys):
    out = tmp_path / "teacher"
    tiny = ["--set", "train_size=512", "--set", "test_size=200", "--set", "batch_size=256",
            "--set", "widths=8,16,16"]  # fmt: skip
    common = ["--epochs", "1", "--data-dir", str(cifar_dir), *tiny]
    assert main(["teacher", "--out", str(out), *common]) == 0
    assert {"config.json", "metrics.jsonl", "checkpoint.pt", "summary.json"} <= {
        p.name for p in out.iterdir()
    }
    printed = capsys.readouterr().out
    assert "done: test top-1 (200 images) " in printed and "run directory" in printed


def test_teacher_command_rejects_a_bad_arch_before_any_work(tmp_path, capsys):
    common = ["--epochs", "1", "--data-dir", str(tmp_path / "no-data"), "--no-download"]
    assert main(["teacher", "--arch", "vgg", "--out", str(tmp_path / "bad"), *common]) == 2
    assert "vgg" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_resume_uses_the_saved_config_and_refuses_run_shaping_flags(
    cifar_dir, tmp_path, capsys, monkeypatch
):
    out = str(tmp_path / "run")
    tiny = ["--set", "epochs=1", "--set", "train_size=256", "--set", "test_size=100"]
    assert main(["train", "--out", out, "--data-dir", str(cifar_dir), *tiny]) == 0
    monkeypatch.delenv("DEIT_DATA", raising=False)  # the saved data_dir must be used
    assert main(["train", "--resume", out]) == 0
    assert main(["train", "--resume", out, "--set", "eval_every=2"]) == 0  # changes no training
    assert main(["train", "--resume", out, "--epochs", "5"]) == 2
    assert "it cannot change epochs (1 → 5)" in capsys.readouterr().err


def test_help_lists_every_config_field_with_its_meaning(capsys):
    from dataclasses import fields

    from deit.config import TrainConfig

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for field in fields(TrainConfig):
        assert f"  {field.name}=" in text, field.name
    assert "folder data: skip (and list) undecodable files, not stop" in text


def test_a_dead_decoding_worker_outside_training_is_one_line(monkeypatch, capsys):
    """deit predict / eval decode in worker processes too; the out-of-memory killer's SIGKILL
    reaches PyTorch as a RuntimeError, which ends the command in one line (exit 1)."""
    from deit import cli

    def killed(args):
        raise RuntimeError("DataLoader worker (pid 77) is killed by signal: Killed. ")

    monkeypatch.setitem(cli.COMMANDS, "predict", killed)
    assert main(["predict", "--checkpoint", "cifar10-teacher", "x.png"]) == 1
    assert capsys.readouterr().err == (
        "deit predict: error: DataLoader worker (pid 77) is killed by signal: Killed; if memory "
        "ran out, run it with fewer worker processes\n"
    )
