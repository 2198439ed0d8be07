"""``deit.train(config, out)``: a training run and its run directory.

The run directory holds ``config.json`` (enough to rerun), ``metrics.jsonl``
(one line per epoch), ``checkpoint.pt`` (the latest state, rewritten
atomically every epoch) and, once finished, ``summary.json``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from deit.checkpoint import CheckpointError, save_checkpoint
from deit.config import ConfigError, TrainConfig, save_config
from deit.data import BatchLoader, CropFlip, holdout_validation, load_cifar, truncate
from deit.data.augment import dataset_stats
from deit.distill import distillation_loss
from deit.engine import cosine_lr, evaluate, param_groups, train_one_epoch
from deit.hardware import hardware
from deit.models import create_model
from deit.models.teachers import Teacher, load_teacher
from deit.teacher_training import predict


def _teacher(
    config: TrainConfig, num_classes: int, mean: tuple[float, ...], std: tuple[float, ...]
) -> Teacher | None:
    """The frozen teacher, fed the student's batches, or None without distillation."""
    if config.distillation == "none":
        return None
    try:
        network = load_teacher(config.teacher)
    except (FileNotFoundError, CheckpointError) as err:
        raise ConfigError(f"teacher {config.teacher!r}: {err}") from None
    if network.kwargs["num_classes"] != num_classes:
        raise ConfigError(
            f"teacher {config.teacher!r} predicts {network.kwargs['num_classes']} classes but "
            f"{config.dataset} has {num_classes}"
        )
    return Teacher(network, input_mean=mean, input_std=std)


def _loss_fn(config: TrainConfig, teacher: Teacher | None):
    """``loss(outputs, labels, x)``: the configured loss; the teacher sees the student's x."""

    def loss(outputs, labels: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        teacher_logits = teacher(x) if teacher is not None else None
        return distillation_loss(
            outputs,
            labels,
            teacher_logits,
            config.distillation,
            alpha=config.distillation_alpha,
            tau=config.distillation_tau,
            label_smoothing=config.label_smoothing,
        )

    return loss


def train(config: TrainConfig, out: str | Path, command: list[str] | None = None) -> dict:
    """Train ``config.student``; write the run directory ``out``; return the summary.

    The loss is ``config.distillation`` (none, soft or hard) from
    ``config.teacher``, which sees exactly the student's augmented batch
    through its own normalisation. Every head of the student is evaluated on
    the test set (or, with ``config.validation``, on a held-out slice of the
    training set) after each epoch, with the teacher–student agreement.
    A teacher that cannot be loaded or predicts another number of classes
    raises ``ConfigError`` before the run directory is created.
    """
    out = Path(out)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    data = load_cifar(config.dataset, config.data_dir, download=config.download)
    if config.validation:
        data = holdout_validation(data)
    data = truncate(data, config.train_size, config.test_size)
    train_x, train_y = data.train_images, data.train_labels
    test_x, test_y = data.test_images, data.test_labels
    mean, std = dataset_stats(config.dataset)

    teacher = _teacher(config, data.num_classes, mean, std)
    teacher_pred = predict(teacher, test_x).argmax(1) if teacher is not None else None
    model = create_model(
        config.student,
        num_classes=data.num_classes,
        drop_path_rate=config.drop_path_rate,
        **config.model_overrides(),
    )
    loader = BatchLoader(train_x, train_y, config.batch_size, seed=config.seed)
    augment = CropFlip(config.crop_padding, seed=config.seed)
    optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay), lr=config.scaled_lr)
    steps = len(loader)
    warmup, total = round(config.warmup_epochs * steps), config.epochs * steps

    def lr_at(step: int) -> float:
        return cosine_lr(step, total, warmup, config.scaled_lr, config.min_lr)

    out.mkdir(parents=True, exist_ok=True)
    save_config(config, out / "config.json")
    metrics_path = out / "metrics.jsonl"
    metrics_path.write_text("")
    start = time.perf_counter()
    for epoch in range(config.epochs):
        loader.set_epoch(epoch)
        stats = train_one_epoch(
            model, loader, augment, optimizer, lr_at, epoch * steps,
            mean=mean, std=std, loss_fn=_loss_fn(config, teacher),
            desc=f"epoch {epoch + 1}/{config.epochs}",
        )  # fmt: skip
        top1 = evaluate(model, test_x, test_y, mean=mean, std=std, reference=teacher_pred)
        agreement = top1.pop("agreement", None)
        record = {
            "epoch": epoch + 1,
            "lr": lr_at((epoch + 1) * steps - 1),
            "train_loss": stats["loss"],
            "test_top1": top1,
            "teacher_agreement": agreement,
            "seconds": stats["seconds"],
            "img_per_s": stats["images"] / stats["seconds"],
        }
        with metrics_path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        save_checkpoint(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "augment": augment.state_dict(),
                "epoch": epoch + 1,
                "config": dataclasses.asdict(config),
            },
            out / "checkpoint.pt",
        )
        heads = "  ".join(f"{k} {v:.2f}%" for k, v in top1.items())
        tqdm.write(
            f"epoch {epoch + 1}/{config.epochs}  loss {stats['loss']:.4f}  {heads}  "
            f"{record['img_per_s']:.0f} img/s"
        )
    teacher_top1 = None
    if teacher_pred is not None:
        teacher_top1 = 100.0 * (teacher_pred == test_y).float().mean().item()
    summary = {
        "student": config.student,
        "test_top1": top1,
        "distillation": config.distillation,
        "teacher": config.teacher if teacher is not None else None,
        "teacher_top1": teacher_top1,
        "teacher_agreement": agreement,
        "evaluated_on": "validation" if config.validation else "test",
        "epochs": config.epochs,
        "wall_seconds": time.perf_counter() - start,
        "hardware": hardware(),
        "command": command or sys.argv,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
