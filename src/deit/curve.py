"""``data_curve(preset, out, train_sizes)``: where a teacher pays, over training-set sizes.

DeiT's teacher is meant to help where data is scarce. This trains the
matrix runs (A and E by default) of one preset on class-balanced subsets of
N images (``train_size``, one ``subset_seed`` for all, so the subsets are
nested), at equal compute: every run sees the same ``budget_images`` (by
default the preset's epochs × the whole training set), so a 1,000-image run
costs what the full-size run costs. With ``train_teacher`` each subset gets a
teacher trained by ``deit teacher`` on exactly its images (students check
its subset's hash); at full size that is the shipped teacher when one exists
for the data set (``cifar10-teacher``: ``deit teacher``'s defaults on all
50,000 images). Without it every student uses the preset's teacher, which
may have seen images outside the subset: the table says so.

Each size is an ordinary matrix directory (``out/n1000`` …, see
:func:`deit.matrix.reproduce`), so the study resumes and skips finished
runs, and runs added later (``--runs C`` at one size) join the table.
``results.md`` / ``results.json`` hold size × run × head (mean ± half the
range over seeds), the teacher's accuracy and E − A per size with its
spread; ``sizes.png`` plots top-1 against images per class.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from deit.config import ConfigError, apply_overrides, from_preset, refuse_epochs_with_budget
from deit.data.subsets import check_size, held_out_count
from deit.inputs import full_train_size
from deit.matrix import _command, reproduce
from deit.matrix_table import RUNS, parse_runs, run_dir
from deit.models.teacher_files import SHIPPED_TEACHERS

HEADS = ("cls", "dist", "avg")
GOAL = 5.0  # points of E − A the study looks for, beyond both rows' spread


def parse_sizes(text: str | list[int]) -> list[int]:
    """Training-set sizes from ``"1000,5000"`` (or a list): positive, sorted, each once."""
    try:
        sizes = [int(v) for v in (text.split(",") if isinstance(text, str) else text)]
    except ValueError:
        raise ConfigError(f"train sizes must be whole numbers, e.g. 1000,5000: {text!r}") from None
    if not sizes or min(sizes) <= 0 or len(set(sizes)) != len(sizes):
        raise ConfigError(f"train sizes must be positive and distinct, got {text!r}")
    return sorted(sizes)


def data_curve(
    preset: str,
    out: str | Path,
    train_sizes: str | list[int],
    *,
    runs: str = "AE",
    seeds: int = 1,
    train_teacher: bool = False,
    data_dir: str | None = None,
    download: bool = True,
    overrides: tuple[str, ...] = (),
) -> dict:
    """Train ``runs`` of ``preset`` at every size of ``train_sizes``; write the curve's tables.

    Every size and option is checked before any training (``ConfigError``:
    a size above the training set, below its class count or below one batch,
    epochs given with ``budget_images``, an unknown run). Calling it again on
    ``out`` skips the finished runs. Returns the ``results.json`` content.
    """
    out, sizes, runs = Path(out), parse_sizes(train_sizes), parse_runs(runs)
    refuse_epochs_with_budget({}, list(overrides))
    if any(o.partition("=")[0] == "train_size" for o in overrides):
        raise ConfigError("give the sizes with train_sizes (--train-sizes), not train_size=")
    base = apply_overrides(from_preset(preset, data_dir=data_dir, download=download), overrides)
    full, classes = full_train_size(base)
    for size in sizes:
        try:
            check_size(size, full, classes)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        trained = size - held_out_count(size, classes) if base.validation else size
        if trained < base.batch_size:  # else the first student would fail after its teacher
            held = " after its validation tenth" if base.validation else ""
            raise ConfigError(f"train size {size} makes no batch of {base.batch_size}{held}: use "
                              "larger sizes or a smaller --set batch_size=")  # fmt: skip
    budget = base.budget_images or base.epochs * full
    for number, size in enumerate(sizes, start=1):
        print(f"[curve] size {number}/{len(sizes)}: {size} images, budget {budget} images seen")
        whole = size == full
        shipped = whole and not base.validation and _shipped_teacher(base.dataset)
        point = (*overrides, f"train_size={0 if whole else size}", f"budget_images={budget}")
        reproduce(
            preset, out / f"n{size}", data_dir=data_dir, download=download, seeds=seeds,
            train_teacher=train_teacher and not shipped, overrides=point, runs=runs,
        )  # fmt: skip
    results = collect_curve(out, preset, budget, train_teacher, full, classes)
    write_curve(out, results)
    return results


def _shipped_teacher(dataset: str) -> bool:
    """Whether a shipped teacher was trained by ``deit teacher`` on all of ``dataset``."""
    return f"{dataset}-teacher" in SHIPPED_TEACHERS


def _spread(values: list[float]) -> float:
    """Half the range over seeds (0 for one seed)."""
    return (max(values) - min(values)) / 2


def collect_curve(
    out: Path, preset: str, budget: int, trained_teachers: bool, full: int, classes: int
) -> dict:
    """Every finished run under ``out/n*/`` gathered by size, run and head; E − A per size."""
    points = []
    for where in sorted(out.glob("n*/reproduce.json"), key=lambda p: int(p.parent.name[1:])):
        size = int(where.parent.name[1:])
        command = json.loads(where.read_text()).get("command")  # the last one that trained it
        point = {"size": size, "per_class": size / classes, "runs": {}, "teacher": None,
                 "command": command}  # fmt: skip
        for run in RUNS:
            summaries = []
            for i in range(100):
                path = run_dir(where.parent, run, i) / "summary.json"
                if not path.is_file():
                    break
                summaries.append(json.loads(path.read_text()))
            if not summaries:
                continue
            point["runs"][run.name] = _run_entry(summaries)
            if point["teacher"] is None and summaries[0]["teacher_top1"] is not None:
                point["teacher"] = _teacher_entry(where.parent, summaries[0], size, full)
        if point["runs"]:
            point["e_minus_a"] = _gap(point["runs"])
            points.append(point)
    return {
        "preset": preset,
        "budget_images": budget,
        "train_teacher": trained_teachers,
        "full_train_size": full,
        "classes": classes,
        "command": _command(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "hardware": _first_hardware(out),
        "points": points,
    }


def _run_entry(summaries: list[dict]) -> dict:
    """One run at one size over its seeds: every head's mean and half-range, the wall times."""
    heads = {}
    for head in HEADS:
        values = [s["test_top1"][head] for s in summaries if head in s["test_top1"]]
        if len(values) == len(summaries):
            heads[head] = {"mean": statistics.mean(values), "spread": _spread(values),
                           "seeds": values}  # fmt: skip
    default = "avg" if "avg" in heads else "cls"
    return {
        "heads": heads,
        "default_head": default,
        "evaluated_on": summaries[0]["evaluated_on"],
        "epochs": summaries[0]["epochs"],
        "wall_minutes": [s["wall_seconds"] / 60 for s in summaries],
        "train_set": summaries[0].get("train_set"),
    }


