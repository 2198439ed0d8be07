"""The real-data fixture: skipped without CIFAR-10 locally, a failure under CI (CI=true)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CONFTEST = Path(__file__).with_name("conftest.py")


def _run_pytest_without_data(tmp_path, ci):
    """Run a one-test module that uses `cifar_dir`, with DEIT_DATA pointing at an empty folder."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(CONFTEST, project / "conftest.py")
    (project / "test_needs_data.py").write_text("def test_uses_data(cifar_dir):\n    pass\n")
    (tmp_path / "empty").mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    env["DEIT_DATA"] = str(tmp_path / "empty")
    if ci is not None:
        env["CI"] = ci
    command = [sys.executable, "-m", "pytest", "-rs", "-p", "no:cacheprovider", str(project)]
    return subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)


@pytest.mark.parametrize("ci", ["true", "1"])
def test_missing_cifar10_fails_under_ci(tmp_path, ci):
    result = _run_pytest_without_data(tmp_path, ci)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"real CIFAR-10 not found in {tmp_path / 'empty'}" in result.stdout
    assert "set DEIT_DATA" in result.stdout and "1 error" in result.stdout


@pytest.mark.parametrize("ci", [None, "", "false"])
def test_missing_cifar10_is_skipped_outside_ci(tmp_path, ci):
    result = _run_pytest_without_data(tmp_path, ci)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout and "set DEIT_DATA" in result.stdout
    assert f"real CIFAR-10 not found in {tmp_path / 'empty'}" in result.stdout
