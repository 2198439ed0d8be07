"""``deit.train(config, out)``: a training run and its run directory.

The run directory holds ``config.json`` (enough to rerun), ``metrics.jsonl``
(one line per epoch), ``checkpoint.pt`` (the latest state, rewritten
atomically every epoch) and, once finished, ``summary.json``.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
import threading
import time
from pathlib import Path

import torch
from tqdm import tqdm

from deit.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from deit.config import ConfigError, TrainConfig, save_config
from deit.data import BatchLoader, TrainAugment, holdout_validation, load_cifar, truncate
from deit.data.augment import dataset_stats
from deit.distill import distillation_loss
from deit.distributed import World, session
from deit.ema import ModelEMA
from deit.engine import ResizeInput, cosine_lr, evaluate, param_groups, train_one_epoch
from deit.hardware import hardware
from deit.models import create_model
from deit.models.teachers import Teacher, load_teacher
from deit.teacher_training import predict


class RunInterrupted(Exception):
    """A run stopped by SIGINT/SIGTERM after saving its checkpoint."""

    def __init__(self, out: Path, step: int, total: int, resume_with: str | None = None):
        self.out, self.step, self.total = out, step, total
        resume_with = resume_with or f"deit train --resume {out}"
        super().__init__(
            f"interrupted at step {step} of {total}; checkpoint saved. Continue with: {resume_with}"
        )


class StopOnSignal:
    """Context manager turning SIGINT/SIGTERM into a flag the training loop polls.

    The loop finishes its current step, saves a checkpoint and stops, instead
    of dying mid-write. A second signal falls through to the default action.
    """

    def __enter__(self) -> StopOnSignal:
        self.raised = False
        self.previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        if threading.current_thread() is threading.main_thread():
            for s in self.previous:
                signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.raised = True
        signal.signal(signum, self.previous[signum])

    def __call__(self) -> bool:
        return self.raised

    def __exit__(self, *exc) -> None:
        if threading.current_thread() is threading.main_thread():
            for s, handler in self.previous.items():
                signal.signal(s, handler)


def _zero_stats() -> dict[str, float]:
    """Running sums of an epoch in progress."""
    return {"loss_sum": 0.0, "images": 0, "steps": 0, "seconds": 0.0}


def _save(
    run: dict, path: Path, config: TrainConfig, step: int, partial: dict, wall: float, world: World
) -> None:
    """Write everything a resumed run needs to continue on the same trajectory.

    The weights and optimizer are the same on every rank; the random states
    (augmentation, drop-path) are each rank's own, so all of them are kept.
    """
    shared = {name: part.state_dict() for name, part in run.items() if name != "augment"}
    own = {"augment": run["augment"].state_dict(), "torch_rng": torch.get_rng_state()}
    if world.device.type == "cuda":
        own["cuda_rng"] = torch.cuda.get_rng_state(world.device)
    ranks = world.gather(own)
    if not world.is_main:
        return
    state = shared | {"ranks": ranks, "step": step, "partial": partial}
    state |= {"wall_seconds": wall, "config": dataclasses.asdict(config)}
    save_checkpoint(state, path)


def _restore(run: dict, path: Path, config: TrainConfig, world: World) -> tuple[int, dict, float]:
    """Load a checkpoint written by :func:`_save`; return (step, partial sums, wall time)."""
    state = load_checkpoint(path)
    if state.get("config", {}).get("student") != config.student:
        raise ConfigError(f"{path} is not a checkpoint of this run's student {config.student}")
    if "ranks" not in state:  # written before distributed training existed
        state["ranks"] = [{"augment": state["augment"], "torch_rng": state["torch_rng"]}]
    if len(state["ranks"]) != world.world_size:
        raise ConfigError(
            f"{path} was written by {len(state['ranks'])} process(es); resume it with as many "
            f"(this job has {world.world_size})"
        )
    own = state["ranks"][world.rank]
    for name, part in run.items():
        part.load_state_dict(own["augment"] if name == "augment" else state[name])
    torch.set_rng_state(own["torch_rng"])
    if "cuda_rng" in own and world.device.type == "cuda":
        torch.cuda.set_rng_state(own["cuda_rng"], world.device)
    return state["step"], state["partial"], state["wall_seconds"]


def _keep_metrics(path: Path, epochs: int, world: World) -> dict:
    """Drop metric lines of epochs the checkpoint does not contain; return the last kept."""
    lines = path.read_text().splitlines()[:epochs] if path.exists() else []
    if world.is_main:
        path.write_text("".join(line + "\n" for line in lines))
    return json.loads(lines[-1]) if lines else {}


def _epoch_record(epoch: int, lr: float, sums: dict, top1: dict) -> dict:
    """One line of metrics.jsonl."""
    agreement = top1.pop("agreement", None)
    return {
        "epoch": epoch + 1,
        "lr": lr,
        "train_loss": sums["loss_sum"] / sums["images"],
        "test_top1": top1,
        "teacher_agreement": agreement,
        "seconds": sums["seconds"],
        "img_per_s": sums["images"] / sums["seconds"],
    }


def _print_epoch(record: dict, epochs: int) -> None:
    """The one line per epoch shown under the progress bar."""
    heads = "  ".join(f"{k} {v:.2f}%" for k, v in record["test_top1"].items())
    tqdm.write(
        f"epoch {record['epoch']}/{epochs}  loss {record['train_loss']:.4f}  {heads}  "
        f"{record['img_per_s']:.0f} img/s"
    )


def build_teacher(
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
    return Teacher(network, input_mean=mean, input_std=std, bf16=config.teacher_bf16)


def build_augment(
    config: TrainConfig,
    num_classes: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    rank: int = 0,
    device: torch.device | str = "cpu",
) -> TrainAugment:
    """The configured training augmentation (crop, flip, RandAugment, erasing, mixing).

    Its random draws happen on ``device`` (where the batches are); each rank
    of a distributed job draws its own (rank 0 as a single process would).
    """
    return TrainAugment(
        num_classes, mean, std, padding=config.crop_padding, hflip=config.hflip,
        randaugment_ops=config.randaugment_ops, randaugment_magnitude=config.randaugment_magnitude,
        erasing=config.random_erasing, mixup=config.mixup, cutmix=config.cutmix,
        label_smoothing=config.label_smoothing, seed=config.seed + 104_729 * rank, device=device,
    )  # fmt: skip


def build_loss(config: TrainConfig, teacher: Teacher | None):
    """``loss(outputs, labels, x)``: the configured loss; the teacher sees the student's x."""

    def loss(outputs, targets: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        teacher_logits = teacher(x) if teacher is not None else None
        # Mixup/CutMix targets arrive already smoothed; class indices get smoothed here.
        smoothing = config.label_smoothing if targets.dtype == torch.long else 0.0
        return distillation_loss(
            outputs,
            targets,
            teacher_logits,
            config.distillation,
            alpha=config.distillation_alpha,
            tau=config.distillation_tau,
            label_smoothing=smoothing,
        )

    return loss


def _start_from(model: torch.nn.Module, checkpoint: str, world: World) -> None:
    """Load pretrained weights into the fresh student (fine-tuning), saying what was replaced."""
    from deit.finetune import load_pretrained, read_pretrained

    state, _ = read_pretrained(checkpoint)
    replaced = load_pretrained(model, state)
    note = f"; new {', '.join(replaced)}" if replaced else ""
    if world.is_main:
        tqdm.write(f"started from {checkpoint}{note}")


def train(
    config: TrainConfig, out: str | Path, command: list[str] | None = None, resume: bool = False
) -> dict:
    """Train ``config.student``; write the run directory ``out``; return the summary.

    The loss is ``config.distillation`` (none, soft or hard) from
    ``config.teacher``, which sees exactly the student's augmented batch
    through its own normalisation. Every head of the student is evaluated on
    the test set (or, with ``config.validation``, on a held-out slice of the
    training set) after each epoch, with the teacher–student agreement.
    A teacher that cannot be loaded or predicts another number of classes
    raises ``ConfigError`` before the run directory is created.

    The checkpoint is rewritten atomically after every epoch and when SIGINT
    or SIGTERM arrives (then :class:`RunInterrupted` is raised); with
    ``resume=True`` the run continues from it on the same trajectory, so a
    run killed at any moment and resumed ends with the same weights as one
    never interrupted (same machine and thread count).

    Under torchrun every rank trains on its shard of each global batch of
    ``batch_size × world size`` images (the learning rate follows the global
    batch), its teacher labels its own shard, the metrics are summed over
    ranks, and only rank 0 writes files and shows progress.
    """
    with session(config.device) as world:
        return _train(config, Path(out), command, resume, world)


def _load_data(config: TrainConfig, world: World):
    """Training set on the device, and this rank's share of the evaluation set."""
    data = load_cifar(config.dataset, config.data_dir, download=config.download)
    if config.validation:
        data = holdout_validation(data)
    data = truncate(data, config.train_size, config.test_size)
    to = world.device
    train_set = (data.train_images.to(to), data.train_labels.to(to))
    test_set = (data.test_images[world.rank :: world.world_size].to(to),
                data.test_labels[world.rank :: world.world_size].to(to))  # fmt: skip
    return data.num_classes, train_set, test_set


def _evaluate_all(model, test_set, mean, std, world: World, **kwargs) -> dict[str, float]:
    """Top-1 of every head on the whole evaluation set: each rank's share, summed."""
    images = test_set[0]
    top1 = evaluate(model, *test_set, mean=mean, std=std, **kwargs)
    names = list(top1)  # the same order on every rank
    *counts, total = world.sum([top1[name] * len(images) for name in names] + [len(images)])
    return {name: count / total for name, count in zip(names, counts, strict=True)}


def _build_student(config: TrainConfig, num_classes: int, world: World) -> torch.nn.Module:
    """The fresh student on this rank's device (the same initial weights on every rank)."""
    model = create_model(
        config.student,
        num_classes=num_classes,
        drop_path_rate=config.drop_path_rate,
        dynamic_img_size=bool(config.img_size_schedule),
        **config.model_overrides(),
    ).to(world.device)
    if world.distributed:
        torch.manual_seed(config.seed + world.rank)  # each rank its own drop-path draws
    return model


def _train(
    config: TrainConfig, out: Path, command: list[str] | None, resume: bool, world: World
) -> dict:
    """The body of :func:`train`, run by every rank of the job."""
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    num_classes, (train_x, train_y), test_set = _load_data(config, world)
    mean, std = dataset_stats(config.dataset)

    teacher = build_teacher(config, num_classes, mean, std)
    teacher_pred = None
    if teacher is not None:
        teacher = teacher.to(world.device)
        teacher_pred = predict(teacher, test_set[0]).argmax(1)
    model = _build_student(config, num_classes, world)
    loader = BatchLoader(
        train_x, train_y, config.batch_size, seed=config.seed,
        repeats=config.repeated_augmentation, rank=world.rank, world_size=world.world_size,
    )  # fmt: skip
    augment = build_augment(config, num_classes, mean, std, rank=world.rank, device=world.device)
    peak_lr = config.peak_lr(world.world_size)
    optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay), lr=peak_lr)
    steps = len(loader)
    warmup, total = round(config.warmup_epochs * steps), config.epochs * steps

    def lr_at(step: int) -> float:
        return cosine_lr(step, total, warmup, peak_lr, config.min_lr)

    if config.init_from and not resume:
        _start_from(model, config.init_from, world)
    trained = world.wrap(model)
    step_model = ResizeInput(torch.compile(trained) if config.compile else trained)
    run = {"model": model, "optimizer": optimizer, "augment": augment}
    ema = ModelEMA(model, config.ema_decay) if config.ema_decay else None
    if ema is not None:
        run["ema"] = ema
    step, partial, wall_before = 0, _zero_stats(), 0.0
    metrics_path, record = out / "metrics.jsonl", {}
    if resume:
        step, partial, wall_before = _restore(run, out / "checkpoint.pt", config, world)
        record = _keep_metrics(metrics_path, step // steps, world)
    elif world.is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(config, out / "config.json")
        metrics_path.write_text("")
    start = time.perf_counter()

    def save(at_step: int, stats: dict[str, float]) -> None:
        wall = wall_before + time.perf_counter() - start
        _save(run, out / "checkpoint.pt", config, at_step, stats, wall, world)

    sync_every = 1 if world.device.type == "cpu" else 50
    with StopOnSignal() as stop:
        for epoch in range(step // steps, config.epochs):
            loader.set_epoch(epoch)
            step_model.size = config.img_size_at(epoch)
            offset = step - epoch * steps
            stats = train_one_epoch(
                step_model, loader.iter_from(offset), augment, optimizer, lr_at, step,
                loss_fn=build_loss(config, teacher), stop=lambda: world.any(stop()),
                clip_grad=config.clip_grad, bf16=config.bf16, ema=ema,
                desc=f"epoch {epoch + 1}/{config.epochs}", total=steps - offset,
                sync_every=sync_every, show=world.is_main,
            )  # fmt: skip
            step += stats["steps"]
            partial = _add_stats(partial, stats, world)
            if step < (epoch + 1) * steps:  # stopped by a signal mid-epoch
                save(step, partial)
                raise RunInterrupted(out, step, total)
            evaluation = {"mean": mean, "std": std, "img_size": config.img_size}
            top1 = _evaluate_all(model, test_set, world=world, reference=teacher_pred, **evaluation)
            record = _epoch_record(epoch, lr_at(step - 1), partial, top1)
            if ema is not None:
                ema_top1 = _evaluate_all(ema.module, test_set, world=world, **evaluation)
                record["test_top1_ema"] = ema_top1
            if world.is_main:  # the line first: a resume drops lines the checkpoint lacks
                with metrics_path.open("a") as f:
                    f.write(json.dumps(record) + "\n")
            partial = _zero_stats()
            save(step, partial)
            if world.is_main:
                _print_epoch(record, config.epochs)
    summary = _summary(config, record, teacher_pred, test_set, world, command)
    summary["wall_seconds"] = wall_before + time.perf_counter() - start
    if world.is_main:
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _add_stats(partial: dict, stats: dict, world: World) -> dict:
    """Add one rank's epoch sums to the running ones, summed over ranks (seconds: slowest)."""
    loss_sum, images = world.sum([stats["loss_sum"], stats["images"]])
    seconds = max(world.gather(stats["seconds"]))
    return {
        "loss_sum": partial["loss_sum"] + loss_sum,
        "images": partial["images"] + int(images),
        "steps": partial["steps"] + stats["steps"],
        "seconds": partial["seconds"] + seconds,
    }


def _summary(config, record, teacher_pred, test_set, world: World, command) -> dict:
    """The run's summary.json (without the wall time, which the caller adds last)."""
    teacher_top1 = None
    if teacher_pred is not None:
        right = world.sum([float((teacher_pred == test_set[1]).sum()), len(test_set[1])])
        teacher_top1 = 100.0 * right[0] / right[1]
    return {
        "student": config.student,
        "test_top1": record.get("test_top1"),
        "test_top1_ema": record.get("test_top1_ema"),
        "distillation": config.distillation,
        "teacher": config.teacher if teacher_pred is not None else None,
        "teacher_top1": teacher_top1,
        "teacher_agreement": record.get("teacher_agreement"),
        "evaluated_on": "validation" if config.validation else "test",
        "epochs": config.epochs,
        "hardware": hardware(world),
        "command": command or sys.argv,
    }
