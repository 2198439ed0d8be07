"""Data-parallel training with PyTorch's own engine: torchrun and DistributedDataParallel.

``torchrun --nproc_per_node N -m deit train ...`` starts N copies of the
command with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous
address in their environment; :func:`session` reads them, joins the process
group (NCCL between GPUs, gloo on CPU) and says which device this rank
trains on. Without those variables it is a world of one and nothing is
initialised, so the same code runs a plain single-process job.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from deit.config import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place in the job: its rank, the number of ranks, its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and shows progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether more than one process trains."""
        return self.world_size > 1

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` in DistributedDataParallel (gradients averaged over ranks), or as is."""
        if not self.distributed:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum of ``values`` over all ranks (float64, so counts stay exact)."""
        if not self.distributed:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self._comm_device)
        dist.all_reduce(t)
        return t.tolist()

    def any(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on any: a decision all ranks must share."""
        return self.sum([float(flag)])[0] > 0

    def gather(self, obj: Any) -> list[Any]:
        """``obj`` of every rank, in rank order, on every rank (small picklable objects)."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def from_main(self, find: Callable[[], T]) -> T:
        """``find()`` run on rank 0 only, its result (or its exception) given to every rank.

        For what every rank must agree on and is costly to find: the listing
        of a folder on a shared file system (ranks that scanned it each
        would read its metadata as many times, and could disagree if files
        changed meanwhile). The result must be picklable.
        """
        if not self.distributed:
            return find()
        box: list[Any] = [None]
        if self.is_main:
            try:
                box[0] = (find(), None)
            except Exception as err:  # every rank raises it, no rank waits forever
                box[0] = (
                    None,
                    err if _picklable(err) else RuntimeError(f"{type(err).__name__}: {err}"),
                )
        dist.broadcast_object_list(box, src=0, device=self._comm_device)
        found, err = box[0]
        if err is not None:
            raise said_by_rank_zero(err, main=self.is_main)
        return found

    @property
    def _comm_device(self) -> torch.device:
        """Where collective tensors live: NCCL needs them on the GPU, gloo on the CPU."""
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")


def _picklable(obj: object) -> bool:
    """Whether ``obj`` survives pickling (what a broadcast needs)."""
    try:
        pickle.dumps(obj)
    except Exception:
        return False
    return True


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """The device a config's ``device`` names: ``auto`` is this rank's GPU if any, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} asked for, but PyTorch sees no GPU here")
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    return device


def launched_by_torchrun() -> bool:
    """Whether this process is one rank of a torchrun (or equivalent) job."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


_PEER_GONE = ("Connection closed by peer", "Connection reset by peer", "remote process exited")


def lost_a_rank(err: BaseException) -> bool:
    """Whether ``err`` is a collective of this torchrun rank failing because another rank ended.

    That rank printed its own error, the one that says why (a bad file, a full
    disk); the others then fail inside DDP's or a metric's collective (gloo:
    "Connection closed by peer"; NCCL: a ``DistBackendError``), and their
    tracebacks would bury that one line.
    """
    if not launched_by_torchrun() or not isinstance(err, RuntimeError):
        return False
    return isinstance(err, dist.DistError) or any(words in str(err) for words in _PEER_GONE)


def peer_error(err: BaseException) -> str:
    """The gist of a failed collective's message: its first sentence, without gloo's source
    location ("[.../pair.cc:553] Connection closed by peer [127.0.0.1]:24747")."""
    line = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return re.sub(r"^\[[^\]]*\]\s*", "", line).split(". ")[0].rstrip(".")


def said_by_rank_zero(err: BaseException, main: bool | None = None) -> BaseException:
    """``err``, marked as an error rank 0 raises too if this is another rank; returned.

    For errors that depend only on what every rank shares: the command line's
    flags, or what rank 0 found and handed over (:meth:`World.from_main`).
    Rank 0 prints it; :func:`repeats_rank_zero` tells the others not to.
    ``main``: whether this is rank 0 (default: :func:`is_main_process`).
    """
    if not (is_main_process() if main is None else main):
        err.from_rank_zero = True
    return err


def repeats_rank_zero(err: BaseException | None) -> bool:
    """Whether ``err`` was marked by :func:`said_by_rank_zero` on this rank, or raised while
    handling such an error (rank 0 raises the same: e.g. wrapped in a ``DataError``).

    Rank 0 prints it; the other ranks end with the same exit status without
    printing it again (eight GPUs, one line, not eight).
    """
    while err is not None:
        if getattr(err, "from_rank_zero", False):
            return True
        err = err.__context__
    return False


def is_main_process() -> bool:
    """Rank 0, or a single process: who may print results and errors."""
    return os.environ.get("RANK", "0") == "0"


@contextlib.contextmanager
def session(device: str = "auto") -> Iterator[World]:
    """Join the torchrun job this process belongs to (if any) and leave it on exit.

    The backend follows the device: NCCL for GPUs, gloo for CPUs. A process
    group that is already initialised (by the caller) is used and left open.
    """
    if not launched_by_torchrun():
        yield World(device=pick_device(device))
        return
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    here = pick_device(device, local_rank)
    owned = not dist.is_initialized()
    if owned:
        # Imported before the group exists: this module of PyTorch's (DDP imports it on first
        # use) takes the default group as its functions' default arguments, which would keep
        # the group, and gloo's worker threads, alive into the interpreter's teardown; a
        # thread releasing a collective's tensors there aborts the process ("terminate
        # called without an active exception": a torchrun test failed so, about one run in
        # three, on a busy 2-core machine).
        import torch.distributed.nn  # noqa: F401

        dist.init_process_group("nccl" if here.type == "cuda" else "gloo")
    try:
        yield World(rank, world_size, local_rank, here)
    finally:
        if owned:
            gc.collect()  # a DDP model left in a reference cycle holds the group too
            dist.destroy_process_group()