def _teacher_entry(point_dir: Path, summary: dict, size: int, full: int) -> dict:
    """The teacher of one size: its accuracy on the evaluation set, and what images it saw."""
    trained = point_dir / "teacher" / "summary.json"
    if trained.is_file():
        seen = json.loads(trained.read_text()).get("train_set", {})
        source = f"trained by deit teacher on these {seen.get('images', size)} images"
        own = True
    else:
        own = size == full
        source = f"{summary['teacher']} (" + (
            "trained on these images)" if own else f"external: saw all {full} training images)"
        )
    return {"top1": summary["teacher_top1"], "source": source, "own_images": own}


def _gap(runs: dict) -> dict | None:
    """E − A of the default heads, per seed index, as mean ± half-range, and the goal's check."""
    if "A" not in runs or "E" not in runs:
        return None
    a, e = (runs[n]["heads"][runs[n]["default_head"]] for n in "AE")
    pairs = list(zip(e["seeds"], a["seeds"], strict=False))
    gaps = [x - y for x, y in pairs]
    mean = e["mean"] - a["mean"]
    return {
        "mean": mean,
        "per_seed": gaps,
        "spread": _spread(gaps),
        # one seed has no spread to be beyond: the goal needs two or more of each run
        "beyond_both_spreads": len(pairs) > 1 and mean > a["spread"] + e["spread"],
        "goal_met": len(pairs) > 1 and mean >= GOAL and mean > a["spread"] + e["spread"],
    }


