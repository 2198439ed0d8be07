"""``reproduce(preset, out)``: the student report's table (the matrix of runs A–E) from one call.

Five students are trained with one preset, differing only in their token and
their loss (runs A–E below), and every head is evaluated. Their numbers fill
the report's table row for row, next to the report's own numbers and the
paper's claim for that row, in ``results.md`` and ``results.json``, with the
test-accuracy curves (``curves.png``) and a bar chart against the report
(``table.png``). Each run is an ordinary run directory under ``out``, so a
stopped matrix resumes where it stopped: finished runs are skipped and an
interrupted one continues from its checkpoint. ``runs`` trains a subset of
A–E (e.g. ``"ABE"``); the table then holds only the rows of those runs and
only the checks those rows can decide.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

from deit.config import ConfigError, TrainConfig, apply_overrides, from_preset, validate
from deit.matrix_table import (
    ALL_RUNS,
    RUNS,
    TRAINING_ORDER,
    Run,
    collect,
    parse_runs,
    run_dir,
    write_results,
)
from deit.models.registry import model_name, resolve_architecture
from deit.rundir import RunInterrupted
from deit.trainer import train

# A much smaller teacher recipe for --train-teacher under the smoke preset (seconds, not an hour).
SMOKE_TEACHER = {"epochs": 2, "widths": (16, 32, 32)}


def run_config(base: TrainConfig, run: Run, seed: int) -> TrainConfig:
    """The preset's config turned into run ``run`` of the matrix with ``seed``."""
    named = resolve_architecture(base.student)  # the name's own size, patch and image size
    student = model_name(named["size"], run.distilled, named["patch_size"], named["img_size"])
    return validate(
        dataclasses.replace(
            base,
            student=student,
            distillation=run.distillation,
            distillation_alpha=run.alpha,
            seed=seed,
        )
    )


def teacher_config(base: TrainConfig, preset: str):
    """The teacher ``--train-teacher`` trains for students of ``base``: on exactly their images.

    The same data set, ``validation`` split, ``train_size`` subset and
    ``subset_seed``, evaluated on the same images; a subset's teacher follows
    its own budget rule (:func:`deit.budget.teacher_schedule`).
    """
    from deit.teacher_training import TeacherConfig

    same = ("dataset", "data_dir", "download", "train_size", "subset_seed", "validation",
            "test_size")  # fmt: skip
    changes = {k: getattr(base, k) for k in same} | (SMOKE_TEACHER if preset == "smoke" else {})
    if base.dataset == "folder":
        changes["img_size"] = base.img_size
    return TeacherConfig(**changes)


def _teacher_path(out: Path, base: TrainConfig, preset: str, needed: bool) -> tuple[str, str]:
    """Train (or resume) a teacher in ``out/teacher`` and export it: (its file, its subset hash).

    When its students are all finished too (``needed`` false) a finished
    teacher is not exported again: its checkpoint and exported file are not
    kept in git, and gathering the tables again must not need them.
    """
    from deit.models.teacher_files import export_teacher
    from deit.teacher_training import train_teacher

    where = out / "teacher"
    dest = where / "teacher.safetensors"
    if not (where / "summary.json").is_file():
        if (where / "config.json").is_file():  # started before: resume (or read) it
            changes = {"data_dir": base.data_dir, "download": base.download}
            train_teacher(changes, where, resume=True, command=_command())
        else:
            train_teacher(teacher_config(base, preset), where, command=_command())
    if needed and not dest.is_file():
        export_teacher(where, dest)
    summary = json.loads((where / "summary.json").read_text())
    return str(dest), summary.get("train_set", {}).get("subset_sha256", "")


def _command() -> list[str]:
    """The command line that started this process."""
    return ["deit", *sys.argv[1:]] if Path(sys.argv[0]).name == "deit" else sys.argv


