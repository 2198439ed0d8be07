"""``train_teacher(config, out)``: train a CNN teacher fast, on the shared run engine.

The recipe (:mod:`deit.teacher_recipe`) is that of the fastest published
CIFAR-10 trainers (Page's "How to train your ResNet", tysam's hlb-CIFAR10,
Jordan's airbench), re-implemented for a CPU. This module runs it: epochs of
SGD steps, the test accuracy after each (with test-time augmentation, mirror
and ±1 px translations, as a second figure after the last), the summary. The
run directory, resume, the clean stop on SIGINT/SIGTERM and the refusal to
overwrite are the run engine's (:mod:`deit.rundir`), shared with student
training. The checkpoint is written every epoch and every
``checkpoint_every`` steps, enough to resume bit-exactly.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from deit.config import ConfigError
from deit.data import BatchLoader
from deit.decode_once import decode_all
from deit.distributed import World, pick_device
from deit.inputs import (
    cifar_splits,
    folder_selection,
    full_train_size,
    train_set_record,
    workers,
)
from deit.models.cnn import fastcnn_flops, param_count, teacher_spec
from deit.models.teachers import evaluate_teacher
from deit.rundir import RunDir, RunInterrupted, StopOnSignal, open_run
from deit.teacher_recipe import (
    AltFlipTranslate,
    Lookahead,
    TeacherConfig,
    TeacherRecipe,
    config_from_dict,
    lr_factor,
    validate_teacher_config,
)

__all__ = [
    "AltFlipTranslate",
    "Lookahead",
    "TeacherConfig",
    "TeacherRecipe",
    "config_from_dict",
    "lr_factor",
    "train_teacher",
    "validate_teacher_config",
]


# ----------------------------------------------------------------------------- the run


FREE_ON_RESUME = ("threads", "data_dir", "download", "checkpoint_every", "tta_every")
"""Settings a resumed teacher run may change; the rest would change the run."""


def _zero_sums() -> dict[str, float]:
    return {"loss": 0.0, "correct": 0, "images": 0, "seconds": 0.0}


def train_teacher(
    config: TeacherConfig | dict | None,
    out: str | Path,
    resume: bool | str = False,
    command: list[str] | None = None,
    max_steps: int | None = None,
    *,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train a teacher as ``config`` says; write the run directory ``out``; return the summary.

    The run directory, its refusal to overwrite a run (unless ``overwrite``),
    the clean stop on SIGINT/SIGTERM and the resume rules are the run
    engine's (:mod:`deit.rundir`), as for students. With ``resume=True`` the
    run continues bit-exactly from ``out/checkpoint.pt`` with its saved
    config (``config``: None, or changes of threads, data location,
    checkpoint or TTA frequency only; the same thread count keeps it
    bit-exact); a finished run returns its summary. ``resume="auto"`` starts
    the run, or resumes it if ``out`` holds it already (``config`` then must
    be the saved one but for those settings): a command that runs again as it
    is, after a requeued job. ``max_steps`` stops after
    that many steps in all, checkpoint written, and returns
    ``{"finished": False, ...}``: a long run can be split across sessions.
    The teacher trains on ``config.device`` (``auto``: the GPU if there is one).
    """
    if resume is not True:
        config = validate_teacher_config(config, images=_whole_folder(config))
    run, config = open_run(
        out, config, resume=resume, overwrite=overwrite, load_config=config_from_dict,
        free=FREE_ON_RESUME, command="deit teacher",
    )  # fmt: skip
    if run.finished:
        return run.read_json("summary.json")
    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _train(config, run, command, max_steps)
    finally:
        torch.set_num_threads(threads)


