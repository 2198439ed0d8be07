"""``deit.finetune``: a trained student (this project's or an official DeiT) at another size.

The paper's route to its best transfer numbers, and the report's future work:
the student keeps its weights and architecture and trains on at a new image
(and patch) size, on CIFAR or an image folder, with or without a teacher.
Reading and adapting the weights is :mod:`deit.pretrained`'s; the training
run is :func:`deit.train`'s.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from deit.checkpoint import checkpoint_file
from deit.config import ConfigError, TrainConfig, from_preset, validate
from deit.data import dataset_classes, scan_folder
from deit.pretrained import read_pretrained, student_name
from deit.trainer import train


def finetune_config(
    base: TrainConfig, checkpoint: str | Path, img_size: int, patch_size: int | None = None
) -> TrainConfig:
    """``base`` turned into a fine-tuning of ``checkpoint`` at ``img_size`` (and ``patch_size``).

    The student takes the checkpoint's architecture; it trains at ``img_size``
    throughout (a low-resolution start belongs to training from scratch).
    ``checkpoint`` may be a run directory: its ``checkpoint.pt``.
    """
    checkpoint = checkpoint_file(checkpoint)  # an official name stays as it is
    _, arch = read_pretrained(checkpoint)
    patch_size = patch_size or arch["patch_size"]
    if img_size % patch_size:
        raise ConfigError(f"patch size {patch_size} does not divide image size {img_size}")
    return validate(
        dataclasses.replace(
            base,
            student=student_name(arch, img_size, patch_size),
            embed_dim=arch["embed_dim"],
            depth=arch["depth"],
            num_heads=arch["num_heads"],
            init_from=str(checkpoint),
            img_size_schedule=(),
        )
    )


def finetune(
    checkpoint: str | Path,
    img_size: int,
    out: str | Path,
    *,
    recipe: TrainConfig | None = None,
    patch_size: int | None = None,
    num_classes: int | None = None,
    overwrite: bool = False,
    resume: bool | str = False,
    command: list[str] | None = None,
) -> dict:
    """Fine-tune the student in ``checkpoint`` at ``img_size`` into run directory ``out``.

    ``recipe`` is the training config to follow (default: the ``smoke``
    preset); the student, its size and its starting weights come from the
    checkpoint (:func:`finetune_config`). ``num_classes``, when given, must be
    the data set's: the heads are sized for the data. Returns the run's
    summary, as :func:`deit.train` does; an interrupted fine-tuning continues
    with ``deit.train(None, out, resume=True)``, or with this same call given
    ``resume="auto"`` (which starts the run, or resumes it if ``out`` holds it).
    """
    if resume is True:
        raise ConfigError("finetune(resume=True): continue a fine-tuning run with "
                          "deit.train(None, out, resume=True), or pass resume='auto'")  # fmt: skip
    config = finetune_config(recipe or from_preset("smoke"), checkpoint, img_size, patch_size)
    if config.dataset == "folder":
        classes = scan_folder(config.data_dir).num_classes
    else:
        classes = dataset_classes(config.dataset)
    if num_classes is not None and num_classes != classes:
        raise ConfigError(f"num_classes {num_classes}: {config.dataset} has {classes} classes")
    return train(config, out, resume=resume, overwrite=overwrite, command=command)
