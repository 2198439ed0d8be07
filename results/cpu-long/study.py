"""Does distillation's advantage grow with training length? The gaps at 1× and 3× budget.

Reads two matrices made with the same recipe, one at the cpu-proxy budget (1×) and one
three times as long (the cpu-long preset, 3×), each with runs A, B and E and the same
seeds, and writes ``gaps.md``, ``gaps.json`` and ``curves.png`` next to this file (or
``--out``). Decided before the runs (see README.md):

- each run's accuracy is its default head (E: avg of the two heads; A, B: class head);
- a gap X−Y is taken per seed (X and Y trained with the same seed), then averaged;
  its spread is half the range over seeds;
- the change of a gap with training length is Δ = gap(3×) − gap(1×); it *grows* if
  Δ > s, *shrinks* if Δ < −s, and otherwise *stays within noise*, where s is the sum
  of the two half-ranges (with two seeds, only changes larger than the seed noise
  can be called).

    python results/cpu-long/study.py [--short results/cpu-proxy] [--long results/cpu-long]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from deit.plots import curve_epochs

GAPS = (("E", "A"), ("B", "A"), ("E", "B"))
RUNS = "ABE"


def accuracies(matrix: dict) -> dict[tuple[str, int], float]:
    """Default-head test top-1 of every run of a ``results.json``, by (run, seed index)."""
    return {
        (r["run"], r["seed_index"]): r["top1"].get("avg", r["top1"]["cls"])
        for r in matrix["runs"]
        if r["run"] in RUNS
    }


def half_range(values: list[float]) -> float:
    """Half the range of ``values`` (0 for one value)."""
    return (max(values) - min(values)) / 2


def gap(top1: dict[tuple[str, int], float], x: str, y: str, seeds: list[int]) -> dict:
    """The gap x−y per seed, its mean and half-range."""
    per_seed = [top1[(x, i)] - top1[(y, i)] for i in seeds]
    mean = statistics.mean(per_seed)
    return {"per_seed": per_seed, "mean": mean, "half_range": half_range(per_seed)}


def verdict(short: dict, long: dict) -> tuple[float, float, str]:
    """Δ = long − short mean gap, the noise bound s, and grows/shrinks/stays within noise."""
    delta = long["mean"] - short["mean"]
    noise = short["half_range"] + long["half_range"]
    word = "grows" if delta > noise else "shrinks" if delta < -noise else "stays within noise"
    return delta, noise, word


def study(short: dict, long: dict) -> dict:
    """The gaps at both budgets and their change, from two ``results.json`` contents."""
    a, b = accuracies(short), accuracies(long)
    seeds = sorted({i for (_, i) in a} & {i for (_, i) in b})
    if not seeds or any((r, i) not in t for t in (a, b) for r in RUNS for i in seeds):
        raise SystemExit("both matrices need runs A, B and E with the same seeds")
    rows = []
    for x, y in GAPS:
        g1, g3 = gap(a, x, y, seeds), gap(b, x, y, seeds)
        delta, noise, word = verdict(g1, g3)
        rows.append({"gap": f"{x}-{y}", "1x": g1, "3x": g3, "delta": delta, "noise": noise,
                     "verdict": word})  # fmt: skip
    means = {budget: {r: statistics.mean(t[(r, i)] for i in seeds) for r in RUNS}
             for budget, t in (("1x", a), ("3x", b))}  # fmt: skip
    epochs = {"1x": short["runs"][0]["epochs"], "3x": long["runs"][0]["epochs"]}
    return {"seeds": seeds, "top1_mean": means, "gaps": rows, "epochs": epochs}


def markdown(result: dict, short_cmd: str, long_cmd: str) -> str:
    """The gap table as Markdown."""
    lines = [
        "# Distillation's gaps at 1× and 3× the cpu-proxy budget",
        "",
        f"1×: `{short_cmd}`; 3×: `{long_cmd}`; seeds {result['seeds']}; test top-1, default head.",
        "",
        "| run | 1× | 3× |",
        "|---|---:|---:|",
    ]
    for r in RUNS:
        one, three = result["top1_mean"]["1x"][r], result["top1_mean"]["3x"][r]
        lines.append(f"| {r} | {one:.2f} % | {three:.2f} % |")
    lines += ["", "| gap | 1× (per seed) | 3× (per seed) | Δ = 3× − 1× | noise s | verdict |",
              "|---|---:|---:|---:|---:|---|"]  # fmt: skip
    for g in result["gaps"]:
        cells = [
            f"{g[b]['mean']:+.2f} ± {g[b]['half_range']:.2f} ("
            + ", ".join(f"{v:+.2f}" for v in g[b]["per_seed"])
            + ")"
            for b in ("1x", "3x")
        ]
        change = f"{g['delta']:+.2f} | {g['noise']:.2f} | {g['verdict']}"
        lines.append(f"| {g['gap']} | {cells[0]} | {cells[1]} | {change} |")
    return "\n".join(lines) + "\n"


def plot(short: dict, long: dict, path: Path) -> None:
    """Curves of A, B and E at both budgets against training length (1 = the cpu-proxy run)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    colours = {"A": "C0", "B": "C1", "E": "C4"}
    unit = short["runs"][0]["epochs"]
    for matrix, style, budget in ((short, "--", "1×"), (long, "-", "3×")):
        for run in matrix["runs"]:
            if run["run"] not in RUNS:
                continue
            x = [e / unit for e in curve_epochs(run)]  # evaluated epochs only (eval_every)
            label = f"{run['run']}, {budget}" if run["seed_index"] == 0 else None
            ax.plot(x, run["curve"], style, color=colours[run["run"]], alpha=0.9 if label else 0.45,
                    label=label)  # fmt: skip
    ax.set_xlabel("training length (1 = the cpu-proxy run's epochs)")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title("Runs A (labels), B (soft, no labels), E (tokens, hard): every seed")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    """Read both matrices, write gaps.md, gaps.json and curves.png, print the table."""
    here = Path(__file__).parent
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", default="results/cpu-proxy", help="the 1× matrix")
    parser.add_argument("--long", default=str(here), help="the 3× matrix")
    parser.add_argument("--out", default=str(here))
    args = parser.parse_args()
    short = json.loads((Path(args.short) / "results.json").read_text())
    long = json.loads((Path(args.long) / "results.json").read_text())
    result = study(short, long)
    out = Path(args.out)
    text = markdown(result, " ".join(short["command"]), " ".join(long["command"]))
    (out / "gaps.md").write_text(text)
    (out / "gaps.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(short, long, out / "curves.png")
    print(text)


if __name__ == "__main__":
    main()
