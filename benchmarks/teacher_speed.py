"""Teacher inference speed on this machine, and what each speed measure gives.

The teacher runs on every distillation step, so its forward pass is part of
every student step. This measures, in one run, the shipped teacher's
inference img/s at batch 512 as a plain eval model (NCHW), channels-last, and
with batch norm folded into the convolutions (the form the ``Teacher``
wrapper uses), all under ``torch.inference_mode``; then the wrapped
teacher's cost on a 128-image batch relative to one training step of a small
distilled student (128-d, depth 6, 4 heads, patch 4).

    python benchmarks/teacher_speed.py [--repeats N]
"""

from __future__ import annotations

import argparse
import datetime
import os
import time

import torch

from deit.data.augment import CIFAR10_MEAN, CIFAR10_STD
from deit.engine import param_groups
from deit.hardware import hardware
from deit.models import create_model
from deit.models.cnn import fold_batchnorm
from deit.models.teacher_files import load_teacher
from deit.models.teachers import Teacher


def best_seconds(fn, repeats: int) -> float:
    """Fastest of ``repeats`` timed calls after two warm-up calls (least disturbed by noise)."""
    fn(), fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def inference_variants(batch: int, repeats: int) -> dict[str, float]:
    """img/s of the shipped teacher in each inference form."""
    teacher = load_teacher("cifar10-teacher")
    x = torch.randn(batch, 3, 32, 32)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    variants = {
        "eval, NCHW": (teacher, x),
        "eval, channels-last": (teacher.to(memory_format=torch.channels_last), x_cl),
        "BN folded, channels-last": (fold_batchnorm(teacher), x_cl),
    }
    speeds = {}
    for name, (model, inputs) in variants.items():
        with torch.inference_mode():
            speeds[name] = batch / best_seconds(lambda m=model, i=inputs: m(i), repeats)
    return speeds


def student_step_ratio(batch: int, repeats: int) -> tuple[float, float]:
    """(seconds of the wrapped teacher's forward, seconds of a small student's step)."""
    teacher = Teacher(
        load_teacher("cifar10-teacher"), input_mean=CIFAR10_MEAN, input_std=CIFAR10_STD
    )
    student = create_model(
        "deit_tiny_distilled_patch4_32", embed_dim=128, depth=6, num_heads=4
    ).train()
    optimizer = torch.optim.AdamW(param_groups(student, 0.05), lr=1e-3)
    x = torch.randn(batch, 3, 32, 32)
    y = torch.randint(0, 10, (batch,))

    def step():
        cls, dist = student(x)
        loss = torch.nn.functional.cross_entropy(cls, y) + torch.nn.functional.cross_entropy(
            dist, y
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return best_seconds(lambda: teacher(x), repeats), best_seconds(step, repeats)


def main() -> None:
    """Print the markdown section for benchmarks/RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    speeds = inference_variants(512, args.repeats)
    teacher_s, student_s = student_step_ratio(128, args.repeats)
    hw = hardware()
    print(f"Measured {datetime.date.today()} on {hw['cpu']}, {hw['threads']} threads, "
          f"torch {hw['torch']}; best of {args.repeats} after warm-up.\n")  # fmt: skip
    print("| shipped teacher, batch 512 | img/s | vs NCHW |")
    print("|---|---|---|")
    base = speeds["eval, NCHW"]
    for name, value in speeds.items():
        print(f"| {name} | {value:.0f} | ×{value / base:.2f} |")
    print(
        f"\nWrapped teacher forward on 128 images: {teacher_s * 1000:.0f} ms; training step of "
        f"a 128-d depth-6 distilled student on the same batch: {student_s * 1000:.0f} ms; "
        f"teacher / student step = {teacher_s / student_s:.2f}."
    )


if __name__ == "__main__":
    main()
