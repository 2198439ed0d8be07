"""Step time of the cpu-proxy student with token dropping (``token_keep``), interleaved.

For each image size and keep rate: the median time of a full training step
(student forward on both heads, cross-entropy, backward, AdamW step; batch 128,
random data, no teacher) over interleaved rounds, and img/s. The teacher's
forward does not change with token dropping (it always sees the whole image),
so this is the part of the step the lever acts on.

    python benchmarks/token_drop.py [--sizes 16 32] [--keep 1 0.75 0.5 0.25] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from deit.hardware import hardware
from deit.models import create_model


def step_seconds(model, optimizer, x, y) -> float:
    """One training step of ``model`` on ``x``, ``y``; its wall time."""
    start = time.perf_counter()
    cls, dist = model(x)
    loss = F.cross_entropy(cls, y) + F.cross_entropy(dist, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    """Time every (size, keep) pair in interleaved rounds and print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--keep", type=float, nargs="+", default=[1.0, 0.75, 0.5, 0.25])
    parser.add_argument("--student", default="deit_micro_distilled_patch4_32")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per round and pair")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the measurements here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    pairs = [(size, keep) for size in args.sizes for keep in args.keep]
    setups, times = {}, {pair: [] for pair in pairs}
    for size, keep in pairs:
        model = create_model(args.student, token_keep=keep, dynamic_img_size=True).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        x = torch.randn(args.batch_size, 3, size, size)
        y = torch.randint(0, 10, (args.batch_size,))
        for _ in range(2):  # warm-up
            step_seconds(model, optimizer, x, y)
        setups[(size, keep)] = (model, optimizer, x, y)
    for _ in range(args.rounds):
        for pair in pairs:
            times[pair] += [step_seconds(*setups[pair]) for _ in range(args.steps)]
    rows = []
    for size, keep in pairs:
        median = statistics.median(times[(size, keep)])
        base = statistics.median(times[(size, 1.0)]) if (size, 1.0) in times else median
        tokens = round((size // 4) ** 2 * keep)
        rows.append({"img_size": size, "token_keep": keep, "patch_tokens": tokens,
                     "step_ms": 1000 * median, "img_per_s": args.batch_size / median,
                     "speedup": base / median,
                     "step_ms_min": 1000 * min(times[(size, keep)]),
                     "step_ms_max": 1000 * max(times[(size, keep)])})  # fmt: skip
    print("| img px | keep | patch tokens | step ms (median; min–max) | img/s | × keep 1 |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['img_size']} | {r['token_keep']} | {r['patch_tokens']} | "
              f"{r['step_ms']:.1f} ({r['step_ms_min']:.1f}–{r['step_ms_max']:.1f}) | "
              f"{r['img_per_s']:.0f} | {r['speedup']:.2f} |")  # fmt: skip
    if args.json:
        record = {"command": "python benchmarks/token_drop.py", "args": vars(args),
                  "hardware": hardware(), "date": time.strftime("%Y-%m-%d %H:%M UTC",
                  time.gmtime()), "rows": rows}  # fmt: skip
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
