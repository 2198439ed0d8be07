"""Why a torchrun rank aborted at exit, and that importing torch.distributed.nn first fixes it.

Each job is two gloo ranks (torchrun) that build a DistributedDataParallel model, gather a
few Python objects and leave, as a `deit train` rank does. With ``late`` the ranks import
``torch.distributed.nn`` the way DDP does, after the process group exists: its functions'
default arguments then hold the group, its gloo threads live into the interpreter's
teardown, and one releasing a finished gather's tensors there aborts the process
("terminate called without an active exception"). With ``early`` (what
``deit.distributed.session`` does) it is imported before the group exists, and the
group's threads end when it is destroyed; ``old`` is ``late`` without the collection
``session`` now does before destroying. A busy-loop process runs beside the jobs, as the
suite's other work does, to widen the race. Each rank reports its thread count after
destroying the group (1: gloo's threads are gone).

    python benchmarks/gloo_exit.py [--jobs N] [--out DIR]

It prints a markdown report and writes it to ``--out``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
from pathlib import Path

RANK = """
import gc, os, sys
import torch
import torch.distributed as dist
early, collect = sys.argv[1] == "early", sys.argv[1] != "old"
if early:
    import torch.distributed.nn  # noqa: F401
dist.init_process_group("gloo")


def train():  # as a deit run: the model lives in the training function
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 2))
    for _ in range(20):
        out = [None] * 2
        dist.all_gather_object(out, {"rank": dist.get_rank(), "payload": list(range(100))})


train()
if collect:
    gc.collect()
dist.destroy_process_group()
print("threads", len(os.listdir("/proc/self/task")), file=sys.stderr, flush=True)
"""
VARIANTS = {
    "old": "after the group exists (as DDP does), no collection (deit before 0779af3)",
    "late": "after the group exists; a collection before destroying",
    "early": "before the group exists; a collection before destroying (deit since 0779af3)",
}


def run_jobs(variant: str, jobs: int, script: Path) -> tuple[int, int, set[int]]:
    """(jobs that failed, of those the ones whose stderr shows the abort, the thread counts
    ranks had left after destroying their group)."""
    failed = aborted = 0
    threads: set[int] = set()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for _ in range(jobs):
        done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                               "--nproc_per_node=2", str(script), variant],
                              capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
        failed += done.returncode != 0
        aborted += "terminate called without an active exception" in done.stderr
        threads |= {int(line.split()[-1]) for line in done.stderr.splitlines()
                    if line.startswith("threads")}  # fmt: skip
    return failed, aborted, threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=15)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/gloo_exit"))
    args = parser.parse_args()
    started = datetime.datetime.now(datetime.UTC)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
                .splitlines() if line.startswith("model name")), "?")  # fmt: skip
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        with tempfile.TemporaryDirectory() as tmp:
            script = Path(tmp, "rank.py")
            script.write_text(RANK)
            counts = {v: run_jobs(v, args.jobs, script) for v in VARIANTS}
    finally:
        hog.kill()
    import torch

    lines = [f"# Gloo ranks at exit, {started:%Y-%m-%d %H:%M} UTC", "",
             f"{cpu}, {os.cpu_count()} CPUs, torch {torch.__version__}, a busy loop beside; "
             f"`python benchmarks/gloo_exit.py --jobs {args.jobs}`", "",
             "| torch.distributed.nn imported | jobs | failed | of them aborted at exit "
             "| a rank's threads after destroying the group |",
             "|---|---:|---:|---:|---|"]  # fmt: skip
    for variant, (failed, aborted, threads) in counts.items():
        left = ", ".join(map(str, sorted(threads))) or "-"
        lines.append(f"| {VARIANTS[variant]} | {args.jobs} | {failed} | {aborted} | {left} |")
    report = "\n".join(lines) + "\n"
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{started:%Y-%m-%d-%H%M}.md").write_text(report)


if __name__ == "__main__":
    main()
