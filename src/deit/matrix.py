"""``reproduce(preset, out)``: the student report's table (the matrix of runs A–E) from one call.

Five students are trained with one preset, differing only in their token and
their loss (runs A–E below), and every head is evaluated. Their numbers fill
the report's table row for row, next to the report's own numbers and the
paper's claim for that row, in ``results.md`` and ``results.json``, with the
test-accuracy curves (``curves.png``) and a bar chart against the report
(``table.png``). Each run is an ordinary run directory under ``out``, so a
stopped matrix resumes where it stopped: finished runs are skipped and an
interrupted one continues from its checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deit.config import ConfigError, TrainConfig, apply_overrides, from_preset, validate
from deit.models.registry import model_name, resolve_architecture
from deit.rundir import RunInterrupted
from deit.trainer import train


@dataclass(frozen=True)
class Run:
    """One student training of the matrix: its token(s) and its loss."""

    name: str
    distilled: bool  # has a distillation token
    distillation: str  # none, soft or hard
    alpha: float | None  # None: the paper's default for the kind

    @property
    def description(self) -> str:
        """A few words saying what this run is, for progress lines and tables."""
        tokens = "class + distillation tokens" if self.distilled else "class token only"
        loss = "labels only" if self.distillation == "none" else f"{self.distillation} distillation"
        return f"{tokens}, {loss}" + (", no labels" if self.alpha == 1.0 else "")


# The report's "usual" and "hard distillation" rows train a plain ViT on the
# teacher alone (its label column says no), hence α = 1 for B and C.
RUNS = (
    Run("A", distilled=False, distillation="none", alpha=None),
    Run("B", distilled=False, distillation="soft", alpha=1.0),
    Run("C", distilled=False, distillation="hard", alpha=1.0),
    Run("D", distilled=True, distillation="soft", alpha=None),
    Run("E", distilled=True, distillation="hard", alpha=None),
)
# Training order: the paper's method first, so a matrix cut short has its headline number.
TRAINING_ORDER = "EDCBA"


@dataclass(frozen=True)
class Row:
    """One row of the report's table: which run and head fill it, and what it is compared with."""

    method: str
    run: str  # A–E or "teacher"
    head: str | None  # cls, dist, avg; None for the teacher
    label: bool | None
    teacher: str | None  # none, soft, hard; None for the teacher row
    report_top1: float | None
    claim: str  # what the paper says of this row


ROWS = (
    Row("DeiT, no distillation", "A", "cls", True, "none", 67.69,
        "baseline of every comparison"),
    Row("DeiT, usual distillation", "B", "cls", False, "soft", 68.85,
        "≈ no distillation (Ti: 72.2 vs 72.2)"),
    Row("DeiT, hard distillation", "C", "cls", False, "hard", 40.19,
        "> no distillation (Ti: 74.3 vs 72.2)"),
    Row("DeiT⚗, distillation embedding only", "E", "dist", True, "hard", 8.07,
        "close to class + distillation"),
    Row("DeiT⚗, class embedding only", "E", "cls", True, "hard", 61.69,
        "close to class + distillation"),
    Row("DeiT⚗, class + distillation", "D", "avg", True, "soft", 69.19,
        "soft < hard"),
    Row("DeiT⚗, class + distillation", "E", "avg", True, "hard", 46.11,
        "best student row (Ti: 74.5)"),
    Row("teacher", "teacher", None, None, None, 88.46,
        "the report's ResNet-18 (ours: the shipped CNN)"),
)  # fmt: skip

# A much smaller teacher recipe for --train-teacher under the smoke preset (seconds, not an hour).
SMOKE_TEACHER = {"epochs": 2, "widths": (16, 32, 32), "train_size": 5000, "test_size": 2000}


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


def run_dir(out: Path, run: Run, index: int) -> Path:
    """Where run ``run`` of seed number ``index`` lives: ``out/A``, then ``out/A.seed1``…"""
    return out / (run.name if index == 0 else f"{run.name}.seed{index}")


