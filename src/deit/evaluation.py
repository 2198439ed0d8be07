"""``deit eval``: the test accuracy of any checkpoint the project writes.

A student checkpoint (``deit train``) is rebuilt from the config stored in it
and reports every head; a teacher (``deit teacher`` checkpoint, exported
``.safetensors`` or a shipped name such as ``cifar10-teacher``) reports its
single prediction, optionally with test-time augmentation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deit import engine
from deit.checkpoint import load_checkpoint
from deit.config import TrainConfig, config_from_dict
from deit.data import dataset_classes, load_cifar
from deit.data.augment import dataset_stats
from deit.models import create_model
from deit.models.deit import VisionTransformer
from deit.models.teachers import (
    SHIPPED_TEACHERS,
    CheckpointError,
    evaluate_teacher,
    load_teacher,
    load_weights,
)


def _student_payload(path: Path) -> dict[str, Any] | None:
    """The checkpoint's contents if it is a student's (``deit train``), else None."""
    if str(path) in SHIPPED_TEACHERS or path.suffix == ".safetensors":
        return None
    payload = load_checkpoint(path)
    is_student = isinstance(payload, dict) and "student" in payload.get("config", {})
    return payload if is_student else None


def _rebuild_student(payload: dict[str, Any], source: str) -> tuple[VisionTransformer, TrainConfig]:
    """The student (in eval mode) and config stored in a ``deit train`` checkpoint's contents."""
    config = config_from_dict(payload["config"])
    classes = dataset_classes(config.dataset)
    model = create_model(config.student, num_classes=classes, **config.model_overrides())
    load_weights(model, payload["model"], source)
    return model.eval(), config


def load_student(checkpoint: str | Path) -> tuple[VisionTransformer, TrainConfig]:
    """The student of a ``deit train``/``deit finetune`` checkpoint, and its config."""
    payload = _student_payload(Path(checkpoint))
    if payload is None:
        raise CheckpointError(f"{checkpoint} is not a student checkpoint of deit train")
    return _rebuild_student(payload, str(checkpoint))


def evaluate(
    checkpoint: str | Path,
    data_dir: str | None = None,
    *,
    tta: bool = False,
    download: bool = True,
) -> dict[str, Any]:
    """Evaluate a student or teacher checkpoint on the test set of its data set.

    Returns ``{"checkpoint", "kind", "top1", "heads"}``: ``top1`` (percent) is the
    model's default prediction (a distilled student's head average), ``heads``
    the accuracy of every student head (empty for a teacher). ``tta`` (mirror
    and ±1 px translations) applies to teachers only.
    """
    path = Path(checkpoint)
    payload = _student_payload(path)
    if payload is None:
        teacher = load_teacher(checkpoint)
        data = load_cifar("cifar10", data_dir, download=download)
        top1 = evaluate_teacher(teacher, data.test_images, data.test_labels, tta=tta)
        return {"checkpoint": str(checkpoint), "kind": "teacher", "top1": top1, "heads": {}}
    if tta:
        raise CheckpointError("--tta applies to teachers; students are evaluated per head")
    model, config = _rebuild_student(payload, str(path))
    data = load_cifar(config.dataset, data_dir, download=download)
    mean, std = dataset_stats(config.dataset)
    heads = engine.evaluate(
        model, data.test_images, data.test_labels, mean=mean, std=std, img_size=config.img_size
    )
    top1 = heads.get("avg", heads["cls"])
    return {"checkpoint": str(checkpoint), "kind": "student", "top1": top1, "heads": heads}
