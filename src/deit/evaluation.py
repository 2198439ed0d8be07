"""``deit eval``: the test accuracy of any checkpoint the project writes.

A student checkpoint (``deit train``) is rebuilt from the config stored in it
and reports every head; a teacher (``deit teacher`` checkpoint, exported
``.safetensors`` or a shipped name such as ``cifar10-teacher``) reports its
single prediction, optionally with test-time augmentation.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from deit import engine
from deit.checkpoint import checkpoint_file, load_checkpoint
from deit.config import TrainConfig, config_from_dict
from deit.data import load_cifar, scan_folder
from deit.decode_once import decode_all
from deit.distributed import World
from deit.hardware import usable_cores
from deit.inputs import load_inputs
from deit.models import create_model
from deit.models.deit import VisionTransformer
from deit.models.teacher_files import (
    SHIPPED_TEACHERS,
    CheckpointError,
    load_teacher,
    load_weights,
)
from deit.models.teachers import evaluate_teacher


def _student_payload(path: Path) -> dict[str, Any] | None:
    """The checkpoint's contents if it is a student's (``deit train``), else None."""
    if str(path) in SHIPPED_TEACHERS or path.suffix == ".safetensors":
        return None
    payload = load_checkpoint(path)
    is_student = isinstance(payload, dict) and "student" in payload.get("config", {})
    return payload if is_student else None


def rebuild_student(payload: dict[str, Any], source: str) -> tuple[VisionTransformer, TrainConfig]:
    """The student (in eval mode) and config stored in a ``deit train`` checkpoint's contents."""
    config = config_from_dict(payload["config"])
    classes = payload["model"]["head.weight"].shape[0]
    model = create_model(config.student, num_classes=classes, **config.model_overrides())
    load_weights(model, payload["model"], source)
    return model.eval(), config


def load_student(checkpoint: str | Path) -> tuple[VisionTransformer, TrainConfig]:
    """The student of a ``deit train``/``deit finetune`` checkpoint, and its config."""
    payload = _student_payload(checkpoint_file(checkpoint))
    if payload is None:
        raise CheckpointError(f"{checkpoint} is not a student checkpoint of deit train")
    return rebuild_student(payload, str(checkpoint))


def _teacher_test_set(path: Path, teacher, data_dir: str | None, download: bool):
    """The test images and labels a teacher is evaluated on: its run's data set, else CIFAR-10.

    A ``deit teacher`` checkpoint names its data set (an image folder's
    ``val/`` is decoded at the teacher's resolution); a shipped or exported
    teacher is a CIFAR-10 teacher.
    """
    config: dict[str, Any] = {}
    if str(path) not in SHIPPED_TEACHERS and path.suffix != ".safetensors":
        config = load_checkpoint(path).get("config") or {}
    dataset, data_dir = config.get("dataset", "cifar10"), data_dir or config.get("data_dir")
    if dataset == "folder":
        return decode_all(scan_folder(data_dir).val, teacher.img_size, workers=usable_cores())
    data = load_cifar(dataset, data_dir, download=download)
    return data.test_images, data.test_labels


def evaluate(
    checkpoint: str | Path,
    data_dir: str | None = None,
    *,
    tta: bool = False,
    download: bool = True,
) -> dict[str, Any]:
    """Evaluate a student or teacher checkpoint (or run directory) on the test set of its data.

    Returns ``{"checkpoint", "kind", "top1", "heads", "images"}``: ``top1``
    (percent) is the model's default prediction (a distilled student's head
    average), ``heads`` the accuracy of every student head (empty for a
    teacher), ``images`` how many test images they were measured on. ``tta`` (mirror
    and ±1 px translations) applies to teachers only. The data set is the
    one the checkpoint was trained on (CIFAR-10 for a shipped teacher), its
    test split or an image folder's ``val/``, found in ``data_dir`` if given,
    else where the run found it.
    """
    path = checkpoint_file(checkpoint)  # a shipped teacher's name stays as it is
    payload = _student_payload(path)
    if payload is None:
        teacher = load_teacher(path)
        images, labels = _teacher_test_set(path, teacher, data_dir, download)
        top1 = evaluate_teacher(teacher, images, labels, tta=tta)
        return {
            "checkpoint": str(checkpoint),
            "kind": "teacher",
            "top1": top1,
            "heads": {},
            "images": len(labels),
        }
    if tta:
        raise CheckpointError("--tta applies to teachers; students are evaluated per head")
    model, config = rebuild_student(payload, str(path))
    where = {"data_dir": data_dir} if data_dir else {}
    config = dataclasses.replace(config, validation=False, train_size=0, test_size=0,
                                 subset_sha256="", download=download, **where)  # fmt: skip
    inputs = load_inputs(config, World())
    counts = engine.count_correct(model, inputs.eval_batches(), mean=inputs.mean, std=inputs.std,
                                  img_size=config.img_size)  # fmt: skip
    seen = counts.pop("images")
    heads = {name: 100.0 * right / seen for name, right in counts.items()}
    top1 = heads.get("avg", heads["cls"])
    return {
        "checkpoint": str(checkpoint),
        "kind": "student",
        "top1": top1,
        "heads": heads,
        "images": seen,
    }
