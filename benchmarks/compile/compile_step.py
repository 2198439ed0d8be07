"""Is torch.compile worth it for the cpu-proxy student's training step on a CPU? Eager vs compiled.

Times one full training step (both heads, cross-entropy, backward, AdamW; batch 128, random
data) of the micro student at 32 px keeping half the tokens and at 16 px with all of them,
eager and compiled, interleaved; prints the warm-up time (which holds the compile) and the
median step.

    python benchmarks/compile/compile_step.py [THREADS]
"""

import statistics
import sys
import time

import torch
import torch.nn.functional as F

from deit.models import create_model


def make_step(size: int, keep: float, compiled: bool):
    """A function running one training step of a fresh student; returns its seconds."""
    model = create_model("deit_micro_distilled_patch4_32", token_keep=keep, dynamic_img_size=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    forward = torch.compile(model) if compiled else model
    x, y = torch.randn(128, 3, size, size), torch.randint(0, 10, (128,))

    def step() -> float:
        start = time.perf_counter()
        cls, dist = forward(x)
        loss = F.cross_entropy(cls, y) + F.cross_entropy(dist, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    return step


def main() -> None:
    """Warm up (compile) each case, then time them in interleaved rounds."""
    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
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
