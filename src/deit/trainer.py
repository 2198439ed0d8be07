"""``deit.train(config, out)``: a training run and its run directory.

The run directory holds ``config.json`` (enough to rerun), ``metrics.jsonl``
(one line per epoch), ``checkpoint.pt`` (the latest state, rewritten
atomically every epoch) and, once finished, ``summary.json``.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from deit.checkpoint import save_checkpoint
from deit.config import TrainConfig, save_config
from deit.data import BatchLoader, CropFlip, holdout_validation, load_cifar, truncate
from deit.data.augment import dataset_stats
from deit.engine import cosine_lr, evaluate, param_groups, train_one_epoch
from deit.models import create_model


def hardware() -> dict[str, Any]:
    """The machine a run used, for the summary: CPU model, threads, torch version."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "threads": torch.get_num_threads(), "torch": torch.__version__}


def train(config: TrainConfig, out: str | Path, command: list[str] | None = None) -> dict:
    """Train ``config.student`` on labels; write the run directory; return the summary.

    Evaluates every head of the student on the test set (or, with
    ``config.validation``, on a held-out slice of the training set) after
    each epoch.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
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

    save_config(config, out / "config.json")
    metrics_path = out / "metrics.jsonl"
    metrics_path.write_text("")
    start = time.perf_counter()
    for epoch in range(config.epochs):
        loader.set_epoch(epoch)
        stats = train_one_epoch(
            model, loader, augment, optimizer, lr_at, epoch * steps,
            mean=mean, std=std, label_smoothing=config.label_smoothing,
            desc=f"epoch {epoch + 1}/{config.epochs}",
        )  # fmt: skip
        top1 = evaluate(model, test_x, test_y, mean=mean, std=std)
        record = {
            "epoch": epoch + 1,
            "lr": lr_at((epoch + 1) * steps - 1),
            "train_loss": stats["loss"],
            "test_top1": top1,
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
    summary = {
        "student": config.student,
        "test_top1": top1,
        "evaluated_on": "validation" if config.validation else "test",
        "epochs": config.epochs,
        "wall_seconds": time.perf_counter() - start,
        "hardware": hardware(),
        "command": command or sys.argv,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
