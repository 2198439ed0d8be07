"""``train_teacher(config, out)``: train a CNN teacher fast; evaluate and export teachers.

The recipe is that of the fastest published CIFAR-10 trainers (Page's "How
to train your ResNet", tysam's hlb-CIFAR10, Jordan's airbench, 2018–2024),
re-implemented for a CPU: the ``fastcnn`` network with its data-initialised
whitening layer; SGD with Nesterov momentum on the label-smoothed (0.2)
cross-entropy; batch-norm shifts on a 64× larger learning rate; a short
linear warm-up from 0.2× to the peak over 23 % of the steps, then a linear
decay to 0.07×; alternating flips (every image mirrored in every other
epoch, the half that starts mirrored drawn once) and ±2 px reflect-padded
translations; Lookahead weight averaging whose strength ramps up cubically
towards the end; test-time augmentation (mirror, ±1 px translate) offered as
a second figure, never the headline.

A run writes the run-directory contract of DESIGN.md: ``config.json``,
``metrics.jsonl`` (one line per epoch), ``checkpoint.pt`` (atomic, every
epoch and every ``checkpoint_every`` steps, enough to resume bit-exactly)
and ``summary.json``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from deit.checkpoint import load_checkpoint, save_checkpoint
from deit.data import BatchLoader, load_cifar, truncate
from deit.data.augment import normalize, random_crop
from deit.hardware import hardware
from deit.models.teachers import (
    TEACHER_ARCHS,
    CheckpointError,
    Teacher,
    create_teacher,
    fastcnn_flops,
    fold_batchnorm,
    load_teacher,
    param_count,
    teacher_spec,
)

__all__ = [
    "AltFlipTranslate",
    "Lookahead",
    "TeacherConfig",
    "config_from_dict",
    "evaluate_teacher",
    "export_teacher",
    "lr_factor",
    "predict",
    "train_teacher",
    "tta_logits",
    "validate_teacher_config",
]


@dataclass(frozen=True)
class TeacherConfig:
    """Everything a teacher run needs; the defaults are the shipped teacher's recipe.

    ``lr`` is the peak SGD learning rate on the batch-mean loss for a batch of
    1024 (scaled linearly for other batches); ``weight_decay`` is SGD's, and
    the batch-norm shifts get ``bias_lr_scale``× the learning rate with
    1/``bias_lr_scale`` of the decay (the same shrink per step). ``ema`` is the
    per-step decay of the Lookahead average at the end of training (0: off),
    applied every ``ema_every`` steps.
    """

    arch: str = "fastcnn"
    widths: tuple[int, int, int] = (64, 256, 256)
    dataset: str = "cifar10"
    data_dir: str | None = None
    download: bool = True
    epochs: int = 16
    batch_size: int = 1024
    lr: float = 1.5
    bias_lr_scale: float = 64.0
    momentum: float = 0.85
    weight_decay: float = 0.0153 / 11.5
    label_smoothing: float = 0.2
    warmup: float = 0.23  # fraction of the steps spent warming up
    lr_start: float = 0.2  # first step's lr, as a fraction of the peak
    lr_end: float = 0.07  # last step's lr, as a fraction of the peak
    ema: float = 0.95
    ema_every: int = 5
    whiten_bias_epochs: int = 3
    translate: int = 2
    flip: bool = True
    train_size: int = 0  # 0: the whole training set; else its first N images
    test_size: int = 0  # 0: the whole test set
    seed: int = 0
    threads: int = 0  # 0: torch's default (all cores)
    channels_last: bool = True
    checkpoint_every: int = 10  # steps between mid-epoch checkpoints; 0: epoch ends only
    tta_every: int = 0  # epochs between TTA evaluations; 0: only after the last epoch

    @property
    def scaled_lr(self) -> float:
        """Peak learning rate for this batch size (``lr`` × batch/1024)."""
        return self.lr * self.batch_size / 1024


def validate_teacher_config(config: TeacherConfig) -> TeacherConfig:
    """Reject values no run can use, before any work is done."""
    if config.arch not in TEACHER_ARCHS:
        raise ValueError(f"arch must be one of {list(TEACHER_ARCHS)}, got {config.arch!r}")
    for name in ("epochs", "batch_size", "lr", "ema_every"):
        if getattr(config, name) <= 0:
            raise ValueError(f"{name} must be positive, got {getattr(config, name)}")
    for name in ("weight_decay", "translate", "train_size", "test_size", "threads"):
        if getattr(config, name) < 0:
            raise ValueError(f"{name} must not be negative, got {getattr(config, name)}")
    for name in ("momentum", "label_smoothing", "warmup", "ema"):
        if not 0 <= getattr(config, name) < 1:
            raise ValueError(f"{name} must be in [0, 1), got {getattr(config, name)}")
    return config


def config_from_dict(values: dict[str, Any]) -> TeacherConfig:
    """A :class:`TeacherConfig` from its JSON form (lists back to tuples)."""
    known = {f.name for f in dataclasses.fields(TeacherConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown teacher config keys {unknown}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return validate_teacher_config(TeacherConfig(**values))


# ----------------------------------------------------------------------------- schedule


def lr_factor(step: int, total: int, warmup: float, start: float, end: float) -> float:
    """Learning-rate multiplier at ``step`` of ``total``: linear start→1, then 1→end.

    A short warm-up guards the first steps at a large learning rate; a
    linear decay to a small floor is the best simple schedule for short runs.
    """
    peak = warmup * total
    if step < peak:
        return start + (1 - start) * step / peak
    return 1 + (end - 1) * (step - peak) / max(1.0, total - peak)


class Lookahead:
    """Lookahead weight averaging (Zhang et al., 2019) with a cubic ramp.

    Every ``every`` steps the slow copy of all float state (weights and BN
    statistics) moves towards the trained ("fast") weights,
    ``slow ← decay·slow + (1−decay)·fast``, and the fast weights restart from
    it. ``decay = ema**every · (step/total)**3``: no averaging early, when
    weights travel far; strong averaging at the end, when they jitter around
    a minimum. :meth:`finish` leaves the model holding the average.
    """

    def __init__(self, model: nn.Module, ema: float, every: int, total: int):
        self.ema, self.every, self.total = ema, every, total
        self.slow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def decay(self, step: int) -> float:
        """The averaging weight applied after step number ``step`` (counting from 1)."""
        return self.ema**self.every * (step / self.total) ** 3

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Average and reset after step ``step`` if it is a multiple of ``every``."""
        if step % self.every == 0:
            self._pull(model, self.decay(step))

    @torch.no_grad()
    def finish(self, model: nn.Module) -> None:
        """Load the slow (averaged) weights into ``model``."""
        self._pull(model, 1.0)

    def _pull(self, model: nn.Module, decay: float) -> None:
        for key, fast in model.state_dict().items():
            if fast.is_floating_point():
                slow = self.slow[key]
                slow.lerp_(fast, 1 - decay)
                fast.copy_(slow)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The slow weights, for checkpoints (and export: they are the average)."""
        return self.slow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the slow weights saved by :meth:`state_dict`."""
        for key, value in state.items():
            self.slow[key].copy_(value)


