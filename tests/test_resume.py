"""Crash safety: a run killed at any moment and resumed ends bit-identical."""

import signal
import subprocess
import sys
import time

import pytest
import torch

TINY = ["--preset", "smoke", "--epochs", "3", "--set", "train_size=1024"]
TINY += ["--set", "test_size=200", "--set", "threads=1", "--set", "drop_path_rate=0.1"]
TINY += ["--set", "ema_decay=0.9", "--set", "mixup=0.8", "--set", "cutmix=1.0"]


def start(out, cifar_dir, *extra):
    command = [sys.executable, "-m", "deit", "train", "--data-dir", str(cifar_dir), *extra]
    if out is not None:
        command += ["--out", str(out), *TINY]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def weights(run_dir):
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    return {**state["model"], **{f"ema.{k}": v for k, v in state["ema"].items()}}


def wait_for(path, process, timeout=120):
    deadline = time.time() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()[1]
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def uninterrupted(cifar_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    process = start(out, cifar_dir)
    assert process.wait(timeout=300) == 0, process.communicate()[1]
    return weights(out)


def assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("kill_signal", [signal.SIGKILL, signal.SIGTERM])
def test_killed_and_resumed_run_ends_bit_identical(cifar_dir, tmp_path, uninterrupted, kill_signal):
    out = tmp_path / "run"
    process = start(out, cifar_dir)
    wait_for(out / "checkpoint.pt", process)  # first epoch done: kill inside the second
    time.sleep(0.3)
    process.send_signal(kill_signal)
    code = process.wait(timeout=60)
    assert code == (-signal.SIGKILL if kill_signal == signal.SIGKILL else 130)
    if kill_signal == signal.SIGTERM:
        assert "deit train --resume" in process.communicate()[1]
    resumed = start(None, cifar_dir, "--resume", str(out))
    assert resumed.wait(timeout=300) == 0, resumed.communicate()[1]
    assert_same(weights(out), uninterrupted)
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3
