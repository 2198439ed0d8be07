"""The matrix of runs A–E and its table: what each run is, which row it fills, the results files.

Runs A–E differ only in their token(s) and their loss; :data:`ROWS` says which
run and head fill each row of the student report's table, next to the
report's number and the paper's claim. :func:`collect` gathers finished run
directories into the ``results.json`` structure (means over seeds, curves,
the paper's claims as checks) and :func:`write_results` writes it with
``results.md`` and the plots. Training the runs is :mod:`deit.matrix`'s job.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deit.config import ConfigError


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
ALL_RUNS = "".join(run.name for run in RUNS)  # "ABCDE"
# Which run's summary gives the teacher row (and the teacher's name): the first one trained.
TEACHER_SOURCES = "EDCB"


def parse_runs(runs: str) -> str:
    """The runs to train, from letters in any order and case (``"ABE"``, ``"a,b,e"``, ``"e b a"``).

    Commas and spaces are dropped and the letters upper-cased. Returns them in
    the order of :data:`RUNS` (``"ABE"``); raises :class:`ConfigError` for an
    unknown letter, a repeated one or none at all.
    """
    letters = "".join(str(runs).replace(",", " ").split()).upper()
    valid = f"letters of {ALL_RUNS}, e.g. ABE"
    if not letters:
        raise ConfigError(f"runs must name at least one run ({valid}), got {runs!r}")
    unknown = sorted(set(letters) - set(ALL_RUNS))
    if unknown:
        raise ConfigError(f"runs must be {valid}; unknown: {''.join(unknown)} in {runs!r}")
    if len(set(letters)) != len(letters):
        raise ConfigError(f"runs must be {valid}, each at most once; got {runs!r}")
    return "".join(name for name in ALL_RUNS if name in letters)


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


def run_dir(out: Path, run: Run, index: int) -> Path:
    """Where run ``run`` of seed number ``index`` lives: ``out/A``, then ``out/A.seed1``…"""
    return out / (run.name if index == 0 else f"{run.name}.seed{index}")


def _metrics(where: Path) -> list[dict]:
    """The per-epoch records of a run directory."""
    return [json.loads(line) for line in (where / "metrics.jsonl").read_text().splitlines()]


def collect(
    out: Path,
    preset: str,
    summaries: dict[tuple[str, int], dict],
    seeds: int,
    command: list[str],
    *,
    runs: str = ALL_RUNS,
) -> dict:
    """Gather the finished runs into the ``results.json`` structure (means over seeds).

    ``runs`` are the trained runs (letters as :func:`parse_runs` takes them,
    e.g. ``"ABE"``): only their rows of :data:`ROWS` and their run records are
    kept, and ``runs_trained`` says which they were. The teacher row takes
    the teacher's accuracy from the first trained run of E, D, C, B (any of
    them evaluates the teacher); with only A trained there is no teacher row.
    """
    runs = parse_runs(runs)
    teacher_run = next((name for name in TEACHER_SOURCES if name in runs), None)
    rows = []
    for row in ROWS:
        if row.run == "teacher":
            if teacher_run is None:
                continue
            values = [summaries[(teacher_run, i)]["teacher_top1"] for i in range(seeds)]
            seconds = None
        elif row.run not in runs:
            continue
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
    records = []
    for run in RUNS:
        if run.name not in runs:
            continue
        for i in range(seeds):
            summary = summaries[(run.name, i)]
            metrics = _metrics(run_dir(out, run, i))
            evaluated = [m for m in metrics if m["test_top1"] is not None]  # eval_every skips
            records.append(
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
                    "curve": [_default_head(m["test_top1"]) for m in evaluated],
                    "curve_epochs": [m["epoch"] for m in evaluated],
                }
            )
    first = summaries[(teacher_run or next(n for n in TRAINING_ORDER if n in runs), 0)]
    return {
        "preset": preset,
        "evaluated_on": first["evaluated_on"],
        "seeds": seeds,
        "runs_trained": runs,
        "teacher": first["teacher"] if teacher_run else None,
        "command": command,
        "hardware": first["hardware"],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "rows": rows,
        "runs": records,
        "checks": checks(rows),
    }


def _default_head(top1: dict[str, float]) -> float:
    """The accuracy a user gets from the model as is: ``avg`` if distilled, else ``cls``."""
    return top1.get("avg", top1["cls"])


def checks(rows: list[dict]) -> dict[str, bool]:
    """The paper's claims the table can confirm or refute, and the target best row ≥ 70 %.

    Only the checks whose rows are all in ``rows`` are made, so a matrix of a
    subset of the runs (see :func:`reproduce`'s ``runs``) is judged on what it
    has: the hard-distillation check needs A and a hard row (C or E), the two
    E checks need E, and the ≥ 70 % check is always made.
    """
    by = {(r["run"], r["head"]): r["top1"] for r in rows}
    students = [r["top1"] for r in rows if r["run"] != "teacher"]
    hard = [r["top1"] for r in rows if r["teacher"] == "hard"]
    result = {}
    if hard and ("A", "cls") in by:
        result["every hard-distillation row ≥ no distillation"] = min(hard) >= by[("A", "cls")]
    if ("E", "avg") in by:
        e_avg = by[("E", "avg")]
        result["E dist head within 2 points of E"] = abs(by[("E", "dist")] - e_avg) <= 2.0
        result["E (class + distillation, hard) best student row"] = e_avg == max(students)
    result["best student row ≥ 70 %"] = max(students) >= 70.0
    return result


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
    """The report's table, every head of D and E, the runs and the checks, as Markdown.

    A matrix of a subset of the runs (``runs_trained`` other than ``ABCDE``;
    absent in older ``results.json`` files, meaning all five) says so under
    the title, and its tables hold only the rows of the trained runs.
    """
    hw = results["hardware"]
    trained = results.get("runs_trained", ALL_RUNS)
    teacher = f"teacher `{results['teacher']}`" if results["teacher"] else "no teacher"
    subset = "" if trained == ALL_RUNS else f" Only runs {', '.join(trained)} were trained."
    lines = [
        f"# The distillation matrix, preset `{results['preset']}`",
        "",
        f"`{' '.join(results['command'])}` — {results['date']}, {hw['cpu']}, "
        f"{hw['threads']} threads, torch {hw['torch']}; {results['evaluated_on']} top-1, "
        f"mean of {results['seeds']} seed(s); {teacher}.{subset}",
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