# ----------------------------------------------------------------------------- augmentation


class AltFlipTranslate:
    """Alternating flips and random translations for the teacher's training batches.

    Alternating flip (Jordan, 2024): a fixed random half of the images is
    mirrored in even epochs and the other half in odd ones, so every two
    epochs show each image both ways (random flips repeat views by chance).
    Translations are random per image. The generator's state is all a
    checkpoint needs.
    """

    def __init__(self, num_images: int, translate: int, flip: bool, seed: int = 0):
        g = torch.Generator().manual_seed(seed + 7919)
        self.mirrored = torch.rand(num_images, generator=g) < 0.5
        self.translate, self.flip = translate, flip
        self.generator = torch.Generator().manual_seed(seed + 104729)

    def __call__(self, x: torch.Tensor, indices: torch.Tensor, epoch: int) -> torch.Tensor:
        """Augment normalised images ``x``, the data set's images ``indices``, in ``epoch``."""
        if self.flip:
            mirror = (self.mirrored[indices] ^ bool(epoch % 2)).view(-1, 1, 1, 1)
            x = torch.where(mirror, x.flip(3), x)
        return random_crop(x, self.translate, self.generator, mode="reflect")

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The generator state, for exact resumption."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the generator state saved by :meth:`state_dict`."""
        self.generator.set_state(state["generator"])


