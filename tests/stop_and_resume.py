"""Helpers for the tests that stop a training process between checkpoints and resume it.

:class:`DeitProcess` runs ``deit COMMAND ...`` in a process of its own, forked from a
server that imported deit once for the session (PyTorch's forkserver, preloaded): a new
``python -m deit`` first spends seconds importing torch and TorchDynamo, which the killed
and stopped runs of these tests are not about. The process is as separate as any: it is
signalled, killed and waited for like ``subprocess.Popen``, whose methods it offers.
"""

import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path

import torch

_SERVER = multiprocessing.get_context("forkserver")
_SERVER.set_forkserver_preload(["deit.cli", "torch._dynamo"])  # both, before any fork


def _run_deit(args: list[str], out: str, err: str, new_session: bool) -> None:
    """In the forked process: ``deit ARGS`` with stdout and stderr into files."""
    if new_session:  # its own process group, as Popen(start_new_session=True)
        os.setsid()
    for fd, path in ((1, out), (2, err)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(target, fd)
        os.close(target)
    sys.argv = ["deit", *args]
    from deit.cli import main

    try:
        code = main(args)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    sys.exit(code)


class DeitProcess:
    """``deit ARGS`` running in a forked process; ``new_session``: in its own process group."""

    def __init__(self, args: list[str], new_session: bool = False) -> None:
        folder = Path(tempfile.mkdtemp(prefix="deit-process-"))
        weakref.finalize(self, shutil.rmtree, folder, ignore_errors=True)
        self._out, self._err = folder / "stdout", folder / "stderr"
        self._process = _SERVER.Process(
            target=_run_deit, args=(list(args), str(self._out), str(self._err), new_session)
        )
        self._process.start()
        self.pid = self._process.pid

    @property
    def returncode(self) -> int | None:
        """The exit status once ended (``-N``: killed by signal N), else None."""
        return self._process.exitcode

    def poll(self) -> int | None:
        """The exit status if the process has ended, else None."""
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the end; the exit status. ``subprocess.TimeoutExpired`` after ``timeout``."""
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(["deit"], timeout)
        return self._process.exitcode

    def send_signal(self, signal: int) -> None:
        """Send ``signal`` to the process."""
        os.kill(self.pid, signal)

    def kill(self) -> None:
        """SIGKILL."""
        self._process.kill()

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        """Wait for the end; what the process wrote to stdout and stderr."""
        self.wait(timeout)
        return self._out.read_text(), self._err.read_text()


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
