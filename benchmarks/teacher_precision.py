"""How much the shipped teacher's predictions change when it runs under bf16 autocast.

The cpu-proxy preset runs its teacher under bf16 autocast (``teacher_bf16=true``), which
is half the cost on a CPU with bf16 units and about four times the cost on one without
(the units are emulated; benchmarks/RESULTS.md). On such a CPU a distilled run can use
``teacher_bf16=false`` instead; this measures what that changes in what the student is
taught: on real CIFAR-10 images (the test set and the first ``--train-images`` training
images, unaugmented), the share of images whose hard label (argmax) differs, the mean
total-variation distance between the two softmax outputs (what the soft-target student B
learns from), and each version's test top-1.

    python benchmarks/teacher_precision.py [--data-dir D] [--train-images N]
"""

from __future__ import annotations

import argparse
import datetime
import os

import torch

from deit.data.augment import CIFAR10_MEAN, CIFAR10_STD, normalize
from deit.data.cifar import load_cifar
from deit.hardware import hardware
from deit.models.teacher_files import load_teacher
from deit.models.teachers import Teacher


def logits_of(teacher: Teacher, images: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """The teacher's fp32 logits on uint8 ``images``, in batches.

    Through the :class:`Teacher` wrapper, whose forward applies its bf16 autocast;
    ``deit.models.teachers.predict`` runs the folded network directly and would not.
    """
    parts = [
        teacher(normalize(images[i : i + batch], CIFAR10_MEAN, CIFAR10_STD))
        for i in range(0, len(images), batch)
    ]
    return torch.cat(parts)


def compare(fp32: torch.Tensor, bf16: torch.Tensor) -> dict[str, float]:
    """Hard-label disagreement (%) and mean total-variation distance of the softmaxes."""
    differ = (fp32.argmax(1) != bf16.argmax(1)).float().mean().item()
    tv = 0.5 * (fp32.softmax(1) - bf16.softmax(1)).abs().sum(1).mean().item()
    return {"hard_labels_differ_pct": 100 * differ, "mean_tv_distance": tv}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("DEIT_DATA"))
    parser.add_argument("--train-images", type=int, default=10_000)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    cifar = load_cifar("cifar10", args.data_dir, download=False)
    network = load_teacher("cifar10-teacher")
    fp32_teacher = Teacher(network, input_mean=CIFAR10_MEAN, input_std=CIFAR10_STD)
    bf16_teacher = Teacher(network, input_mean=CIFAR10_MEAN, input_std=CIFAR10_STD, bf16=True)
    hw = hardware()
    now = datetime.datetime.now(datetime.UTC)
    print(f"{now:%Y-%m-%d %H:%M} UTC · {hw['cpu']} · bf16 units: {hw['cpu_bf16']} · "
          f"{hw['threads']} threads · torch {hw['torch']}")  # fmt: skip
    print("\n| images | n | hard labels differ | mean TV distance | top-1 fp32 | top-1 bf16 |")
    print("|---|---:|---:|---:|---:|---:|")
    sets = {
        "test": (cifar.test_images, cifar.test_labels),
        "train (first, unaugmented)": (
            cifar.train_images[: args.train_images],
            cifar.train_labels[: args.train_images],
        ),
    }
    for name, (images, labels) in sets.items():
        fp32, bf16 = logits_of(fp32_teacher, images), logits_of(bf16_teacher, images)
        c = compare(fp32, bf16)
        top1 = [100 * (z.argmax(1) == labels).float().mean().item() for z in (fp32, bf16)]
        print(f"| {name} | {len(labels)} | {c['hard_labels_differ_pct']:.2f} % | "
              f"{c['mean_tv_distance']:.4f} | {top1[0]:.2f} % | {top1[1]:.2f} % |")  # fmt: skip


if __name__ == "__main__":
    main()
