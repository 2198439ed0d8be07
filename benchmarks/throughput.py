"""Training and inference throughput of DeiT students against this machine's matmul ceiling.

Usage: ``python benchmarks/throughput.py [--quick]``. Prints a markdown table.

For each model: a training step (forward, loss on both heads, backward, AdamW step; train mode,
random data) and an inference step (eval mode, ``torch.inference_mode``), in images/s and
achieved GFLOP/s. FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` exactly as
shipped (matrix products and convolutions, backward included, optimizer excluded). Its stock
table has no entry for the CPU flash-attention kernel, so those FLOPs (q·kᵀ and p·v) are not in
the main figure; the last column adds them with FlopCounterMode's own SDPA formulas. The
ceiling is the best fp32 GFLOP/s of a large square matmul measured in the same run.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time

import torch
import torch.nn.functional as F
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

from deit.models import create_model

CONFIGS = [("deit_tiny_distilled_patch4_32", 128), ("deit_tiny_distilled_patch16_224", 32)]


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or what platform knows elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def matmul_ceiling(n: int, repeats: int) -> float:
    """Best fp32 GFLOP/s of an n×n by n×n matrix product: the attainable peak to compare to."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def _cpu_attention_formulas() -> dict:
    """FlopCounterMode formulas for the CPU flash-attention ops, built from its own SDPA counts."""

    def forward(query, key, value, *args, out_shape=None, **kwargs):
        return flop_counter.sdpa_flop_count(query, key, value)

    def backward(grad_out, query, key, value, *args, out_shape=None, **kwargs):
        return flop_counter.sdpa_backward_flop_count(grad_out, query, key, value)

    aten = torch.ops.aten
    return {
        aten._scaled_dot_product_flash_attention_for_cpu: forward,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: backward,
    }


def count_flops(fn, with_attention: bool) -> int:
    """FLOPs of one call of fn as FlopCounterMode counts them (optionally plus CPU attention)."""
    mapping = _cpu_attention_formulas() if with_attention else None
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        fn()
    return counter.get_total_flops()


def time_steps(fn, warmup: int, steps: int) -> tuple[float, float]:
    """Median and best seconds per call of fn after warm-up.

    The median is the figure to quote; the best step, like the best-of ceiling, is the speed
    without interference from other processes on a shared machine.
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2], min(times)


def bench_model(name: str, batch: int, warmup: int, steps: int) -> list[dict]:
    """Measure a training step and an inference step of one model at one batch size."""
    torch.manual_seed(0)
    model = create_model(name)
    size = model.patch_embed.img_size
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, model.num_classes, (batch,))
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.05)

    def forward_backward():
        cls, dist = model(x)
        loss = (F.cross_entropy(cls, y) + F.cross_entropy(dist, y)) / 2
        optimizer.zero_grad(set_to_none=True)
        loss.backward()

    def train_step():
        forward_backward()
        optimizer.step()

    def infer_step():
        with torch.inference_mode():
            model(x)

    rows = []
    for mode, step, counted in (
        ("train", train_step, forward_backward),
        ("infer", infer_step, infer_step),
    ):
        model.train(mode == "train")
        flops = count_flops(counted, with_attention=False)
        flops_attn = count_flops(counted, with_attention=True)
        seconds, best = time_steps(step, warmup, steps)
        rows.append(
            dict(
                name=name,
                batch=batch,
                mode=mode,
                seconds=seconds,
                img_s=batch / seconds,
                gflop_img=flops / batch / 1e9,
                gflop_s=flops / seconds / 1e9,
                gflop_s_best=flops / best / 1e9,
                gflop_s_attn=flops_attn / seconds / 1e9,
            )
        )
    return rows


def profile_train_step(name: str, batch: int, warmup: int) -> str:
    """torch.profiler table of one warmed-up training step: where the non-matmul time goes."""
    from torch.profiler import ProfilerActivity, profile

    model = create_model(name).train()
    size = model.patch_embed.img_size
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, model.num_classes, (batch,))
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.05)

    def train_step():
        cls, dist = model(x)
        optimizer.zero_grad(set_to_none=True)
        ((F.cross_entropy(cls, y) + F.cross_entropy(dist, y)) / 2).backward()
        optimizer.step()

    for _ in range(warmup):
        train_step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_step()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)


def markdown(rows: list[dict], ceiling: float, header: str) -> str:
    """Format the measurements as a markdown table with ratios to the matmul ceiling."""
    lines = [
        header,
        "",
        "| model | batch | step | s/step | img/s | GFLOP/img | GFLOP/s | % of ceiling "
        "| % best step | % incl. attention |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['batch']} | {r['mode']} | {r['seconds']:.3f} "
            f"| {r['img_s']:.1f} | {r['gflop_img']:.3f} | {r['gflop_s']:.1f} "
            f"| {100 * r['gflop_s'] / ceiling:.1f} | {100 * r['gflop_s_best'] / ceiling:.1f} "
            f"| {100 * r['gflop_s_attn'] / ceiling:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print its markdown report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small batches, few steps")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per measurement")
    parser.add_argument(
        "--profile", action="store_true", help="also print a profile of the first model's step"
    )
    args = parser.parse_args(argv)

    torch.set_num_threads(os.cpu_count())
    warmup, steps = (1, 2) if args.quick else (5, 10)
    steps = args.steps or steps
    configs = [(n, 8 if args.quick else b) for n, b in CONFIGS]
    n, repeats = (2048, 3) if args.quick else (4096, 7)

    ceiling = matmul_ceiling(n, repeats)
    rows = [row for name, batch in configs for row in bench_model(name, batch, warmup, steps)]
    ceiling = max(ceiling, matmul_ceiling(n, repeats))  # measured before and after
    header = (
        f"{datetime.date.today()} · torch {torch.__version__} · "
        f"{torch.get_num_threads()} threads · {cpu_model()} · "
        f"fp32 matmul ceiling {ceiling:.1f} GFLOP/s ({n}², best of {2 * repeats}) · "
        f"median of {steps} steps after {warmup} warm-up"
    )
    print(markdown(rows, ceiling, header))
    if args.profile:
        print(profile_train_step(*configs[0], warmup))


if __name__ == "__main__":
    main()