def _teacher_path(out: Path, base: TrainConfig, preset: str) -> str:
    """Train (or resume) a teacher in ``out/teacher`` and export it; return its file."""
    from deit.models.teachers import export_teacher
    from deit.teacher_training import TeacherConfig, train_teacher

    where = out / "teacher"
    dest = where / "teacher.safetensors"
    if not dest.is_file():
        if (where / "config.json").is_file():  # started before: resume (or read) it
            changes = {"data_dir": base.data_dir, "download": base.download}
            train_teacher(changes, where, resume=True, command=_command())
        else:
            changes = SMOKE_TEACHER if preset == "smoke" else {}
            config = TeacherConfig(data_dir=base.data_dir, download=base.download, **changes)
            train_teacher(config, where, command=_command())
        export_teacher(where, dest)
    return str(dest)


def _command() -> list[str]:
    """The command line that started this process."""
    return ["deit", *sys.argv[1:]] if Path(sys.argv[0]).name == "deit" else sys.argv


def _check_matrix(out: Path, record: dict) -> None:
    """Refuse to mix two different matrices in one directory; remember this one.

    The number of seeds may change: more seeds add runs (``A.seed1``…) to
    the same matrix, fewer report on the first ones.
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
        if saved.get("seeds") == record["seeds"]:
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
) -> dict:
    """Train runs A–E of ``preset`` (``seeds`` times each) in ``out``; write the tables and plots.

    ``overrides`` are ``key=value`` changes applied to every run (e.g.
    ``validation=true`` to tune on a held-out slice of the training set).
    With ``train_teacher`` the teacher is trained in ``out/teacher`` first
    instead of using the shipped one. Calling it again on the same ``out``
    skips finished runs and resumes an interrupted one (with a larger
    ``seeds`` it adds the new seeds' runs); it refuses a directory made with
    another preset, other overrides or another teacher. Returns the ``results.json`` content.
    """
    out = Path(out)
    if seeds < 1:
        raise ConfigError(f"seeds must be at least 1, got {seeds}")
    base = from_preset(preset, data_dir=data_dir, download=download)
    base = validate(apply_overrides(base, list(overrides)))
    record = {"preset": preset, "overrides": list(overrides), "seeds": seeds}
    record |= {"train_teacher": train_teacher, "command": _command()}
    _check_matrix(out, record)
    if train_teacher:
        base = dataclasses.replace(base, teacher=_teacher_path(out, base, preset))
    by_name = {run.name: run for run in RUNS}
    plan = [(by_name[name], i) for i in range(seeds) for name in TRAINING_ORDER]
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
    results = collect(out, preset, summaries, seeds, record["command"])
    write_results(out, results)
    return results


def _metrics(where: Path) -> list[dict]:
    """The per-epoch records of a run directory."""
    return [json.loads(line) for line in (where / "metrics.jsonl").read_text().splitlines()]


def collect(
    out: Path, preset: str, summaries: dict[tuple[str, int], dict], seeds: int, command: list[str]
) -> dict:
    """Gather the finished runs into the ``results.json`` structure (means over seeds)."""
    rows = []
    for row in ROWS:
        if row.run == "teacher":
            values = [summaries[("E", i)]["teacher_top1"] for i in range(seeds)]
            seconds = None
        else:
            values = [summaries[(row.run, i)]["test_top1"][row.head] for i in range(seeds)]
            seconds = statistics.mean(summaries[(row.run, i)]["wall_seconds"] for i in range(seeds))
        rows.append(
            {
                "method": row.method,
                "run": row.run,
                "head": row.head,
                "label": row.label,
                "teacher": row.teacher,
                "top1": round(statistics.mean(values), 6),
                "top1_seeds": values,
                "report_top1": row.report_top1,
                "claim": row.claim,
                "seconds": seconds,
            }
        )
    runs = []
    for run in RUNS:
        for i in range(seeds):
            summary = summaries[(run.name, i)]
            metrics = _metrics(run_dir(out, run, i))
            runs.append(
                {
                    "run": run.name,
                    "seed_index": i,
                    "directory": run_dir(out, run, i).name,
                    "description": run.description,
                    "student": summary["student"],
                    "distillation": summary["distillation"],
                    "epochs": summary["epochs"],
                    "top1": summary["test_top1"],
                    "teacher_agreement": summary["teacher_agreement"],
                    "seconds": summary["wall_seconds"],
                    "img_per_s": statistics.mean(m["img_per_s"] for m in metrics),
                    "curve": [_default_head(m["test_top1"]) for m in metrics],
                }
            )
    teacher = summaries[("E", 0)]
    return {
        "preset": preset,
        "evaluated_on": teacher["evaluated_on"],
        "seeds": seeds,
        "teacher": teacher["teacher"],
        "command": command,
        "hardware": teacher["hardware"],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "rows": rows,
        "runs": runs,
        "checks": checks(rows),
    }


def _default_head(top1: dict[str, float]) -> float:
    """The accuracy a user gets from the model as is: ``avg`` if distilled, else ``cls``."""
    return top1.get("avg", top1["cls"])


def checks(rows: list[dict]) -> dict[str, bool]:
    """The paper's claims the table can confirm or refute, and the target best row ≥ 70 %."""
    by = {(r["run"], r["head"]): r["top1"] for r in rows}
    students = [r["top1"] for r in rows if r["run"] != "teacher"]
    hard = [r["top1"] for r in rows if r["teacher"] == "hard"]
    return {
        "every hard-distillation row ≥ no distillation": min(hard) >= by[("A", "cls")],
        "E dist head within 2 points of E": abs(by[("E", "dist")] - by[("E", "avg")]) <= 2.0,
        "E (class + distillation, hard) best student row": by[("E", "avg")] == max(students),
        "best student row ≥ 70 %": max(students) >= 70.0,
    }


def write_results(out: Path, results: dict) -> None:
    """Write ``results.json``, ``results.md`` and, if matplotlib is installed, the two plots."""
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(results_markdown(results))
    try:
        from deit.plots import plot_curves, plot_table
    except ImportError:
        print("[reproduce] matplotlib is not installed: no plots (pip install 'deit[plots]')")
        return
    plot_curves(results, out / "curves.png")
    plot_table(results, out / "table.png")


def _pct(value: float | None) -> str:
    """A percentage cell, or a dash."""
    return "–" if value is None else f"{value:.2f} %"


def _spread(values: list[float]) -> str:
    """`` (±h)`` with h half the range over seeds, or nothing for one seed."""
    return "" if len(values) < 2 else f" (±{(max(values) - min(values)) / 2:.2f})"


def results_markdown(results: dict[str, Any]) -> str:
    """The report's table, every head of D and E, the runs and the checks, as Markdown."""
    hw = results["hardware"]
    lines = [
        f"# The distillation matrix, preset `{results['preset']}`",
        "",
        f"`{' '.join(results['command'])}` — {results['date']}, {hw['cpu']}, "
        f"{hw['threads']} threads, torch {hw['torch']}; {results['evaluated_on']} top-1, "
        f"mean of {results['seeds']} seed(s); teacher `{results['teacher']}`.",
        "",
        "| method | label | teacher | CIFAR-10 | report | the paper says |",
        "|---|---|---|---:|---:|---|",
    ]
    for r in results["rows"]:
        label = "–" if r["label"] is None else ("yes" if r["label"] else "no")
        teacher = r["teacher"] or "–"
        cell = _pct(r["top1"]) + _spread(r["top1_seeds"])
        run = "" if r["run"] == "teacher" else f" ({r['run']}, {r['head']} head)"
        lines.append(
            f"| {r['method']}{run} | {label} | {teacher} | {cell} | {_pct(r['report_top1'])} "
            f"| {r['claim']} |"
        )
    lines += ["", "## Every head", "", "| run | cls | dist | avg | teacher agreement |"]
    lines += ["|---|---:|---:|---:|---:|"]
    for run in results["runs"]:
        top1 = run["top1"]
        heads = " | ".join(_pct(top1.get(h)) for h in ("cls", "dist", "avg"))
        lines.append(f"| {run['directory']} | {heads} | {_pct(run['teacher_agreement'])} |")
    lines += ["", "## Runs", "", "| run | what | student | epochs | wall time | train img/s |"]
    lines += ["|---|---|---|---:|---:|---:|"]
    for run in results["runs"]:
        lines.append(
            f"| {run['directory']} | {run['description']} | {run['student']} | {run['epochs']} "
            f"| {run['seconds'] / 60:.1f} min | {run['img_per_s']:.0f} |"
        )
    lines += ["", "## The paper's claims on this table", ""]
    lines += [f"- {name}: **{'yes' if ok else 'no'}**" for name, ok in results["checks"].items()]
    return "\n".join(lines) + "\n"
