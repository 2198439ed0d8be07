"""The batch size at which evaluation runs fastest on this machine, and that it changes nothing.

Evaluation feeds the test set in fixed batches: a teacher's through
``deit.models.teachers.predict`` (``deit eval`` of a teacher, the teacher's accuracy at the
start of every distilled run, ``deit teacher``'s evaluations), a student's through
``deit.inputs.EVAL_BATCH`` (every evaluation of a run). This times, over the first
``--images`` CIFAR-10 test images, the shipped ``cifar10-teacher`` and two untrained
students (the cpu-proxy's micro and DeiT-Ti, patch 4) at each batch size, median of
``--repeats`` passes after a warm-up, and checks that the logits equal those of the
largest batch bit for bit.

    python benchmarks/eval_batch.py [DATA_DIR] [--images N] [--repeats N]
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from collections.abc import Callable

import torch

from deit.data.augment import normalize
from deit.data.cifar import load_cifar
from deit.hardware import hardware
from deit.models import create_model
from deit.models.teacher_files import load_teacher
from deit.models.teachers import predict

BATCHES = (1000, 500, 256, 128, 64, 32)
STUDENTS = ("deit_micro_distilled_patch4_32", "deit_tiny_distilled_patch4_32")


def student_logits(name: str) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """Both heads' logits of an untrained student, batch by batch, as an evaluation runs it."""
    torch.manual_seed(0)
    model = create_model(name).eval()

    @torch.inference_mode()
    def run(images: torch.Tensor, batch: int) -> torch.Tensor:
        outputs = []
        for start in range(0, len(images), batch):
            x = normalize(images[start : start + batch], (0.5,) * 3, (0.25,) * 3)
            outputs.append(torch.cat(model(x, head="both"), dim=1))
        return torch.cat(outputs)

    return run


def main() -> None:
    """Print one line per model and batch size: img/s, ratio to the largest, equal logits."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", nargs="?", default="../shared/data")
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    images = load_cifar("cifar10", args.data_dir, download=False).test_images[: args.images]
    print("# python benchmarks/eval_batch.py " + " ".join(sys.argv[1:]))
    print(f"# {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {hardware()['cpu']}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}; {len(images)} CIFAR-10 "
          f"test images, median of {args.repeats} passes")  # fmt: skip
    teacher = load_teacher("cifar10-teacher")
    models = {"cifar10-teacher": lambda x, batch: predict(teacher, x, batch_size=batch)}
    models |= {name: student_logits(name) for name in STUDENTS}
    for name, run in models.items():
        reference, largest = run(images, BATCHES[0]), None
        for batch in BATCHES:
            run(images[:batch], batch)  # warm-up
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                logits = run(images, batch)
                times.append(time.perf_counter() - start)
            speed = len(images) / statistics.median(times)
            largest = largest or speed
            same = "identical" if torch.equal(logits, reference) else "DIFFER"
            print(f"{name:32s} batch {batch:5d}: {speed:6.0f} img/s, {speed / largest:.2f}x "
                  f"batch {BATCHES[0]}, logits {same}")  # fmt: skip


if __name__ == "__main__":
    main()
