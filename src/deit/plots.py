"""Figures of a reproduced matrix: accuracy curves and the table against the report.

Needs matplotlib (the ``plots`` extra); the rest of the package does not.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import torch

matplotlib.use("Agg")  # files only; never a window
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def curve_epochs(run: dict) -> list[int]:
    """The epoch of each point of a run record's ``curve`` (1, 2, … in older results.json)."""
    return run["curve_epochs"] if "curve_epochs" in run else list(range(1, len(run["curve"]) + 1))


def plot_curves(results: dict, path: Path) -> None:
    """Test top-1 per epoch, one colour per run (the default head: avg if distilled, else cls).

    Repeats of a run with other seeds share its colour, dashed and unlabelled,
    so the legend stays one line per run however many seeds there are. Each
    point sits at its epoch (a run with ``eval_every`` above 1 has fewer points).
    """
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours: dict[str, str] = {}
    for run in results["runs"]:
        epochs = curve_epochs(run)
        first = run["run"] not in colours
        colour = colours.setdefault(run["run"], f"C{len(colours)}")
        label = f"{run['run']}: {run['description']}" if first else None
        style = "-" if first else "--"
        ax.plot(epochs, run["curve"], style, color=colour, marker="o", markersize=4, label=label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{results['evaluated_on']} top-1 (%)")
    seeds = f", {results['seeds']} seeds (later ones dashed)" if results["seeds"] > 1 else ""
    ax.set_title(f"DeiT students, preset {results['preset']}{seeds}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_sizes(results: dict, path: Path) -> None:
    """Top-1 against images per class (log axis): a line per run (default head) and the teacher.

    One point per training-set size of a :func:`deit.curve.data_curve` study, at
    the mean over seeds with an error bar of half the range.
    """
    fig, ax = plt.subplots(figsize=(7, 4.5))
    points = results["points"]
    for i, name in enumerate(n for n in "ABCDE" if any(n in p["runs"] for p in points)):
        xs, ys, errs = [], [], []
        for p in points:
            if name in p["runs"]:
                run = p["runs"][name]
                head = run["heads"][run["default_head"]]
                xs.append(p["per_class"]), ys.append(head["mean"]), errs.append(head["spread"])
        ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=3, color=f"C{i}", label=f"run {name}")
    teachers = [(p["per_class"], p["teacher"]["top1"]) for p in points if p["teacher"]]
    if teachers:
        ax.plot(*zip(*teachers, strict=True), "k--", marker="s", label="teacher")
    ax.set_xscale("log")
    ax.set_xlabel("training images per class")
    evaluated = next(iter(points[0]["runs"].values()))["evaluated_on"] if points else "test"
    ax.set_ylabel(f"{evaluated} top-1 (%)")
    ax.set_title(f"Where the teacher pays: preset {results['preset']}, equal compute")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_table(results: dict, path: Path) -> None:
    """Bars of each row of the report's table: this matrix next to the report's number."""
    rows = results["rows"]
    names = [r["method"].replace("DeiT⚗, ", "DeiT-dist, ") + _which(r) for r in rows]
    ours = [r["top1"] for r in rows]
    report = [r["report_top1"] or 0.0 for r in rows]
    fig, ax = plt.subplots(figsize=(8, 5))
    y = range(len(rows))
    ax.barh([i + 0.2 for i in y], ours, height=0.4, label=f"deit, preset {results['preset']}")
    ax.barh([i - 0.2 for i in y], report, height=0.4, label="student report")
    for i, value in enumerate(ours):
        ax.text(value + 0.5, i + 0.2, f"{value:.1f}", va="center", fontsize=8)
    ax.set_yticks(list(y), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 105)
    ax.set_xlabel(f"CIFAR-10 {results['evaluated_on']} top-1 (%)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _which(row: dict) -> str:
    """`` (E, dist)``: the run and head a row shows."""
    return "" if row["run"] == "teacher" else f" ({row['run']}, {row['head']})"


def plot_attention(figure: dict, path: Path) -> None:
    """Each image, then each token's attention map laid over it; predictions as captions."""
    maps = figure["maps"]
    pixels = figure["pixels"].permute(0, 2, 3, 1).numpy()
    classes, labels = figure["classes"], figure["labels"]
    rows, cols = len(pixels), 1 + len(maps)
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.5 * rows), squeeze=False)
    size = pixels.shape[1]
    for i in range(rows):
        said = [f"{who}: {classes[int(p[i])]}" for who, p in figure["predictions"].items()]
        guesses = "\n".join(", ".join(said[k : k + 2]) for k in range(0, len(said), 2))
        axes[i, 0].imshow(pixels[i])
        axes[i, 0].set_title(f"true: {classes[int(labels[i])]}", fontsize=8)
        axes[i, 0].set_xlabel(guesses, fontsize=6, wrap=True)
        for j, (name, grid) in enumerate(maps.items(), start=1):
            heat = torch.nn.functional.interpolate(
                grid[i][None, None], size=(size, size), mode="bilinear", align_corners=False
            )[0, 0].numpy()
            axes[i, j].imshow(pixels[i])
            axes[i, j].imshow(heat, cmap="inferno", alpha=0.6)
            if i == 0:
                axes[i, j].set_title(f"{name}", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{figure['student']}: where the tokens attend", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / (2.5 * rows)))  # room for the title
    fig.savefig(path, dpi=110)
    plt.close(fig)