# ----------------------------------------------------------------------------- evaluation


def tta_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Test-time-augmented logits: mirror, and ±1 px diagonal translations (6 views).

    Half the weight on the image and its mirror, a quarter on each of the
    two 1-pixel shifts (up-left, down-right, reflect-filled) with mirrors.
    """

    def mirrored(v: torch.Tensor) -> torch.Tensor:
        return 0.5 * (model(v) + model(v.flip(3)))

    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    h, w = x.shape[-2:]
    up_left, down_right = padded[..., :h, :w], padded[..., 2:, 2:]
    return 0.5 * mirrored(x) + 0.25 * (mirrored(up_left) + mirrored(down_right))


def _inference_model(teacher: nn.Module) -> nn.Module:
    """The folded, frozen network behind a :class:`Teacher` or a bare architecture."""
    return teacher.model if isinstance(teacher, Teacher) else fold_batchnorm(teacher)


@torch.inference_mode()
def predict(
    teacher: nn.Module, images: torch.Tensor, *, tta: bool = False, batch_size: int = 1000
) -> torch.Tensor:
    """Logits of a teacher for uint8 images ``N×3×H×W``, fed its own normalisation and size.

    ``teacher`` is a bare architecture (folded for inference here) or a
    :class:`Teacher` (whose folded network is used directly).
    """
    model = _inference_model(teacher)
    size = teacher.img_size
    outputs = []
    for start in range(0, len(images), batch_size):
        x = normalize(images[start : start + batch_size], teacher.mean, teacher.std)
        if x.shape[-1] != size or x.shape[-2] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
        x = x.contiguous(memory_format=torch.channels_last)
        outputs.append(tta_logits(model, x) if tta else model(x))
    return torch.cat(outputs)


def evaluate_teacher(
    teacher: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    tta: bool = False,
    batch_size: int = 1000,
) -> float:
    """Top-1 accuracy in percent of ``teacher`` on uint8 ``images``, optionally with TTA.

    The teacher sees its own normalisation and resolution, as it would
    through :class:`Teacher`.
    """
    logits = predict(teacher, images, tta=tta, batch_size=batch_size)
    return 100.0 * (logits.argmax(1) == labels).sum().item() / len(labels)


# ----------------------------------------------------------------------------- training


def _param_groups(model: nn.Module, config: TeacherConfig) -> list[dict[str, Any]]:
    """SGD groups: batch-norm parameters on a scaled lr; everything else as configured.

    The batch-norm shifts take ``bias_lr_scale``× the lr and 1/``bias_lr_scale``
    of the weight decay, so their decay per step matches the others'.
    """
    norm_ids = {
        id(p) for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()
    }
    norms = [p for p in model.parameters() if id(p) in norm_ids and p.requires_grad]
    others = [p for p in model.parameters() if id(p) not in norm_ids and p.requires_grad]
    lr, scale = config.scaled_lr, config.bias_lr_scale
    return [
        {"params": norms, "lr": lr * scale, "weight_decay": config.weight_decay / scale},
        {"params": others, "lr": lr, "weight_decay": config.weight_decay},
    ]


def _build_model(config: TeacherConfig, num_classes: int, train_x: torch.Tensor) -> nn.Module:
    """A freshly initialised teacher, its whitening layer (if any) set from the data."""
    torch.manual_seed(config.seed)
    kwargs: dict[str, Any] = {"num_classes": num_classes}
    if config.arch == "fastcnn":
        kwargs["widths"] = config.widths
    model = create_teacher(config.arch, **kwargs)
    if hasattr(model, "init_whitening"):
        model.init_whitening(normalize(train_x[:5000], model.mean, model.std))
    return model


def _zero_sums() -> dict[str, float]:
    return {"loss": 0.0, "correct": 0, "images": 0, "seconds": 0.0}


class _Run:
    """A teacher run in progress: data, model, optimiser, averaging, augmentation, counters.

    :meth:`state` is what a checkpoint holds and :meth:`load` restores it, so
    a resumed run continues exactly where the checkpoint was written.
    """

    def __init__(self, config: TeacherConfig, out: Path):
        self.session_start = time.perf_counter()
        self.config, self.out = config, out
        data = load_cifar(config.dataset, config.data_dir, download=config.download)
        data = truncate(data, config.train_size, config.test_size)
        self.train_x, self.train_y = data.train_images, data.train_labels
        self.test_x, self.test_y = data.test_images, data.test_labels
        self.memory = torch.channels_last if config.channels_last else torch.contiguous_format
        model = _build_model(config, data.num_classes, self.train_x)
        self.model = model.to(memory_format=self.memory)
        self.loader = BatchLoader(self.train_x, self.train_y, config.batch_size, seed=config.seed)
        self.steps_per_epoch = len(self.loader)
        self.total = self.steps_per_epoch * config.epochs
        self.optimizer = torch.optim.SGD(
            _param_groups(model, config),
            lr=config.scaled_lr,
            momentum=config.momentum,
            nesterov=True,
        )
        self.base_lrs = [group["lr"] for group in self.optimizer.param_groups]
        self.lookahead = (
            Lookahead(model, config.ema, config.ema_every, self.total) if config.ema else None
        )
        self.augment = AltFlipTranslate(
            len(self.train_x), config.translate, config.flip, config.seed
        )
        self.step, self.done, self.epoch_sums = 0, False, _zero_sums()
        self.train_seconds = self.wall_before = 0.0

    @property
    def wall_seconds(self) -> float:
        """Wall time of the whole run so far, earlier sessions included."""
        return self.wall_before + time.perf_counter() - self.session_start

    def train_step(self, indices: torch.Tensor, epoch: int) -> None:
        """One SGD step on the training images ``indices``, then the averaging and counters."""
        config, model, tick = self.config, self.model, time.perf_counter()
        whiten = getattr(model, "whiten", None)
        if whiten is not None:  # the whitening bias learns only in the first epochs
            whiten.bias.requires_grad_(epoch < config.whiten_bias_epochs)
        scale = lr_factor(self.step, self.total, config.warmup, config.lr_start, config.lr_end)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * scale
        x = self.augment(normalize(self.train_x[indices], model.mean, model.std), indices, epoch)
        labels = self.train_y[indices]
        logits = model(x.contiguous(memory_format=self.memory))
        loss = F.cross_entropy(logits, labels, label_smoothing=config.label_smoothing)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {loss.item()} at step {self.step}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        if self.lookahead:
            self.lookahead.update(model, self.step)
        sums, seconds = self.epoch_sums, time.perf_counter() - tick
        sums["loss"] += loss.item() * len(labels)
        sums["correct"] += int((logits.argmax(1) == labels).sum())
        sums["images"] += len(labels)
        sums["seconds"] += seconds
        self.train_seconds += seconds

    def train_epoch(self, epoch: int, max_steps: int | None) -> bool:
        """Train the rest of ``epoch``; False when ``max_steps`` stopped it early.

        Writes a checkpoint every ``checkpoint_every`` steps inside the epoch.
        """
        config, per_epoch = self.config, self.steps_per_epoch
        self.loader.set_epoch(epoch)
        order, size = self.loader.indices(), config.batch_size
        first = self.step - epoch * per_epoch
        desc = f"teacher epoch {epoch + 1}/{config.epochs}"
        with tqdm(
            range(first, per_epoch), desc, initial=first, total=per_epoch, leave=False
        ) as bar:
            for i in bar:
                if max_steps is not None and self.step >= max_steps:
                    return False
                self.train_step(order[i * size : (i + 1) * size], epoch)
                sums = self.epoch_sums
                bar.set_postfix(
                    loss=f"{sums['loss'] / sums['images']:.3f}",
                    img_s=f"{sums['images'] / sums['seconds']:.0f}",
                )
                every = config.checkpoint_every
                if every and self.step % every == 0 and self.step % per_epoch:
                    self.save()  # the epoch's end saves after evaluating
        return True

    def evaluate_epoch(self, epoch: int) -> dict[str, Any]:
        """Evaluate after ``epoch``; return its metrics line and reset the epoch's sums."""
        config, sums, tick = self.config, self.epoch_sums, time.perf_counter()
        top1 = evaluate_teacher(self.model, self.test_x, self.test_y)
        tta_due = self.step == self.total or (
            config.tta_every and (epoch + 1) % config.tta_every == 0
        )
        top1_tta = (
            evaluate_teacher(self.model, self.test_x, self.test_y, tta=True) if tta_due else None
        )
        record = {
            "epoch": epoch + 1,
            "step": self.step,
            "lr": self.optimizer.param_groups[-1]["lr"],
            "train_loss": sums["loss"] / sums["images"],
            "train_top1": 100.0 * sums["correct"] / sums["images"],
            "test_top1": top1,
            "test_top1_tta": top1_tta,
            "seconds": sums["seconds"],
            "img_per_s": sums["images"] / sums["seconds"],
            "eval_seconds": time.perf_counter() - tick,
            "load_average": os.getloadavg()[0],  # > threads: a neighbour slowed this epoch
        }
        tta = f"  tta {top1_tta:.2f}%" if top1_tta is not None else ""
        tqdm.write(
            f"teacher epoch {epoch + 1}/{config.epochs}  loss {record['train_loss']:.4f}  "
            f"test {top1:.2f}%{tta}  {record['img_per_s']:.0f} img/s  {sums['seconds']:.0f} s"
        )
        self.epoch_sums = _zero_sums()
        return record

    def state(self) -> dict[str, Any]:
        """Everything needed to resume exactly, plus what export and evaluation need."""
        return {
            "arch": self.model.arch,
            "spec": teacher_spec(self.model),
            "model": self.model.state_dict(),
            "averaged": self.lookahead.state_dict() if self.lookahead else None,
            "optimizer": self.optimizer.state_dict(),
            "augment": self.augment.state_dict(),
            "step": self.step,
            "epoch_sums": dict(self.epoch_sums),
            "train_seconds": self.train_seconds,
            "wall_seconds": self.wall_seconds,
            "done": self.done,
            "config": dataclasses.asdict(self.config),
        }

    def load(self, payload: dict[str, Any]) -> None:
        """Restore the state saved by :meth:`state`."""
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        if self.lookahead and payload["averaged"]:
            self.lookahead.load_state_dict(payload["averaged"])
        self.augment.load_state_dict(payload["augment"])
        self.step, self.done = payload["step"], payload["done"]
        self.epoch_sums = dict(payload["epoch_sums"])
        self.train_seconds = payload["train_seconds"]
        self.wall_before = payload["wall_seconds"]
        self.session_start = time.perf_counter()

    def save(self) -> None:
        """Write ``checkpoint.pt`` atomically."""
        save_checkpoint(self.state(), self.out / "checkpoint.pt")


