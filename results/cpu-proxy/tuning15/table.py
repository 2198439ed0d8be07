"""The table of issue 15's validation runs, from their run directories (nothing typed by hand).

For the preset's own tuning run (../tuning/t5) and each run under this folder: what it
changes from issue 5's cpu-proxy preset (t5), its epochs, its training cost and the validation top-1
(avg head) by epoch ("–": not evaluated, see eval_every), at the end, and of the weights' EMA
where it was kept. Cost is in units of that preset's training compute: each epoch's
student step time at its image size and keep rate (benchmarks/token_drop, idle machine, 2
threads, batch 128; two files) plus the teacher, data and optimizer time that every step pays
(81 ms: the bf16 teacher's 73.4 ms, data 2.3 ms and AdamW about 5 ms, from the step breakdown in
benchmarks/RESULTS.md), summed over the epochs, divided by the preset's sum. Batch 64 is costed
as batch 128 (its own step time is not in the benchmark).

    python results/cpu-proxy/tuning15/table.py [--out table.md]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from deit.config import config_from_dict

HERE = Path(__file__).parent
# The step table, then keep 0.125 measured later the same way (its keep 0.25 row agrees: 149.9 ms
# against 150.7); for a pair in both files the first file's measurement is used.
STEP_FILES = ("cpu-2026-11-30.json", "cpu-2026-11-30-keep0125.json")
STEPS = [
    row
    for name in STEP_FILES
    for row in json.loads((HERE.parents[2] / "benchmarks/token_drop" / name).read_text())["rows"]
]
BASELINE = HERE.parent / "tuning" / "t5"  # the preset itself, tuned for issue 5 (NOTES.md)
SHARED_MS = 73.4 + 2.3 + 5.0  # teacher (bf16), data and augmentation, optimizer per step
SHOWN = ("epochs", "img_size_schedule", "token_keep", "token_keep_schedule", "batch_size", "lr",
         "weight_decay", "label_smoothing", "ema_decay", "embed_dim", "depth", "num_heads",
         "distillation_alpha", "distillation_tau", "warmup_epochs", "eval_every")  # fmt: skip


def step_ms(size: int, keep: float) -> float:
    """The measured student step at ``size`` px keeping ``keep`` of the tokens, plus shared."""
    for row in STEPS:
        if row["img_size"] == size and abs(row["token_keep"] - keep) < 1e-9:
            return row["step_ms"] + SHARED_MS
    raise KeyError(f"no step time measured at {size} px, keep {keep}")


def cost(config) -> float:
    """Training compute of ``config`` in ms-epochs (sum over epochs of one step's time)."""
    return sum(
        step_ms(config.img_size_at(e), config.token_keep_at(e)) for e in range(config.epochs)
    )


def changes(config, preset) -> str:
    """The fields of ``config`` that differ from ``preset``, as ``key=value``."""
    out = []
    for key in SHOWN:
        value, base = getattr(config, key), getattr(preset, key)
        if value != base:
            if isinstance(value, tuple):
                value = (
                    ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) or "()"
                )
            out.append(f"{key}={value}")
    return " ".join(out)


def main() -> None:
    """Print (and with --out write) the Markdown table of every finished or running run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="also write the table here")
    args = parser.parse_args()
    # The reference is issue 5's preset (t5's config), fixed: the preset itself changed in issue 15.
    preset = config_from_dict(json.loads((BASELINE / "config.json").read_text()))
    unit = cost(preset)
    header = "| run | changes from t5 | cost | val top-1 (avg head) by epoch | final | EMA |"
    lines = [header, "|---|---|---:|---|---:|---:|"]
    runs = sorted(p for p in HERE.iterdir() if (p / "config.json").is_file())
    for run in [BASELINE, *runs]:
        config = config_from_dict(json.loads((run / "config.json").read_text()))
        path = run / "metrics.jsonl"
        metrics = (
            [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
        )
        curve = " ".join(f"{m['test_top1']['avg']:.1f}" if m["test_top1"] else "–" for m in metrics)
        done = (run / "summary.json").is_file()
        final = f"**{metrics[-1]['test_top1']['avg']:.2f}**" if done else "unfinished"
        ema = metrics[-1].get("test_top1_ema") if done else None
        ema_cell = f"{ema['avg']:.2f}" if ema else "–"
        name = f"{run.name} (the preset, issue 5)" if run == BASELINE else run.name
        try:
            relative = f"{cost(config) / unit:.2f}"
        except KeyError:  # a keep rate or size the step benchmark has not measured
            relative = "–"
        lines.append(f"| {name} | {changes(config, preset)} | {relative} | "
                     f"{curve} | {final} | {ema_cell} |")  # fmt: skip
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