def _train(config: TeacherConfig, run: RunDir, command, max_steps) -> dict:
    """The body of :func:`train_teacher`, with the config settled and threads set."""
    world = World(device=pick_device(config.device))
    classes, (train_x, train_y), (test_x, test_y), train_set = _load(config)
    to = world.device
    train_x, train_y, test_x, test_y = (t.to(to) for t in (train_x, train_y, test_x, test_y))
    loader = BatchLoader(train_x, train_y, config.batch_size, seed=config.seed)
    per_epoch = len(loader)
    total = per_epoch * config.epochs
    recipe = TeacherRecipe(config, train_x, train_y, len(classes), total)
    state = run.load_checkpoint() if run.resumed else None
    step, sums, train_seconds, record = 0, _zero_sums(), 0.0, {}
    if state is not None:
        recipe.load_state_dict(state)
        step, sums, train_seconds = state["step"], dict(state["epoch_sums"]), state["train_seconds"]
    if run.resumed:
        record = run.keep_metrics(step // per_epoch)
        run.say_resumed(step, total)
    else:
        run.create(config)
    run.restore_clock(state)

    def save() -> None:
        run.save_checkpoint(recipe.state_dict() | {
            "step": step, "epoch_sums": dict(sums), "train_seconds": train_seconds,
            "done": step == total, "config": dataclasses.asdict(config), "classes": list(classes),
        })  # fmt: skip

    with StopOnSignal() as signalled:
        while step < total:
            epoch = step // per_epoch
            loader.set_epoch(epoch)
            order, size = loader.indices(), config.batch_size
            desc = f"teacher epoch {epoch + 1}/{config.epochs}"
            bar = tqdm(range(step - epoch * per_epoch, per_epoch), desc, per_epoch,
                       initial=step - epoch * per_epoch, leave=False)  # fmt: skip
            for i in bar:
                done = recipe.step(step, order[i * size : (i + 1) * size], epoch)
                step, train_seconds = step + 1, train_seconds + done["seconds"]
                sums = {key: sums[key] + done[key] for key in sums}
                bar.set_postfix(
                    loss=f"{sums['loss'] / sums['images']:.3f}",
                    img_s=f"{sums['images'] / sums['seconds']:.0f}",
                )
                stop = signalled() or (max_steps is not None and step >= max_steps)
                due = config.checkpoint_every and step % config.checkpoint_every == 0
                if step % per_epoch and (stop or due):  # the epoch's end saves after evaluating
                    save()
                    if stop:
                        return _stopped(run, step, total, signalled())
            bar.close()
            if step == total:
                recipe.finish()
            lr = recipe.optimizer.param_groups[-1]["lr"]
            record = _evaluate_epoch(recipe.model, (test_x, test_y), epoch, step, sums, config, lr)
            run.append_metrics(record)
            sums = _zero_sums()
            save()
            if step < total and (signalled() or (max_steps is not None and step >= max_steps)):
                return _stopped(run, step, total, signalled())
    summary = {
        "arch": config.arch,
        "spec": teacher_spec(recipe.model),
        "test_top1": record["test_top1"],
        "test_top1_tta": record["test_top1_tta"],
        "test_images": len(test_x),
        "evaluated_on": "validation" if config.validation else "test",
        "train_set": train_set,
        "classes": list(classes),
        "epochs": config.epochs,
        "steps": total,
        "train_seconds": train_seconds,
        "train_img_per_s": total * config.batch_size / train_seconds,
        "params": param_count(recipe.model),
        "forward_gflop_per_image": (
            fastcnn_flops(config.widths, train_x.shape[-1]) / 1e9
            if config.arch == "fastcnn"
            else None
        ),
        "load_average_at_end": list(os.getloadavg()),
    }
    return run.finish(summary, command, world)


def _whole_folder(config: TeacherConfig) -> int:
    """How many training images a folder teacher without ``train_size`` sees (0: not a folder).

    Its schedule follows the subset rule for that many images; CIFAR's whole
    set keeps the shipped recipe.
    """
    if config.dataset != "folder" or config.train_size or not config.data_dir:
        return 0
    return full_train_size(config)[0]


def _load(config: TeacherConfig):
    """(classes, train images and labels, test images and labels, train set record), in memory.

    The data are selected as for a student (:func:`deit.inputs.cifar_splits`,
    :func:`deit.inputs.folder_selection`): the same ``validation``,
    ``train_size`` and ``subset_seed`` give the same images. An image folder is
    decoded once at the teacher's ``img_size`` (short side resized to
    img_size/0.875, central square, as students are evaluated), train and
    evaluation alike, then trained on like CIFAR.
    """
    if config.dataset != "folder":
        data, kept = cifar_splits(config)
        if config.img_size and config.img_size != data.train_images.shape[-1]:
            raise ConfigError(f"img_size {config.img_size}: CIFAR images are 32 px")
        train, test = (data.train_images, data.train_labels), (data.test_images, data.test_labels)
        return data.classes, train, test, train_set_record(config, kept)
    classes, train, test, kept = folder_selection(config)
    decoded = (decode_all(s, config.img_size, workers(config)) for s in (train, test))
    return classes, *decoded, train_set_record(config, kept)


def _stopped(run: RunDir, step: int, total: int, signalled: bool) -> dict[str, Any]:
    """End a run cut short, checkpoint written: by a signal (raise) or by ``max_steps``."""
    if signalled:
        raise RunInterrupted(run.path, step, total, run.resume_with)
    return {"finished": False, "step": step, "total_steps": total}


def _evaluate_epoch(model, test_set, epoch: int, step: int, sums, config, lr: float) -> dict:
    """The metrics line of ``epoch`` (test top-1 when due, TTA too), printed and returned.

    Evaluated after every ``eval_every``-th epoch and the last; other lines have
    ``test_top1`` None.
    """
    tick, (test_x, test_y) = time.perf_counter(), test_set
    last = epoch + 1 == config.epochs
    due = last or (epoch + 1) % config.eval_every == 0
    top1 = evaluate_teacher(model, test_x, test_y) if due else None
    tta_due = last or (config.tta_every and (epoch + 1) % config.tta_every == 0)
    top1_tta = evaluate_teacher(model, test_x, test_y, tta=True) if tta_due else None
    record = {
        "epoch": epoch + 1,
        "step": step,
        "lr": lr,
        "train_loss": sums["loss"] / sums["images"],
        "train_top1": 100.0 * sums["correct"] / sums["images"],
        "test_top1": top1,
        "test_top1_tta": top1_tta,
        "seconds": sums["seconds"],
        "img_per_s": sums["images"] / sums["seconds"],
        "eval_seconds": time.perf_counter() - tick,
        "load_average": os.getloadavg()[0],  # > threads: a neighbour slowed this epoch
    }
    test = f"  test {top1:.2f}%" if top1 is not None else ""
    tta = f"  tta {top1_tta:.2f}%" if top1_tta is not None else ""
    tqdm.write(
        f"teacher epoch {epoch + 1}/{config.epochs}  loss {record['train_loss']:.4f}{test}{tta}  "
        f"{record['img_per_s']:.0f} img/s  {sums['seconds']:.0f} s"
    )
    return record