def _resume_config(out: Path, config: TeacherConfig | None) -> TeacherConfig:
    """The saved config of the run in ``out``; a given config must agree with it."""
    path = out / "checkpoint.pt"
    if not path.is_file():
        raise FileNotFoundError(f"nothing to resume: {path} does not exist")
    saved = config_from_dict(load_checkpoint(path)["config"])
    if config is not None:
        free = {"threads", "data_dir", "download", "checkpoint_every", "tta_every"}
        differ = [
            f.name
            for f in dataclasses.fields(TeacherConfig)
            if f.name not in free and getattr(config, f.name) != getattr(saved, f.name)
        ]
        if differ:
            raise ValueError(f"cannot resume {out} with a different config: {differ} differ")
        saved = dataclasses.replace(saved, **{k: getattr(config, k) for k in free})
    return saved


def train_teacher(
    config: TeacherConfig | None,
    out: str | Path,
    resume: bool = False,
    command: list[str] | None = None,
    max_steps: int | None = None,
) -> dict[str, Any]:
    """Train a teacher as ``config`` says; write the run directory ``out``; return the summary.

    With ``resume=True`` the run continues bit-exactly from ``out/checkpoint.pt``
    (its saved config is used; a given ``config`` must agree with it, except
    for threads, data location, checkpoint and TTA frequency; the same thread
    count keeps it bit-exact). ``max_steps`` stops after that many steps in
    all, checkpoint written, and returns ``{"finished": False, ...}``: a long
    run can be split across sessions and resumed.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = _resume_config(out, config) if resume else validate_teacher_config(config)
    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _train(config, out, resume, command, max_steps)
    finally:
        torch.set_num_threads(threads)


def _train(config: TeacherConfig, out: Path, resume, command, max_steps) -> dict[str, Any]:
    """The body of :func:`train_teacher`, with the config settled and threads set."""
    run = _Run(config, out)
    metrics_path = out / "metrics.jsonl"
    if resume:
        run.load(load_checkpoint(out / "checkpoint.pt"))
        kept = metrics_path.read_text().splitlines() if metrics_path.exists() else []
        kept = kept[: run.step // run.steps_per_epoch]  # drop lines a crash left unsaved
        metrics_path.write_text("".join(line + "\n" for line in kept))
        record = json.loads(kept[-1]) if kept else {}
    else:
        (out / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
        metrics_path.write_text("")
        record = {}
    while run.step < run.total:
        epoch = run.step // run.steps_per_epoch
        if not run.train_epoch(epoch, max_steps):
            break
        if run.step == run.total and run.lookahead:
            run.lookahead.finish(run.model)
        record = run.evaluate_epoch(epoch)
        with metrics_path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        run.done = run.step == run.total
        run.save()
        if max_steps is not None and run.step >= max_steps:
            break
    if not run.done:
        run.save()
        return {"finished": False, "step": run.step, "total_steps": run.total}
    summary = _summary(run, record, command)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _summary(run: _Run, record: dict, command: list[str] | None) -> dict[str, Any]:
    """The run's ``summary.json``: final accuracies, time, throughput, machine, command."""
    config = run.config
    flops = fastcnn_flops(config.widths) if config.arch == "fastcnn" else None
    return {
        "arch": config.arch,
        "spec": teacher_spec(run.model),
        "test_top1": record["test_top1"],
        "test_top1_tta": record["test_top1_tta"],
        "test_images": len(run.test_x),
        "epochs": config.epochs,
        "steps": run.total,
        "train_seconds": run.train_seconds,
        "wall_seconds": run.wall_seconds,
        "train_img_per_s": run.total * config.batch_size / run.train_seconds,
        "params": param_count(run.model),
        "forward_gflop_per_image": flops / 1e9 if flops else None,
        "hardware": {**hardware(), "load_average_at_end": list(os.getloadavg())},
        "command": command or sys.argv,
    }


