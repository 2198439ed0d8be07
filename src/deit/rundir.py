"""The run engine every training run shares: its directory, its files, resume and stop.

A run directory holds four files, the same for a student and a teacher:

- ``config.json``: every setting of the run, written once when it starts;
- ``metrics.jsonl``: one line per finished epoch, written before the
  checkpoint of that epoch, so a resume drops the lines its checkpoint lacks;
- ``checkpoint.pt``: the latest state, rewritten atomically; enough to go on
  bit-exactly after a crash;
- ``summary.json``: written once the run is finished: its results, wall time,
  hardware and the command line.

The rules, enforced here for every kind of run:

- a directory that already holds a run is never written over: a new run there
  is refused before any work (``overwrite=True`` deletes the old run's files
  first), and ``resume`` continues it instead; ``resume="auto"`` starts the
  run, or continues it if the directory holds it already (the same command
  run again: a relaunched torchrun job, a requeued job);
- on resume the saved config wins: settings that only say where the data is
  or how many threads to use may change, anything that would change the run
  is refused by name;
- SIGINT/SIGTERM become a flag the training loop polls (:class:`StopOnSignal`):
  it checkpoints and raises :class:`RunInterrupted`, which says how to go on;
- every write is atomic, and a failed one raises
  :class:`~deit.checkpoint.WriteError` naming the file and the cause, the
  previous checkpoint intact.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from deit.checkpoint import WriteError, load_checkpoint, save_checkpoint, write_atomic, write_error
from deit.config import ConfigError
from deit.hardware import hardware

C = TypeVar("C")

RUN_FILES = ("config.json", "metrics.jsonl", "checkpoint.pt", "summary.json")


class RunInterrupted(Exception):
    """A run stopped by SIGINT/SIGTERM after saving its checkpoint; says how to continue."""

    def __init__(self, out: Path, step: int, total: int, resume_with: str):
        self.out, self.step, self.total, self.resume_with = Path(out), step, total, resume_with
        super().__init__(
            f"interrupted at step {step} of {total}; checkpoint saved. Continue with: {resume_with}"
        )


class RunFailed(Exception):
    """A run stopped by a failure it cannot go past (e.g. a file that does not decode).

    Its checkpoint is the last one written; the message says what failed and how to go on.
    """

    def __init__(self, message: str, run_path: Path | None = None):
        super().__init__(message)  # (a default, so that the error survives pickling)
        self.run_path = None if run_path is None else Path(run_path)


def what_is_left(run_path: Path | None) -> str:
    """The end of a failed run's error line: whether it leaves a checkpoint to resume from.

    A run that fails before its first checkpoint (a full disk, a bad file in
    the first epoch) has none: saying "the last checkpoint is kept" there would
    send the user looking for one.
    """
    if run_path is None or Path(run_path, "checkpoint.pt").is_file():
        return "the last checkpoint is kept"
    if Path(run_path, "config.json").is_file():
        return "no checkpoint was written yet (--resume starts the run over)"
    return "nothing was written yet (run the command again)"  # not a run --resume takes


class StopOnSignal:
    """Context manager turning SIGINT/SIGTERM into a flag the training loop polls.

    The loop finishes its current step, saves a checkpoint and stops, instead
    of dying mid-write. A second signal falls through to the default action.
    """

    def __enter__(self) -> StopOnSignal:
        self.raised = False
        self.previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        if threading.current_thread() is threading.main_thread():
            for s in self.previous:
                signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.raised = True
        signal.signal(signum, self.previous[signum])

    def __call__(self) -> bool:
        return self.raised

    def __exit__(self, *exc) -> None:
        if threading.current_thread() is threading.main_thread():
            for s, handler in self.previous.items():
                signal.signal(s, handler)


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=2) + "\n").encode()


class RunDir:
    """One run's directory: the four files, written only by the writing process.

    Build it with :func:`open_run`, which applies the overwrite and resume
    rules; ``writer`` is False on every rank but 0 of a distributed job (they
    read, never write).
    """

    def __init__(
        self, path: str | Path, resume_command: str, writer: bool = True, overwrite: bool = False
    ):
        self.path, self.resume_command, self.writer = Path(path), resume_command, writer
        self.overwrite = overwrite
        self.resumed = False  # set by open_run: this process continues a run started before
        self.started = time.perf_counter()
        self.wall_before = 0.0

    @property
    def finished(self) -> bool:
        """Whether the run is done (its ``summary.json`` exists); resuming it only reads that."""
        return self.file("summary.json").is_file()

    def file(self, name: str) -> Path:
        """The path of one of the run's files."""
        return self.path / name

    @property
    def resume_with(self) -> str:
        """The command that continues this run."""
        return f"{self.resume_command} --resume {self.path}"

    def wall_seconds(self) -> float:
        """Wall time of the whole run so far, earlier sessions included."""
        return self.wall_before + time.perf_counter() - self.started

    # ------------------------------------------------------------------ files

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Mark a failed write as this run's, so its error line can say what is left."""
        try:
            yield
        except WriteError as err:
            err.run_path = self.path
            raise

    def create(self, config: Any) -> None:
        """Start the run: the directory, ``config.json`` and an empty ``metrics.jsonl``.

        With ``overwrite`` (given to :func:`open_run`) the files of a run
        already there are deleted first.
        """
        if not self.writer:
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            if self.overwrite:
                for name in RUN_FILES:
                    self.file(name).unlink(missing_ok=True)
        except OSError as err:
            raise ConfigError(f"cannot create run directory {self.path}: {err.strerror}") from None
        with self._writing():
            write_atomic(self.file("config.json"), _json_bytes(dataclasses.asdict(config)))
            write_atomic(self.file("metrics.jsonl"), b"")

    def say_resumed(self, step: int, total: int) -> None:
        """One line on stdout (from the writing process) saying where the run continues: with
        ``--auto-resume`` nothing else tells a continued run from a new one."""
        if self.writer:
            print(f"resuming the run in {self.path} at step {step:,} of {total:,}", flush=True)

    def read_json(self, name: str) -> dict[str, Any]:
        """A JSON file of the run (its config or summary)."""
        return json.loads(self.file(name).read_text())

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The latest checkpoint, or None if the run stopped before its first one."""
        path = self.file("checkpoint.pt")
        return load_checkpoint(path) if path.is_file() else None

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Rewrite ``checkpoint.pt`` atomically with ``state`` and the run's wall time so far."""
        if self.writer:
            state = state | {"wall_seconds": self.wall_seconds()}
            with self._writing():
                save_checkpoint(state, self.file("checkpoint.pt"))

    def restore_clock(self, state: dict[str, Any] | None) -> None:
        """Continue the wall-time count of a checkpoint (0 for a fresh run)."""
        self.wall_before = state.get("wall_seconds", 0.0) if state else 0.0
        self.started = time.perf_counter()

    def keep_metrics(self, epochs: int) -> dict[str, Any]:
        """Keep the first ``epochs`` lines of ``metrics.jsonl`` (the checkpoint's); return the last.

        A crash between writing an epoch's line and its checkpoint leaves one
        line too many; it is dropped here, and the epoch is trained again.
        """
        path = self.file("metrics.jsonl")
        lines = path.read_text().splitlines()[:epochs] if path.is_file() else []
        if self.writer:
            with self._writing():
                write_atomic(path, "".join(line + "\n" for line in lines).encode())
        return json.loads(lines[-1]) if lines else {}

    def append_metrics(self, record: dict[str, Any]) -> None:
        """Add one epoch's line to ``metrics.jsonl``."""
        if not self.writer:
            return
        path = self.file("metrics.jsonl")
        with self._writing():
            try:
                with path.open("a") as f:
                    f.write(json.dumps(record) + "\n")
            except OSError as err:
                raise write_error(path, err) from None

    def record_skipped(self, paths: list[str]) -> None:
        """Write the files the run skipped (``skip_bad_files``) to ``skipped_files.txt``."""
        if self.writer and paths:
            with self._writing():
                write_atomic(self.file("skipped_files.txt"),
                             "".join(p + "\n" for p in paths).encode())  # fmt: skip

    def finish(self, summary: dict[str, Any], command: list[str] | None, world: Any = None) -> dict:
        """Write ``summary.json`` (plus wall time, hardware and command line); return it."""
        summary = summary | {
            "wall_seconds": self.wall_seconds(),
            "hardware": hardware(world),
            "command": command or sys.argv,
        }
        if self.writer:
            with self._writing():
                write_atomic(self.file("summary.json"), _json_bytes(summary))
        return summary


