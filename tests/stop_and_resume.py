"""Helpers for the tests that stop a training process between checkpoints and resume it."""

import time

import torch


def saved_step(run_dir) -> int:
    """The step of the run's latest checkpoint (0 before the first; it is written atomically)."""
    path = run_dir / "checkpoint.pt"
    return torch.load(path, weights_only=True)["step"] if path.exists() else 0


def wait_for_step(run_dir, step, process, timeout=300) -> None:
    """Block until the run in ``process`` has checkpointed ``step``; fail if it ends first."""
    deadline = time.time() + timeout
    while saved_step(run_dir) < step:
        assert process.poll() is None, process.communicate()[1]
        assert time.time() < deadline, f"no checkpoint of step {step} appeared"
        time.sleep(0.02)
