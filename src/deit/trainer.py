"""``deit.train(config, out)``: the student recipe, on the run engine of :mod:`deit.rundir`.

What is the student's own: its data on the device, the teacher that labels
its augmented batches, AdamW with warm-up and cosine decay, model EMA, and
the evaluation of every head after each epoch (or every ``eval_every``-th and
the last). Where files go, resume and stop are the run engine's.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from deit import epoch_log
from deit.checkpoint import CheckpointError
from deit.config import ConfigError, TrainConfig, config_from_dict, validate
from deit.data import DataError, TrainAugment
from deit.data.shards import ShardError
from deit.data.workers import worker_death
from deit.distill import distillation_loss
from deit.distributed import World, is_main_process, session
from deit.ema import ModelEMA
from deit.engine import ResizeInput, cosine_lr, count_correct, param_groups, train_one_epoch
from deit.hardware import bf16_warning
from deit.inputs import RunInputs, load_inputs, settle
from deit.models import create_model, describe_model
from deit.models.linear import using_cpu_linear
from deit.models.teacher_files import check_teacher_fits, load_teacher
from deit.models.teachers import Teacher, predict
from deit.pretrained import load_pretrained, read_pretrained
from deit.rundir import RunDir, RunFailed, RunInterrupted, StopOnSignal, open_run

FREE_ON_RESUME = ("data_dir", "val_shards", "shard_info", "download", "threads",
                  "checkpoint_every", "workers", "skip_bad_files", "eval_every",
                  "cpu_linear")  # fmt: skip
"""Settings a resumed run may change: where the data is, threads, checkpoint frequency,
loader processes, whether to skip a file that cannot be decoded, how often to evaluate
(none of them changes what is trained) and the CPU library of the student's linears
(which, like the thread count, changes only the last bits of its sums)."""


def _state(run: dict, step: int, partial: dict, config: TrainConfig, world: World) -> dict | None:
    """Everything a resumed run needs to continue on the same trajectory (None off rank 0).

    The weights and optimizer are the same on every rank; the random states
    (augmentation, drop-path) are each rank's own, so all of them are kept.
    """
    shared = {name: part.state_dict() for name, part in run.items() if name != "augment"}
    own = {"augment": run["augment"].state_dict(), "torch_rng": torch.get_rng_state()}
    if world.device.type == "cuda":
        own["cuda_rng"] = torch.cuda.get_rng_state(world.device)
    ranks = world.gather(own)
    if not world.is_main:
        return None
    return shared | {"ranks": ranks, "step": step, "partial": partial,
                     "config": dataclasses.asdict(config)}  # fmt: skip


def _restore(run: dict, state: dict, config: TrainConfig, world: World) -> tuple[int, dict]:
    """Load a checkpoint written from :func:`_state`; return (step, partial sums)."""
    if state.get("config", {}).get("student") != config.student:
        raise ConfigError(f"the checkpoint is not one of this run's student {config.student}")
    if "ranks" not in state:  # written before distributed training existed
        state["ranks"] = [{"augment": state["augment"], "torch_rng": state["torch_rng"]}]
    if len(state["ranks"]) != world.world_size:
        raise ConfigError(
            f"the checkpoint was written by {len(state['ranks'])} process(es); resume it with "
            f"as many (this job has {world.world_size})"
        )
    own = state["ranks"][world.rank]
    for name, part in run.items():
        part.load_state_dict(own["augment"] if name == "augment" else state[name])
    torch.set_rng_state(own["torch_rng"])
    if "cuda_rng" in own and world.device.type == "cuda":
        torch.cuda.set_rng_state(own["cuda_rng"], world.device)
    return state["step"], state["partial"]


def build_teacher(
    config: TrainConfig,
    num_classes: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    classes: tuple[str, ...] | None = None,
) -> Teacher | None:
    """The frozen teacher, fed the student's batches, or None without distillation.

    A teacher that cannot be loaded, predicts another number of classes, or
    records class names other than ``classes`` raises ``ConfigError``.
    """
    if config.distillation == "none":
        return None
    try:
        network = load_teacher(config.teacher, arch=config.teacher_arch or None)
    except (FileNotFoundError, CheckpointError) as err:
        raise ConfigError(f"teacher {config.teacher!r}: {err}") from None
    check_teacher_fits(network, num_classes, list(classes) if classes else None, config.teacher)
    return Teacher(network, input_mean=mean, input_std=std, bf16=config.teacher_bf16)


def build_augment(
    config: TrainConfig,
    num_classes: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    rank: int = 0,
    device: torch.device | str = "cpu",
    padding: int | None = None,
) -> TrainAugment:
    """The configured training augmentation (crop, flip, RandAugment, erasing, mixing).

    Its random draws happen on ``device`` (where the batches are); each rank
    of a distributed job draws its own (rank 0 as a single process would).
    ``padding`` of the random crop: ``crop_padding`` unless given (0 when the
    loader already cropped each image).
    """
    padding = config.crop_padding if padding is None else padding
    return TrainAugment(
        num_classes, mean, std, padding=padding, hflip=config.hflip,
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
    state, _ = read_pretrained(checkpoint)
    replaced = load_pretrained(model, state)
    note = f"; new {', '.join(replaced)}" if replaced else ""
    if world.is_main:
        tqdm.write(f"started from {checkpoint}{note}")


def train(
    config: TrainConfig | dict | None,
    out: str | Path,
    *,
    resume: bool | str = False,
    overwrite: bool = False,
    command: list[str] | None = None,
) -> dict:
    """Train ``config.student``; write the run directory ``out``; return the summary.

    The loss is ``config.distillation`` (none, soft or hard) from
    ``config.teacher``, which sees exactly the student's augmented batch
    through its own normalisation. Every head of the student is evaluated on
    the test set (or, with ``config.validation``, on a held-out slice of the
    training set) after each epoch, with the teacher–student agreement; with
    ``config.eval_every`` N, after every N-th epoch and the last only (the
    other epochs' metrics lines have ``test_top1`` None).

    ``out`` follows the run rules of :mod:`deit.rundir`: a directory that
    already holds a run is refused (``overwrite=True`` replaces it), and a
    teacher that cannot be loaded or predicts another number of classes
    raises ``ConfigError``, both before any file is written. The checkpoint
    is rewritten atomically after every epoch (and every
    ``config.checkpoint_every`` steps), and when SIGINT or SIGTERM arrives
    (then :class:`~deit.rundir.RunInterrupted` is raised). ``resume=True``
    continues the run in ``out`` with its saved config (``config``: None, or
    changes of the data location, threads or checkpoint frequency only), on
    the same trajectory: a run killed at any moment and resumed ends with the
    same weights as one never interrupted (same machine and thread count).
    ``resume="auto"`` starts the run, or resumes it if ``out`` holds it
    already, for a command that runs again as it is (a relaunched torchrun job, a
    requeued job): ``config`` must then be the saved one but for those same
    free settings, or what the run settled itself (epochs from
    ``budget_images``, the subset's fingerprint).

    Under torchrun every rank trains on its shard of each global batch of
    ``batch_size × world size`` images (the learning rate follows the global
    batch), its teacher labels its own shard, the metrics are summed over
    ranks, and only rank 0 writes files and shows progress.
    """
    if resume is not True:
        config = validate(config)
    run, config = open_run(
        out, config, resume=resume, overwrite=overwrite, load_config=config_from_dict,
        free=FREE_ON_RESUME, command="deit train", writer=is_main_process(),
        derived=_settled_fields(config) if resume == "auto" else (),
    )  # fmt: skip
    if run.finished:
        return run.read_json("summary.json")
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads or threads)
    try:
        with session(config.device) as world, using_cpu_linear(config.cpu_linear):
            return _train(config, run, command, world)
    finally:
        torch.set_num_threads(threads)  # the caller's own count back (a notebook, a test)


def _settled_fields(config: TrainConfig) -> tuple[str, ...]:
    """The fields :func:`~deit.inputs.settle` sets from the data, which ``config`` (as a command
    gives it) holds unsettled: the saved config of its run holds them settled."""
    budgeted = ("epochs", "warmup_epochs", "eval_every", "img_size_schedule",
                "token_keep_schedule")  # fmt: skip
    return (budgeted if config.budget_images else ()) + (
        () if config.subset_sha256 else ("subset_sha256",)
    )


def _evaluate_all(model, inputs: RunInputs, world: World, **kwargs) -> tuple[dict, int]:
    """Top-1 of every head in percent on the whole evaluation set (each rank's share, summed),
    and the number of images that is."""
    counts = count_correct(model, inputs.eval_batches(), mean=inputs.mean, std=inputs.std,
                           **kwargs)  # fmt: skip
    names = [name for name in counts if name != "images"]  # the same order on every rank
    *right, total = world.sum([counts[name] for name in names] + [counts["images"]])
    return {name: 100.0 * c / total for name, c in zip(names, right, strict=True)}, int(total)


def _teacher_on_eval(teacher: Teacher, inputs: RunInputs, world: World):
    """The teacher's classes for this rank's evaluation images; its top-1 over all ranks."""
    predicted, right, seen = [], 0, 0
    for images, labels in inputs.eval_batches():
        classes = predict(teacher, images).argmax(1)
        predicted.append(classes)
        right, seen = right + int((classes == labels).sum()), seen + len(labels)
    right, seen = world.sum([right, seen])
    return torch.cat(predicted), 100.0 * right / seen


def _build_student(config: TrainConfig, num_classes: int, world: World) -> torch.nn.Module:
    """The fresh student on this rank's device (the same initial weights on every rank)."""
    model = create_model(
        config.student,
        num_classes=num_classes,
        drop_path_rate=config.drop_path_rate,
        dynamic_img_size=bool(config.img_size_schedule),
        token_keep=config.token_keep,
        **config.model_overrides(),
    ).to(world.device)
    if world.distributed:
        torch.manual_seed(config.seed + world.rank)  # each rank its own drop-path draws
    return model


def _train(config: TrainConfig, run: RunDir, command, world: World) -> dict:
    """The body of :func:`train`, run by every rank of the job."""
    torch.manual_seed(config.seed)
    inputs = load_inputs(config, world)
    config = settle(config, inputs, world.world_size)  # epochs from budget_images; the subset
    num_classes, mean, std = inputs.num_classes, inputs.mean, inputs.std
    teacher = build_teacher(config, num_classes, mean, std, classes=inputs.classes)
    warning = bf16_warning(teacher is not None and config.teacher_bf16, config.bf16, world.device)
    if warning and world.is_main:
        print(warning, file=sys.stderr, flush=True)
    teacher_pred = teacher_top1 = None
    if teacher is not None:
        teacher = teacher.to(world.device)
        teacher_pred, teacher_top1 = _teacher_on_eval(teacher, inputs, world)
    model = _build_student(config, num_classes, world)
    loader = inputs.train
    augment = build_augment(config, num_classes, mean, std, rank=world.rank, device=world.device,
                            padding=inputs.crop_padding)  # fmt: skip
    peak_lr = config.peak_lr(world.world_size)
    optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay), lr=peak_lr)
    steps = len(loader)
    warmup, total = round(config.warmup_epochs * steps), config.epochs * steps

    def lr_at(step: int) -> float:
        return cosine_lr(step, total, warmup, peak_lr, config.min_lr)

    state = run.load_checkpoint() if run.resumed else None
    if config.init_from and state is None:
        _start_from(model, config.init_from, world)
    trained = world.wrap(model)
    step_model = ResizeInput(torch.compile(trained) if config.compile else trained)
    parts = {"model": model, "optimizer": optimizer, "augment": augment}
    ema = ModelEMA(model, config.ema_decay) if config.ema_decay else None
    if ema is not None:
        parts["ema"] = ema
    step, partial, record = 0, epoch_log.zero_stats(), {}
    if state is not None:
        step, partial = _restore(parts, state, config, world)
    if run.resumed:
        record = run.keep_metrics(step // steps)
        run.say_resumed(step, total)
    else:
        run.create(config)
    run.restore_clock(state)

    def save(at_step: int, stats: dict) -> None:
        checkpoint = _state(parts, at_step, stats, config, world)
        if checkpoint is not None:  # with the class names, for deit predict and deit.load
            run.record_skipped(inputs.skipped)
            run.save_checkpoint(checkpoint | {"classes": list(inputs.classes)})

    sync_every = 1 if world.device.type == "cpu" else 50
    evaluation = {"img_size": config.img_size}
    loss_fn = build_loss(config, teacher)
    with StopOnSignal() as signalled:
        interrupted = False

        def pause(done: int) -> bool:  # asked every sync_every steps, on every rank alike
            nonlocal interrupted
            interrupted = world.any(signalled())
            every = config.checkpoint_every
            return interrupted or (every > 0 and done % every == 0)

        try:
            while step < total:
                epoch = step // steps
                loader.set_epoch(epoch)
                step_model.size = config.img_size_at(epoch)
                model.token_keep = config.token_keep_at(epoch)
                offset = step - epoch * steps
                stats = train_one_epoch(
                    step_model, loader.iter_from(offset), augment, optimizer, lr_at, step,
                    loss_fn=loss_fn, stop=pause, clip_grad=config.clip_grad, bf16=config.bf16,
                    ema=ema, desc=f"epoch {epoch + 1}/{config.epochs}", total=steps, initial=offset,
                    sync_every=sync_every, show=world.is_main,
                )  # fmt: skip
                step += stats["steps"]
                partial = epoch_log.add_stats(partial, stats, world)
                if step < (epoch + 1) * steps:  # paused mid-epoch: a signal or a periodic save
                    save(step, partial)
                    if interrupted:
                        raise RunInterrupted(run.path, step, total, run.resume_with)
                    continue
                top1 = ema_top1 = evaluated = None  # not an eval_every-th epoch nor the last
                if (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs:
                    top1, evaluated = _evaluate_all(model, inputs, world, reference=teacher_pred,
                                                    **evaluation)  # fmt: skip
                    if ema is not None:
                        ema_top1, _ = _evaluate_all(ema.module, inputs, world, **evaluation)
                record = epoch_log.epoch_record(epoch, lr_at(step - 1), partial, top1, evaluated)
                if ema is not None:
                    record["test_top1_ema"] = ema_top1
                # The line first: a resume drops lines the checkpoint lacks.
                run.append_metrics(record)
                partial = epoch_log.zero_stats()
                save(step, partial)
                if world.is_main:
                    epoch_log.print_epoch(record, config.epochs)
                if interrupted and step < total:
                    raise RunInterrupted(run.path, step, total, run.resume_with)
        except DataError as err:  # a file that fails to decode mid-run, or a shard
            fix = "Remove or replace the file and resume, or resume with --set " \
                "skip_bad_files=true to skip such files"  # fmt: skip
            if isinstance(err, ShardError):  # missing, cut short, a sample without its label
                fix = "Replace the shard and resume"
            stopped = f"{err}; the run stopped in epoch {epoch + 1}. {fix}"
            raise RunFailed(stopped, run.path) from None
        except RuntimeError as err:  # a loader worker killed (out of memory?) or crashed
            if not (death := worker_death(err)):
                raise
            stopped = (f"{death}; the run stopped in epoch {epoch + 1}. If memory ran out, "
                       "resume with fewer workers (--set workers=N)")  # fmt: skip
            raise RunFailed(stopped, run.path) from None
    summary = _summary(config, model, record, teacher_top1) | {"train_set": inputs.train_set}
    if inputs.skipped:
        summary["skipped_files"] = len(inputs.skipped)
    return run.finish(summary, command, world)


def _summary(config, model, record, teacher_top1: float | None) -> dict:
    """The run's results for summary.json (the run engine adds time, hardware and command)."""
    return {
        "student": config.student,
        "model": describe_model(model, config.student),
        "test_top1": record.get("test_top1"),
        "test_top1_ema": record.get("test_top1_ema"),
        "distillation": config.distillation,
        "teacher": config.teacher if teacher_top1 is not None else None,
        "teacher_top1": teacher_top1,
        "teacher_agreement": record.get("teacher_agreement"),
        "evaluated_on": "validation" if config.validation else "test",
        "test_images": record.get("test_images"),  # test_size may keep only the first ones
        "epochs": config.epochs,
    }
