"""What a teacher's hard labels tell a student that the true labels do not.

Hard distillation trains the distillation token on the teacher's argmax of each
training view. Where that argmax equals the true label, the token learns nothing
the class token does not. For a teacher and a class-balanced CIFAR-10 subset
this prints, over ``--views`` augmented epochs of the subset's training images
under a student recipe (the views the student sees):

- ``agree``: how often the teacher's argmax is the true label (mixed views: the
  label of the larger part);
- ``either`` (mixed views): how often it is one of the two mixed labels;
- the teacher's top-1 on the clean training images and on the held-out images.

    python results/teacher-pays/why.py --teacher DIR/teacher/teacher.safetensors \
        --train-size 1000 [--validation] [--recipe proxy|mix|mix-ra] --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import json

import torch

from deit.data import CIFAR10_MEAN, CIFAR10_STD, TrainAugment, load_cifar, normalize
from deit.data.subsets import cifar_subset, cifar_validation
from deit.models.teacher_files import load_teacher
from deit.models.teachers import Teacher

RECIPES = {
    "proxy": {},
    "mix": {"mixup": 0.8, "cutmix": 1.0},
    "mix-ra": {"mixup": 0.8, "cutmix": 1.0, "randaugment_ops": 2},
}


def top1(teacher: Teacher, images: torch.Tensor, labels: torch.Tensor) -> float:
    """The teacher's top-1 (%) on clean uint8 images."""
    x = normalize(images, CIFAR10_MEAN, CIFAR10_STD)
    predicted = torch.cat([teacher(b).argmax(1) for b in x.split(500)])
    return 100 * (predicted == labels).float().mean().item()


def views(teacher: Teacher, images, labels, recipe: str, epochs: int, seed: int) -> dict:
    """Agreement of the teacher's argmax with the labels on the student's training views."""
    augment = TrainAugment(10, CIFAR10_MEAN, CIFAR10_STD, seed=seed, **RECIPES[recipe])
    agree = either = total = 0
    for _ in range(epochs):
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
        for batch in order.split(64):
            x, target = augment(images[batch], labels[batch])
            predicted = teacher(x).argmax(1)
            if target.dim() == 1:
                agree += (predicted == target).sum().item()
                either += (predicted == target).sum().item()
            else:  # soft targets: the mixed pair are the two largest entries
                two = target.topk(2, dim=1).indices
                agree += (predicted == two[:, 0]).sum().item()
                either += (predicted[:, None] == two).any(1).sum().item()
            total += len(batch)
        seed += 1
    return {"agree": 100 * agree / total, "either": 100 * either / total, "views": total}


def main() -> None:
    """Parse the arguments, print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--train-size", type=int, required=True)
    parser.add_argument("--subset-seed", type=int, default=0)
    parser.add_argument("--validation", action="store_true")
    parser.add_argument("--recipe", choices=RECIPES, default="proxy")
    parser.add_argument("--views", type=int, default=5, help="augmented epochs")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    torch.set_num_threads(2)
    data, kept = cifar_subset(load_cifar("cifar10", args.data_dir, download=False),
                              args.train_size, args.subset_seed)  # fmt: skip
    if args.validation:
        data, kept = cifar_validation(data, kept, args.subset_seed)
    teacher = Teacher(load_teacher(args.teacher), input_mean=CIFAR10_MEAN, input_std=CIFAR10_STD)
    result = {
        "teacher": args.teacher,
        "train_size": args.train_size,
        "training_images": len(data.train_labels),
        "recipe": args.recipe,
        "train_top1": top1(teacher, data.train_images, data.train_labels),
        "held_out_top1": top1(teacher, data.test_images, data.test_labels),
        "held_out": "validation tenth" if args.validation else "test set",
        **views(teacher, data.train_images, data.train_labels, args.recipe, args.views, 0),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