def holds_run(path: Path) -> bool:
    """Whether ``path`` holds any file of a run."""
    return any((path / name).exists() for name in RUN_FILES)


def open_run(
    out: str | Path,
    config: C | dict[str, Any] | None,
    *,
    resume: bool | str,
    overwrite: bool = False,
    load_config: Callable[[dict[str, Any]], C],
    free: Iterable[str],
    command: str,
    writer: bool = True,
    derived: Iterable[str] = (),
) -> tuple[RunDir, C]:
    """Apply the run rules to ``out``; return the run directory and the config to run.

    A new run (``resume=False``) takes ``config``; ``out`` must not hold a run
    yet unless ``overwrite`` (nothing is written here: call
    :meth:`RunDir.create` once everything else checked out). A resumed run
    takes the config saved in ``out/config.json``; ``config`` may be None, a
    full config or a dict of changed fields, and may change only the
    ``free`` fields (data location, threads...): any other difference is
    refused, naming the fields. A finished run (:attr:`RunDir.finished`)
    resumes to nothing: the caller returns its summary. ``load_config`` turns saved JSON into a
    validated config. ``command`` (``deit train``) is what the messages tell
    the user to run.

    ``resume="auto"`` (a command that may run again as it is: a requeued job,
    a relaunched torchrun job) resumes when ``out`` holds a ``config.json``,
    else starts: the full ``config`` then must equal the saved one but for
    the ``free`` fields and the ``derived`` ones (those the run settles from
    its data, e.g. epochs from an image budget, which the saved config holds
    settled). :attr:`RunDir.resumed` says which it was.
    """
    run = RunDir(out, command, writer, overwrite)
    path = run.path
    if resume == "auto" and overwrite:
        raise ConfigError("--auto-resume continues the run in --out and --overwrite replaces it: "
                          "give one of them")  # fmt: skip
    if resume == "auto":
        if not (path / "config.json").is_file():
            resume = False
        else:
            saved = load_config(run.read_json("config.json"))
            given = dataclasses.asdict(config) | {k: getattr(saved, k) for k in derived}
            run.resumed = True
            return run, _merge_resumed(saved, given, set(free), path, "--auto-resume")
    if not resume:
        if path.exists() and not path.is_dir():
            raise ConfigError(f"--out {path} is a file, not a directory")
        if holds_run(path) and not overwrite:
            raise ConfigError(
                f"{path} already holds a run; continue it with `{command} --resume {path}`, "
                f"or choose another --out (or pass --overwrite to replace it)"
            )
        return run, config
    if not (path / "config.json").is_file():
        raise ConfigError(f"{path} holds no run to resume (no config.json there)")
    saved = load_config(run.read_json("config.json"))
    run.resumed = True
    return run, _merge_resumed(saved, config, set(free), path, "--resume")


def _merge_resumed(
    saved: C, given: C | dict[str, Any] | None, free: set[str], path: Path, flag: str
) -> C:
    """``saved`` with the ``free`` fields of ``given`` applied; other changes refused."""
    if given is None:
        return saved
    changes = given if isinstance(given, dict) else dataclasses.asdict(given)
    changed = {}
    for key, value in changes.items():
        old = getattr(saved, key)
        value = tuple(value) if isinstance(old, tuple) and isinstance(value, list) else value
        if value != old:
            changed[key] = value
    refused = [f"{k} ({getattr(saved, k)!r} → {v!r})" for k, v in changed.items() if k not in free]
    if refused:
        raise ConfigError(
            f"{flag} continues {path} with its saved config; it cannot change "
            f"{', '.join(refused)}. Start a new run with another --out instead"
        )
    return dataclasses.replace(saved, **changed)
