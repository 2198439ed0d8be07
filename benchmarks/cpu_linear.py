"""Which CPU library should run the students' linear layers: the BLAS (MKL) or oneDNN.

PyTorch's float32 ``nn.Linear`` runs on its BLAS; ``deit.models.linear`` can run the
students' linears through oneDNN instead (``cpu_linear``). This measures, in one
process and back to back (BLAS, oneDNN, BLAS, oneDNN, so a slow spell of a shared host
falls on both):

1. the square product (``--square``², float32) by each library: best of 5;
2. each student's training and inference step (``deit.bench.measure``: img/s, GFLOP/s
   and the step's attainable GFLOP/s) with each library, twice.

It prints a markdown report and writes it with the raw rows to ``--out``. Run with
``DNNL_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2`` it holds oneDNN and PyTorch to AVX2
(what an AVX2-only CPU has); the report's command line says so.

    python benchmarks/cpu_linear.py [--models NAME ...] [--out DIR]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from deit.bench import default_batch, matmul_ceiling, measure
from deit.hardware import hardware
from deit.models.linear import using_cpu_linear

MODELS = ("deit_tiny_distilled_patch4_32", "deit_small_distilled_patch4_32",
          "deit_tiny_distilled_patch16_224")  # fmt: skip
LIBRARIES = ("blas", "onednn")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--square", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/cpu_linear"))
    args = parser.parse_args()
    device = torch.device("cpu")
    machine = hardware()
    started = datetime.datetime.now(datetime.UTC)
    squares = {lib: max(matmul_ceiling(device, torch.float32, args.square, 5, lib)
                        for _ in range(args.rounds)) for lib in LIBRARIES}  # fmt: skip
    rows = []
    for name in args.models:
        for round_ in range(args.rounds):
            for lib in LIBRARIES:
                print(f"{name} {lib} round {round_ + 1}", flush=True)
                with using_cpu_linear(lib):
                    for row in measure(name, default_batch(name, device), device, 1.0):
                        rows.append({"library": lib, "round": round_ + 1, **asdict(row)})
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()  # fmt: skip
    isa = ("DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS")
    env = "".join(f"{k}={os.environ[k]} " for k in isa if k in os.environ)
    flags = "".join(f" {a}" for a in sys.argv[1:])
    lines = [
        f"# CPU linears: BLAS against oneDNN, {started:%Y-%m-%d %H:%M} UTC",
        "",
        f"{machine['cpu']} ({machine.get('cpu_family', '?')}) · {machine['threads']} threads · "
        f"torch {machine['torch']} · "
        f"commit {commit} · `{env}python benchmarks/cpu_linear.py{flags}`",
        "",
        f"Square product {args.square}², float32, best of {5 * args.rounds}: "
        + ", ".join(f"{lib} {v:.1f} GFLOP/s" for lib, v in squares.items())
        + f" (oneDNN / BLAS {squares['onednn'] / squares['blas']:.2f})",
        "",
        "| model | batch | mode | library | img/s (rounds) | GFLOP/s | attainable GFLOP/s "
        "| of attainable | oneDNN / BLAS img/s |",
        "|---|---:|---|---|---|---:|---:|---:|---:|",
    ]
    for name in args.models:
        for mode in ("train", "infer"):
            mine = {lib: [r for r in rows if r["model"] == name and r["mode"] == mode
                          and r["library"] == lib] for lib in LIBRARIES}  # fmt: skip
            best = {lib: max(r["img_per_s"] for r in mine[lib]) for lib in LIBRARIES}
            for lib in LIBRARIES:
                top = max(mine[lib], key=lambda r: r["img_per_s"])
                speeds = " / ".join(f"{r['img_per_s']:.1f}" for r in mine[lib])
                ratio = f"{best['onednn'] / best['blas']:.2f}" if lib == "onednn" else ""
                lines.append(
                    f"| {name} | {top['batch_size']} | {mode} | {lib} | {speeds} "
                    f"| {top['gflop_per_s']:.1f} | {top['attainable_gflop_per_s']:.1f} "
                    f"| {100 * top['attainable_ratio']:.1f} % | {ratio} |"
                )
    report = "\n".join(lines)
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    cpu = re.sub(r"[^a-z0-9]+", "-", machine["cpu"].lower()).strip("-")
    suffix = "-" + "-".join(os.environ[k].lower() for k in isa if k in os.environ) if env else ""
    stem = args.out / f"{started:%Y-%m-%d-%H%M}-{cpu}{suffix}"
    stem.with_suffix(".md").write_text(report + "\n")
    record = {"machine": machine, "commit": commit, "squares_gflop_per_s": squares, "rows": rows}
    stem.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