# ----------------------------------------------------------------------------- export

MAX_EXPORT_BYTES = 10 * 1024 * 1024


def export_teacher(run_dir_or_checkpoint: str | Path, dest: str | Path) -> Path:
    """Write a teacher run's averaged weights and metadata to a ``.safetensors`` file.

    The metadata (architecture and its settings, normalisation mean/std,
    input size, recorded test accuracy with and without TTA, the command)
    is what :func:`~deit.models.teachers.load_teacher` needs to rebuild the
    teacher with the inputs it was trained on. Refuses files over 10 MB,
    the size the package may ship.
    """
    from safetensors.torch import save_file

    source = Path(run_dir_or_checkpoint)
    checkpoint = source / "checkpoint.pt" if source.is_dir() else source
    model = load_teacher(checkpoint)
    summary_path = checkpoint.parent / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    spec = teacher_spec(model)
    meta = {key: json.dumps(value) for key, value in spec.items()}
    for key in ("test_top1", "test_top1_tta", "epochs", "train_seconds", "command"):
        if key in summary:
            meta[key] = json.dumps(summary[key])
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    size = sum(v.numel() * v.element_size() for v in state.values())
    if size > MAX_EXPORT_BYTES:
        raise CheckpointError(f"teacher weights take {size / 2**20:.1f} MiB, over the 10 MiB limit")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(dest), metadata=meta)
    return dest
