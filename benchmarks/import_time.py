"""What a fresh `deit train` process pays before its first step: importing torch, then
TorchDynamo (which every torch.optim optimizer imports when it is built).

Each of ``--runs`` fresh interpreters imports torch, then ``torch._dynamo``, and prints both
times; the suite's process-starting tests pay this once per process.
Usage: python benchmarks/import_time.py [--runs 5]
"""

import argparse
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

CHILD = """
import time
start = time.perf_counter()
import torch
torch_done = time.perf_counter()
import torch._dynamo
print(f"{torch_done - start:.2f} {time.perf_counter() - torch_done:.2f}")
"""


def main() -> int:
    """Time the two imports in fresh interpreters; print one line per run and the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    when = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "?")
    print(f"# python benchmarks/import_time.py --runs {args.runs}, {when}, {cpu}")
    rows = []
    for _ in range(args.runs):
        out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True)
        rows.append(tuple(map(float, out.stdout.split())))
        print(f"import torch {rows[-1][0]:.2f} s, then torch._dynamo {rows[-1][1]:.2f} s")
    torch_s, dynamo_s = (sorted(column)[len(column) // 2] for column in zip(*rows, strict=True))
    print(f"median: torch {torch_s:.2f} s, torch._dynamo {dynamo_s:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
