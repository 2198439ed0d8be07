"""The batch size at which a teacher predicts fastest on this machine, and that it changes nothing.

``deit.models.teachers.predict`` (``deit eval`` of a teacher, the teacher's accuracy at the
start of every distilled run, ``deit teacher``'s evaluations) feeds the test set to the
teacher in batches. This times the shipped ``cifar10-teacher`` over the first ``--images``
CIFAR-10 test images at each batch size (median of ``--repeats`` passes after a warm-up)
and checks that the logits equal those at batch 1,000 (the old default) bit for bit.

    python benchmarks/teacher_eval_batch.py [DATA_DIR] [--images N] [--repeats N]
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time

import torch

from deit.data.cifar import load_cifar
from deit.hardware import hardware
from deit.models.teacher_files import load_teacher
from deit.models.teachers import predict

BATCHES = (1000, 512, 256, 128, 64, 32)


def main() -> None:
    """Print one line per batch size: img/s, its ratio to batch 1,000, equal logits or not."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", nargs="?", default="../shared/data")
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    teacher = load_teacher("cifar10-teacher")
    images = load_cifar("cifar10", args.data_dir, download=False).test_images[: args.images]
    machine = hardware()
    print("# python benchmarks/teacher_eval_batch.py " + " ".join(sys.argv[1:]))
    print(f"# {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {machine['cpu']}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}; shipped teacher, "
          f"{len(images)} CIFAR-10 test images, median of {args.repeats} passes")  # fmt: skip
    reference = predict(teacher, images, batch_size=1000)
    speeds = {}
    for batch in BATCHES:
        predict(teacher, images[:batch], batch_size=batch)  # warm-up
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            logits = predict(teacher, images, batch_size=batch)
            times.append(time.perf_counter() - start)
        speeds[batch] = len(images) / statistics.median(times)
        same = torch.equal(logits, reference)
        print(f"batch {batch:5d}: {speeds[batch]:6.0f} img/s, {speeds[batch] / speeds[1000]:.2f}x "
              f"batch 1000, logits {'identical' if same else 'DIFFER'}")  # fmt: skip


if __name__ == "__main__":
    main()
