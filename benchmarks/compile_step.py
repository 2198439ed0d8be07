"""Is torch.compile worth it for the cpu-proxy student's training step on a CPU? Eager vs compiled.

Times one full training step (both heads, cross-entropy, backward, AdamW; batch 128, random
data) of the micro student at 32 px keeping half the tokens and at 16 px with all of them,
eager and compiled, interleaved; prints the warm-up time (which holds the compile) and the
median step.

    python benchmarks/compile_step.py [THREADS]

(Output of 2026-11-30: benchmarks/compile/cpu-2026-11-30.txt.)
"""

import argparse
import statistics
import time

import torch
from token_drop import step_seconds  # this folder's token-drop benchmark: the same step

from deit.models import create_model


def make_step(size: int, keep: float, compiled: bool):
    """A function running one training step of a fresh student; returns its seconds."""
    model = create_model("deit_micro_distilled_patch4_32", token_keep=keep, dynamic_img_size=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    forward = torch.compile(model) if compiled else model
    x, y = torch.randn(128, 3, size, size), torch.randint(0, 10, (128,))
    return lambda: step_seconds(forward, optimizer, x, y)


def main() -> None:
    """Warm up (compile) each case, then time them in interleaved rounds."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("threads", type=int, nargs="?", default=1)
    torch.set_num_threads(parser.parse_args().threads)
    torch.manual_seed(0)
    cases = [(size, keep, c) for size, keep in ((32, 0.5), (16, 1.0)) for c in (False, True)]
    steps, times = {}, {case: [] for case in cases}
    for case in cases:
        start = time.perf_counter()
        steps[case] = make_step(*case)
        for _ in range(3):
            steps[case]()
        print(case, "warm-up incl. compile", round(time.perf_counter() - start, 1), "s", flush=True)
    for _ in range(4):
        for case in cases:
            times[case] += [steps[case]() for _ in range(3)]
    for case in cases:
        print(case, "median ms", round(1000 * statistics.median(times[case]), 1))


if __name__ == "__main__":
    main()
