"""The worker processes of the streaming loaders (`deit.data.stream`, `deit.data.shard_loader`).

Both loaders decode in DataLoader workers made by :func:`worker_loader`:
forked on Linux (no second import of torch), kept from epoch to epoch, deaf
to Ctrl-C and SIGTERM so that a signal to the whole process group reaches
only the training process, which saves its checkpoint and then stops the
workers itself. Deaf workers would outlive an interpreter that exits with a
loader still open (Python's own shutdown stops worker processes with
SIGTERM, then waits for them): :func:`close_at_exit` closes every such
loader first. :func:`shut_down` stops one loader's workers now;
:func:`worker_death` recognises PyTorch's report of a worker that was killed.
"""

from __future__ import annotations

import atexit
import signal
import sys
import weakref
from typing import Protocol

import torch
from torch.utils.data import DataLoader, Dataset


class Closable(Protocol):
    def close(self) -> None: ...


_OPEN: weakref.WeakSet = weakref.WeakSet()  # loaders whose workers may be running


def ignore_stop_signals(worker_id: int) -> None:
    """In a worker: leave Ctrl-C and SIGTERM to the training process.

    A terminal or a scheduler signals the whole process group; a worker killed
    by it would end the run with a traceback before the training process could
    save its checkpoint. The training process stops cleanly, then shuts the
    workers down itself.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def worker_loader(
    dataset: Dataset, *, workers: int, prefetch: int, device: torch.device, **kwargs
) -> DataLoader:
    """A DataLoader over ``dataset`` with ``workers`` persistent worker processes (0: none).

    Forked on Linux, with :func:`ignore_stop_signals`, its own random generator
    (a DataLoader draws a seed at every iteration, which would otherwise
    advance the global torch RNG), pinned memory on CUDA; ``kwargs`` go to the
    DataLoader as they are (sampler, collate function, batch size).
    """
    fork = sys.platform == "linux" and workers > 0
    return DataLoader(
        dataset, num_workers=workers, persistent_workers=workers > 0,
        prefetch_factor=prefetch if workers else None, pin_memory=device.type == "cuda",
        multiprocessing_context="fork" if fork else None, generator=torch.Generator(),
        worker_init_fn=ignore_stop_signals, **kwargs,
    )  # fmt: skip


def shut_down(loader: DataLoader | None) -> None:
    """Stop the worker processes of ``loader`` now (nothing if it has none running).

    Also when an iteration is still suspended somewhere (a generator the
    caller holds): the workers are told to stop and joined, as the
    DataLoader's own clean-up does when its last reference goes.
    """
    # The DataLoader has no public way: its persistent workers' iterator and its clean-up.
    running = getattr(loader, "_iterator", None)
    stop = getattr(running, "_shutdown_workers", None)
    if stop is not None:
        stop()


def worker_death(err: BaseException) -> str:
    """PyTorch's report that a DataLoader worker process died, as one clause ("" if ``err`` is
    something else): "DataLoader worker (pid 4674) is killed by signal: Killed".

    Killed (the out-of-memory killer's SIGKILL, most often) or crashed; PyTorch
    raises it in the training process wherever that process happens to be.
    """
    report = str(err).strip() if isinstance(err, RuntimeError) else ""
    return report.rstrip(".") if report.startswith("DataLoader worker (pid") else ""


def close_at_exit(loader: Closable) -> None:
    """Have ``loader.close()`` called when the interpreter exits, if the loader is alive then."""
    _OPEN.add(loader)


@atexit.register  # at this module's import, after PyTorch's and Python's own exit handlers
def _close_all() -> None:
    """Close the open loaders while their workers can still be told to stop.

    Exit handlers run in reverse order of registration, so this one runs
    before PyTorch marks the interpreter as exiting (its DataLoaders then no
    longer stop their workers) and before Python stops worker processes with
    SIGTERM, which these workers ignore, and waits for them.
    """
    for loader in list(_OPEN):
        loader.close()