def _check_matrix(out: Path, record: dict, training: bool = True) -> None:
    """Refuse to mix two different matrices in one directory; remember this one.

    The preset, the overrides and the teacher must match the saved
    ``reproduce.json``. The number of seeds and the set of runs may change,
    since every run directory stands on its own: more seeds add runs
    (``A.seed1``…) to the same matrix, fewer report on the first ones; more
    runs (``--runs ABCDE`` after ``--runs ABE``) train the missing ones, fewer
    report on those only. The record is rewritten when the seeds or the runs
    change, unless this call trains nothing (``training`` false: every run it
    asks for is finished: a regathering), so it keeps naming the command
    that trained the runs (a curve's table cites it per size). A
    ``reproduce.json`` without ``"runs"`` (written before runs could be
    chosen) counts as all five, ``"ABCDE"``.
    """
    path = out / "reproduce.json"
    if path.is_file():
        saved = json.loads(path.read_text())
        keys = ("preset", "overrides", "train_teacher")
        if any(saved.get(k) != record.get(k) for k in keys):
            raise ConfigError(
                f"{out} holds a matrix made with "
                + ", ".join(f"{k}={saved.get(k)!r}" for k in keys)
                + "; use another --out or the same options"
            )
        same_runs = saved.get("runs", ALL_RUNS) == record.get("runs", ALL_RUNS)
        if not training or (saved.get("seeds") == record["seeds"] and same_runs):
            return
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")


def _train_run(config: TrainConfig, where: Path, command: list[str]) -> dict:
    """Finish one run: read it if done, resume it if started, else start it."""
    try:
        if (where / "config.json").is_file():  # its own saved config wins; only the data may move
            changes = {"data_dir": config.data_dir, "download": config.download}
            return train(changes, where, resume=True, command=command)
        return train(config, where, command=command)
    except RunInterrupted as err:
        raise RunInterrupted(where, err.step, err.total, resume_with=" ".join(command)) from None


def _eta(walls: list[float], remaining: int) -> str:
    """Time left for ``remaining`` runs, from the mean wall time of the finished ones."""
    if not walls:
        return "ETA after the first run"
    return f"ETA {statistics.mean(walls) * remaining / 60:.0f} min"


def reproduce(
    preset: str,
    out: str | Path,
    *,
    data_dir: str | None = None,
    download: bool = True,
    seeds: int = 1,
    train_teacher: bool = False,
    overrides: tuple[str, ...] = (),
    runs: str = ALL_RUNS,
) -> dict:
    """Train runs A–E of ``preset`` (``seeds`` times each) in ``out``; write the tables and plots.

    ``runs`` picks the runs to train, as letters in any order and case
    (``"ABE"``, ``"a,b,e"``; see :func:`parse_runs`); they are trained in
    :data:`TRAINING_ORDER`, and the tables hold only their rows and the checks
    those rows decide. ``overrides`` are ``key=value`` changes applied to
    every run (e.g. ``validation=true`` to tune on a held-out slice of the
    training set). With ``train_teacher`` the teacher is trained in
    ``out/teacher`` first instead of using the shipped one. Calling it again
    on the same ``out`` skips finished runs and resumes an interrupted one
    (with a larger ``seeds`` or more ``runs`` it adds the missing runs); it
    refuses a directory made with another preset, other overrides or another
    teacher. Bad ``seeds`` or ``runs`` raise :class:`ConfigError` before any
    work. Returns the ``results.json`` content.
    """
    out = Path(out)
    if seeds < 1:
        raise ConfigError(f"seeds must be at least 1, got {seeds}")
    runs = parse_runs(runs)
    base = from_preset(preset, data_dir=data_dir, download=download)
    base = validate(apply_overrides(base, list(overrides)))
    record = {"preset": preset, "overrides": list(overrides), "seeds": seeds, "runs": runs}
    record |= {"train_teacher": train_teacher, "command": _command()}
    by_name = {run.name: run for run in RUNS}
    plan = [(by_name[name], i) for i in range(seeds) for name in TRAINING_ORDER if name in runs]
    left = any(not (run_dir(out, run, i) / "summary.json").is_file() for run, i in plan)
    _check_matrix(out, record, training=left)
    if train_teacher:  # its students must see exactly its images (checked by their hash)
        path, seen = _teacher_path(out, base, preset, needed=left)
        base = dataclasses.replace(base, teacher=path, subset_sha256=seen)
    summaries: dict[tuple[str, int], dict] = {}
    walls: list[float] = []
    for number, (run, i) in enumerate(plan, start=1):
        where = run_dir(out, run, i)
        done = (where / "summary.json").is_file()
        print(
            f"[reproduce] run {number}/{len(plan)}: {where.name} ({run.description})"
            + (" — done, skipped" if done else f" — {_eta(walls, len(plan) - number + 1)}"),
            flush=True,
        )
        started = time.perf_counter()
        config = run_config(base, run, base.seed + i)
        summaries[(run.name, i)] = _train_run(config, where, record["command"])
        if not done:
            walls.append(time.perf_counter() - started)
    results = collect(out, preset, summaries, seeds, record["command"], runs=runs)
    write_results(out, results)
    return results
