"""Shared fixtures: where the real CIFAR-10 lives, and the data set loaded once per session."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYOUTS = ("cifar-10-batches-bin", "cifar-10-batches-py")


def _real_data_dir() -> Path:
    """DEIT_DATA if set, else ../shared/data relative to the repository root."""
    return Path(os.environ.get("DEIT_DATA") or ROOT.parent / "shared" / "data")


def _in_ci() -> bool:
    """True when the environment variable CI is set to a true value (CI=true, as CI sets it)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no", "off")


@pytest.fixture(scope="session")
def cifar_dir() -> Path:
    """The directory holding the real CIFAR-10 (a layout folder inside it).

    When it is missing the tests that need it are skipped, except under CI (CI=true), where
    they fail: CI must run them, not quietly pass without them.
    """
    directory = _real_data_dir()
    if not any((directory / layout).is_dir() for layout in LAYOUTS):
        looked = " or ".join(f"{layout}/" for layout in LAYOUTS)
        message = (
            f"real CIFAR-10 not found in {directory} (looked for {looked}); "
            f"set DEIT_DATA to the folder that holds one of them"
        )
        if _in_ci():
            pytest.fail(f"{message} (CI is set, so this fails instead of skipping)", pytrace=False)
        pytest.skip(message)
    return directory


@pytest.fixture(scope="session")
def cifar10(cifar_dir):
    """The real CIFAR-10, loaded once for the whole session."""
    from deit.data.cifar import load_cifar

    return load_cifar("cifar10", cifar_dir, download=False)


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """Each test starts with the session's torch thread count.

    An in-process run with ``threads=1`` sets torch's thread count for the whole
    process and leaves it set; without this, every test after it ran on one core.
    """
    import torch

    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def small_teacher(cifar_dir, tmp_path_factory) -> Path:
    """A small CIFAR-10 teacher (widths 8, 16, 16; the shipped one's are 64, 256, 256): its file.

    For tests of what distillation does to a run (the same batches reach the teacher, resume,
    ranks), where the teacher's accuracy is not what is checked: the shipped teacher's forward
    pass was a third of such a run. Trained for 16 steps, once per session: enough that its
    hard labels spread over all ten classes (a teacher that answers one class for every image
    would not notice a batch reaching it changed).
    """
    from deit.teacher_recipe import TeacherConfig
    from deit.teacher_training import train_teacher

    out = tmp_path_factory.mktemp("small-teacher") / "run"
    config = TeacherConfig(data_dir=str(cifar_dir), epochs=1, batch_size=64, train_size=1024,
                           test_size=64, widths=(8, 16, 16), threads=1)  # fmt: skip
    train_teacher(config, out)
    return out / "checkpoint.pt"
