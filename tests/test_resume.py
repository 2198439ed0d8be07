"""Crash safety: a run killed at any moment and resumed ends bit-identical (students, teachers)."""

import signal

import pytest
import torch
from stop_and_resume import DeitProcess, saved_step, wait_for_step

from deit.cli import main

pytestmark = pytest.mark.slow

# 512 images in batches of 64: 8 steps an epoch, a checkpoint every 3 steps as well.
# threads=1: the uninterrupted reference run trains beside the run that is killed. Patch 8
# (16 tokens): a step costs a third of the smoke student's, what is checked is the same.
TINY = ["--preset", "smoke", "--student", "deit_nano_distilled_patch8_32", "--epochs", "3"]
TINY += ["--set", "train_size=512"]
TINY += ["--set", "test_size=64", "--set", "threads=1", "--set", "drop_path_rate=0.1"]
TINY += ["--set", "ema_decay=0.9", "--set", "mixup=0.8", "--set", "cutmix=1.0"]
TINY += ["--set", "checkpoint_every=3"]
# 256 images in batches of 32: 8 steps an epoch, a checkpoint every 3 steps.
TEACHER = ["--epochs", "2", "--set", "batch_size=32", "--set", "train_size=256"]
TEACHER += ["--set", "test_size=128", "--set", "widths=8,16,16", "--set", "checkpoint_every=3"]
TEACHER += ["--set", "whiten_bias_epochs=1", "--set", "threads=1"]


def start(command, cifar_dir, *args):
    return DeitProcess([command, "--data-dir", str(cifar_dir), *args])


def assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def student_weights(run_dir):
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    return {**state["model"], **{f"ema.{k}": v for k, v in state["ema"].items()}}


def teacher_weights(run_dir):
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    return {**state["model"], **{f"avg.{k}": v for k, v in state["averaged"].items()}}


def stop(process, run_dir, step, kill_signal):
    """Send ``kill_signal`` once the run has checkpointed ``step``; check how it ended."""
    wait_for_step(run_dir, step, process)
    process.send_signal(kill_signal)
    code = process.wait(timeout=60)
    assert code == (-signal.SIGKILL if kill_signal == signal.SIGKILL else 130)
    if kill_signal == signal.SIGTERM:
        assert f"deit train --resume {run_dir}" in process.communicate()[1]


def test_a_run_killed_then_stopped_and_resumed_twice_ends_bit_identical(cifar_dir, tmp_path):
    """SIGKILL (no warning) inside epoch 2, then SIGTERM (a clean stop) inside the resumed run.

    Each stop lands between checkpoints, so each resume replays steps the killed
    process had already taken; the run never stopped, trained beside them, is the
    reference.
    """
    whole, out = tmp_path / "whole", tmp_path / "run"
    reference = start("train", cifar_dir, "--out", str(whole), *TINY)
    try:
        stop(start("train", cifar_dir, "--out", str(out), *TINY), out, 9, signal.SIGKILL)
        killed_at = saved_step(out)
        assert 9 <= killed_at <= 18
        # The resumed run's own first checkpoint, so the stop cannot come before it started.
        stop(start("train", cifar_dir, "--resume", str(out)), out, killed_at + 3, signal.SIGTERM)
        assert killed_at + 3 <= saved_step(out) < 24
        # The last resume in-process (the CLI's own code, without a third start of torch), as a
        # requeued job does it: the first command again, --auto-resume.
        again = ["train", "--data-dir", str(cifar_dir), "--out", str(out), *TINY]
        assert main([*again, "--auto-resume"]) == 0
        assert reference.wait(timeout=300) == 0, reference.communicate()[1]
    finally:  # a failed check must not leave the reference run training
        if reference.poll() is None:
            reference.kill()
            reference.wait()
    assert_same(student_weights(out), student_weights(whole))
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3


def test_teacher_stopped_by_sigterm_and_resumed_ends_bit_identical(cifar_dir, tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    whole = start("teacher", cifar_dir, "--out", str(full), *TEACHER)  # beside the cut run
    process = start("teacher", cifar_dir, "--out", str(cut), *TEACHER)
    wait_for_step(cut, 3, process)  # inside the first epoch
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 130
    err = process.communicate()[1]
    assert f"checkpoint saved. Continue with: deit teacher --resume {cut}" in err
    assert 3 <= saved_step(cut) < 16
    assert main(["teacher", "--data-dir", str(cifar_dir), "--resume", str(cut)]) == 0
    assert whole.wait(timeout=300) == 0, whole.communicate()[1]
    assert_same(teacher_weights(cut), teacher_weights(full))
    assert len((cut / "metrics.jsonl").read_text().splitlines()) == 2