def _first_hardware(out: Path) -> dict | None:
    """The hardware record of the first finished run (every run records its own)."""
    for path in sorted(out.glob("n*/*/summary.json")):
        hardware = json.loads(path.read_text()).get("hardware")
        if hardware and "cpu" in hardware:
            return hardware
    return None


def curve_markdown(results: dict) -> str:
    """The study as Markdown: one row per size, a column per run (default head), E − A."""
    names = [n for n in "ABCDE" if any(n in p["runs"] for p in results["points"])]
    hw = results["hardware"] or {}
    lines = [
        f"# Where the teacher pays: preset `{results['preset']}` over training-set sizes",
        "",
        f"Gathered by `{' '.join(results['command'])}` — {results['date']}, "
        f"{hw.get('cpu', '?')}, {hw.get('threads', '?')} threads. Every run sees "
        f"{results['budget_images']:,} images (equal compute); {_drawn_from(results)}. "
        "Cells: mean ± half the range over seeds (seeds in brackets); distilled runs by "
        "their avg head.",
        "",
        "| N | per class | " + " | ".join(names) + " | teacher | E − A (per seed) |",
        "|---:|---:|" + "---:|" * len(names) + "---:|---:|",
    ]
    for p in results["points"]:
        cells = []
        for name in names:
            run = p["runs"].get(name)
            head = run["heads"][run["default_head"]] if run else None
            cells.append(f"{head['mean']:.2f} ± {head['spread']:.2f} ({len(head['seeds'])})"
                         if head else "–")  # fmt: skip
        teacher = f"{p['teacher']['top1']:.2f}" if p["teacher"] else "–"
        gap = p.get("e_minus_a")
        gap_cell = (f"{gap['mean']:+.2f} ± {gap['spread']:.2f}"
                    + (" **≥ goal**" if gap["goal_met"] else "")) if gap else "–"  # fmt: skip
        lines.append(f"| {p['size']:,} | {p['per_class']:g} | " + " | ".join(cells)
                     + f" | {teacher} | {gap_cell} |")  # fmt: skip
    lines += ["", "## Every head", "", "| N | run | cls | dist | avg | epochs | minutes |"]
    lines += ["|---:|---|---:|---:|---:|---:|---|"]
    for p in results["points"]:
        for name, run in p["runs"].items():
            heads = " | ".join(
                f"{run['heads'][h]['mean']:.2f} ± {run['heads'][h]['spread']:.2f}"
                if h in run["heads"] else "–" for h in HEADS
            )  # fmt: skip
            minutes = ", ".join(f"{m:.1f}" for m in run["wall_minutes"])
            lines.append(f"| {p['size']:,} | {name} | {heads} | {run['epochs']} | {minutes} |")
    lines += ["", "## Commands", "", "What last trained each size (its `reproduce.json`):", ""]
    for p in results["points"]:
        if p.get("command"):
            lines.append(f"- N = {p['size']:,}: `{' '.join(p['command'])}`")
    lines += ["", "## Teachers", ""]
    for p in results["points"]:
        if p["teacher"]:
            t = p["teacher"]
            lines.append(f"- N = {p['size']:,}: {t['top1']:.2f} %, {t['source']}")
    return "\n".join(lines) + "\n"


def _drawn_from(results: dict) -> str:
    """Where the N images come from and where the students were scored, in words."""
    places = {run["evaluated_on"] for p in results["points"] for run in p["runs"].values()}
    if places <= {"test"}:
        full, classes = results["full_train_size"], results["classes"]
        return f"N images drawn class-balanced from {full:,}, {classes} classes; test set scores"
    return (f"N images drawn class-balanced from the training set, {results['classes']} "
            "classes; a class-balanced tenth of each subset held out and scored (validation, "
            "not test)")  # fmt: skip


def write_curve(out: Path, results: dict) -> None:
    """Write ``results.json``, ``results.md`` and, with matplotlib, ``sizes.png``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(curve_markdown(results))
    try:
        from deit.plots import plot_sizes
    except ImportError:
        print("[curve] matplotlib is not installed: no plot (pip install 'deit[plots]')")
        return
    plot_sizes(results, out / "sizes.png")
