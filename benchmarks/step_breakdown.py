"""Where a training step goes: data, augmentation, teacher, student, optimizer.

Builds exactly what ``deit train`` builds for the preset (loader over the real
CIFAR-10 training set, the configured augmentation, the wrapped shipped
teacher, the student, AdamW) and times each phase of real steps separately:

- **data + augmentation**: drawing the batch from the in-memory loader and the
  whole training view (crop, flip, normalisation and whatever else the preset
  turns on);
- **teacher forward**: the frozen teacher on the augmented batch;
- **student forward + loss** and **student backward**;
- **optimizer**: setting the learning rate, zeroing gradients, the AdamW step.

Each phase's figure is the median over the timed steps (after warm-up), so a
noisy neighbour in one step does not move it. The distillation loss is
computed with the teacher's logits taken in the separate teacher phase, which
is what ``build_loss`` does inside one call.

    python benchmarks/step_breakdown.py [--preset cpu-proxy] [--set KEY=VALUE ...] [--steps 20]

``--set`` changes the preset as in ``deit train`` (e.g. ``--set teacher_bf16=true``);
with an ``img_size_schedule`` the student's steps run at its first size (the teacher
still sees the full-resolution view, as in training), and with ``token_keep`` on the
first epoch's share of the patch tokens.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import time

import torch

from deit.config import TrainConfig, apply_overrides, from_preset, validate
from deit.data import BatchLoader, load_cifar
from deit.data.augment import dataset_stats
from deit.distill import distillation_loss
from deit.engine import ResizeInput, param_groups
from deit.hardware import hardware
from deit.models import create_model
from deit.trainer import build_augment, build_teacher

PHASES = ("data + augmentation", "teacher forward", "student forward + loss",
          "student backward", "optimizer")  # fmt: skip


def time_steps(config: TrainConfig, steps: int, warmup: int) -> dict[str, list[float]]:
    """Seconds of each phase of ``steps`` real training steps of ``config`` after ``warmup``."""
    data = load_cifar(config.dataset, config.data_dir, download=False)
    mean, std = dataset_stats(config.dataset)
    teacher = build_teacher(config, data.num_classes, mean, std)
    model = create_model(
        config.student, num_classes=data.num_classes, drop_path_rate=config.drop_path_rate,
        dynamic_img_size=bool(config.img_size_schedule), token_keep=config.token_keep_at(0),
        **config.model_overrides(),
    ).train()  # fmt: skip
    loader = BatchLoader(data.train_images, data.train_labels, config.batch_size, seed=0,
                         repeats=config.repeated_augmentation)  # fmt: skip
    augment = build_augment(config, data.num_classes, mean, std)
    student = ResizeInput(model, config.img_size_at(0))
    optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay), lr=config.scaled_lr)
    times: dict[str, list[float]] = {phase: [] for phase in PHASES}
    batches = iter(loader)
    for i in range(warmup + steps):
        marks = [time.perf_counter()]
        images, labels = next(batches)
        x, targets = augment(images, labels)
        marks.append(time.perf_counter())
        teacher_logits = teacher(x) if teacher is not None else None
        marks.append(time.perf_counter())
        smoothing = config.label_smoothing if targets.dtype == torch.long else 0.0
        loss = distillation_loss(student(x), targets, teacher_logits, config.distillation,
                                 alpha=config.distillation_alpha, tau=config.distillation_tau,
                                 label_smoothing=smoothing)  # fmt: skip
        marks.append(time.perf_counter())
        loss.backward()
        marks.append(time.perf_counter())
        for group in optimizer.param_groups:
            group["lr"] = config.scaled_lr
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        marks.append(time.perf_counter())
        if i >= warmup:
            for phase, start, end in zip(PHASES, marks[:-1], marks[1:], strict=True):
                times[phase].append(end - start)
    return times


def main() -> None:
    """Print the markdown section for benchmarks/RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu-proxy")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    config = from_preset(args.preset, data_dir=args.data_dir)
    config = validate(apply_overrides(config, args.overrides))
    times = time_steps(config, args.steps, args.warmup)
    median = {phase: statistics.median(t) for phase, t in times.items()}
    step = sum(median.values())
    hw = hardware()
    family = f" ({hw['cpu_family']})" if "cpu_family" in hw else ""  # "AMD EPYC" names several
    print(f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC · {hw['cpu']}{family} · "
          f"{hw['threads']} threads · torch {hw['torch']} · preset `{args.preset}` "
          f"({config.student}, embed {config.embed_dim or 'default'}, depth "
          f"{config.depth or 'default'}, batch {config.batch_size}, {config.distillation} "
          f"distillation{''.join(' · ' + o for o in args.overrides)}, input "
          f"{config.img_size_at(0)} px, token keep {config.token_keep_at(0)}) · median of "
          f"{args.steps} real steps after "
          f"{args.warmup} warm-up\n")  # fmt: skip
    print("| phase | ms/step | share |")
    print("|---|---:|---:|")
    for phase, seconds in median.items():
        print(f"| {phase} | {seconds * 1000:.1f} | {100 * seconds / step:.1f} % |")
    print(f"| **step (sum of medians)** | **{step * 1000:.1f}** | "
          f"{config.batch_size / step:.0f} img/s |")  # fmt: skip


if __name__ == "__main__":
    main()
