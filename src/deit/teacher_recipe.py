"""The teacher's recipe: its config, schedule, Lookahead, augmentation and SGD step.

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

The run around it (epochs, evaluation, run directory) is
:mod:`deit.teacher_training`'s.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from deit.budget import teacher_schedule
from deit.config import ConfigError
from deit.data.augment import IMAGENET_MEAN, IMAGENET_STD, normalize, random_crop
from deit.models.cnn import TEACHER_ARCHS, create_teacher, teacher_spec


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
    dataset: str = "cifar10"  # cifar10, cifar100, or folder (an ImageNet-layout folder: data_dir)
    data_dir: str | None = None
    img_size: int = 0  # the teacher's input size; 0: the data's (32 for CIFAR, needed for folders)
    workers: int = -1  # folder data: decoding processes (-1: one per core), decoded once
    download: bool = True
    epochs: int = 0  # 0: the subset rule of deit.budget.teacher_schedule (16 on the whole set)
    batch_size: int = 0  # 0: as epochs (1024 on the whole set)
    eval_every: int = 0  # evaluate every N-th epoch and the last; 0: as epochs (1 on the whole set)
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
    train_size: int = 0  # 0: the whole training set; else a class-balanced N of it
    subset_seed: int = 0  # which images train_size keeps (as for students: the same images)
    validation: bool = False  # evaluate on a held-out part of the training set, not the test set
    test_size: int = 0  # 0: the whole test set
    seed: int = 0
    threads: int = 0  # 0: torch's default (all cores)
    channels_last: bool = True
    checkpoint_every: int = 10  # steps between mid-epoch checkpoints; 0: epoch ends only
    device: str = "auto"  # auto: the GPU if there is one, else the CPU; or cpu, cuda[:N]
    tta_every: int = 0  # epochs between TTA evaluations; 0: only after the last epoch

    @property
    def scaled_lr(self) -> float:
        """Peak learning rate for this batch size (``lr`` × batch/1024)."""
        return self.lr * self.batch_size / 1024


def validate_teacher_config(config: TeacherConfig, images: int = 0) -> TeacherConfig:
    """Reject values no run can use, before any work is done; settle the automatic (0) fields.

    ``epochs``, ``batch_size`` and ``eval_every`` left at 0 take
    :func:`deit.budget.teacher_schedule`'s values for ``train_size``, or, without
    one, for ``images``: the size of the whole training set when it is known to
    differ from CIFAR's (a folder of 3,000 photos is a small set, not CIFAR's
    50,000), so a saved config records what was run.
    """
    auto = teacher_schedule(config.train_size or images, config.epochs)
    unset = {k: v for k, v in auto.items() if not getattr(config, k)}
    config = dataclasses.replace(config, **unset)
    if config.arch not in TEACHER_ARCHS:
        raise ConfigError(f"arch must be one of {list(TEACHER_ARCHS)}, got {config.arch!r}")
    for name in ("epochs", "batch_size", "lr", "ema_every", "eval_every"):
        if getattr(config, name) <= 0:
            raise ConfigError(f"{name} must be positive, got {getattr(config, name)}")
    for name in ("weight_decay", "translate", "train_size", "test_size", "threads"):
        if getattr(config, name) < 0:
            raise ConfigError(f"{name} must not be negative, got {getattr(config, name)}")
    for name in ("momentum", "label_smoothing", "warmup", "ema"):
        if not 0 <= getattr(config, name) < 1:
            raise ConfigError(f"{name} must be in [0, 1), got {getattr(config, name)}")
    if config.dataset not in ("cifar10", "cifar100", "folder"):
        raise ConfigError(f"dataset must be cifar10, cifar100 or folder, got {config.dataset!r}")
    if config.dataset == "folder" and not (config.data_dir and config.img_size):
        raise ConfigError(
            "a teacher on dataset=folder needs --data-dir ROOT and --set img_size=N "
            "(its input resolution, e.g. 64)"
        )
    if config.img_size < 0 or config.workers < -1:
        raise ConfigError("img_size must not be negative and workers at least -1")
    if config.device != "auto" and config.device.split(":")[0] not in ("cpu", "cuda"):
        raise ConfigError(f"device must be auto, cpu or cuda[:N], got {config.device!r}")
    return config


def config_from_dict(values: dict[str, Any]) -> TeacherConfig:
    """A :class:`TeacherConfig` from its JSON form (lists back to tuples)."""
    known = {f.name for f in dataclasses.fields(TeacherConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown teacher config keys {unknown}")
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
            mirror = (self.mirrored[indices.cpu()] ^ bool(epoch % 2)).view(-1, 1, 1, 1)
            mirror = mirror.to(x.device)
            x = torch.where(mirror, x.flip(3), x)
        return random_crop(x, self.translate, self.generator, mode="reflect")

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The generator state, for exact resumption."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the generator state saved by :meth:`state_dict`."""
        self.generator.set_state(state["generator"])


# ----------------------------------------------------------------------------- the recipe


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
    """A freshly initialised teacher, its whitening layer (if any) set from the data.

    On an image folder it takes the folder's resolution (``img_size``) and
    ImageNet's normalisation; on CIFAR the architecture's own defaults.
    """
    torch.manual_seed(config.seed)
    kwargs: dict[str, Any] = {"num_classes": num_classes, "img_size": train_x.shape[-1]}
    if config.arch == "fastcnn":
        kwargs["widths"] = config.widths
    if config.dataset == "folder":
        kwargs |= {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    model = create_teacher(config.arch, **kwargs)
    if hasattr(model, "init_whitening"):
        model.init_whitening(normalize(train_x[:5000].cpu(), model.mean, model.std))
    return model


class TeacherRecipe:
    """The teacher's optimisation, one SGD step at a time; its state is what a checkpoint holds.

    SGD with Nesterov momentum on the label-smoothed cross-entropy, batch-norm
    shifts on a scaled learning rate, the warm-up/decay schedule of
    :func:`lr_factor`, Lookahead averaging, alternating flips and translations.
    """

    def __init__(self, config: TeacherConfig, train_x, train_y, num_classes: int, total: int):
        self.config, self.train_x, self.train_y, self.total = config, train_x, train_y, total
        self.memory = torch.channels_last if config.channels_last else torch.contiguous_format
        model = _build_model(config, num_classes, train_x)
        self.model = model.to(train_x.device, memory_format=self.memory)
        self.optimizer = torch.optim.SGD(
            _param_groups(self.model, config), lr=config.scaled_lr, momentum=config.momentum,
            nesterov=True,
        )  # fmt: skip
        self.base_lrs = [group["lr"] for group in self.optimizer.param_groups]
        self.lookahead = (
            Lookahead(self.model, config.ema, config.ema_every, total) if config.ema else None
        )
        self.augment = AltFlipTranslate(len(train_x), config.translate, config.flip, config.seed)

    def step(self, step: int, indices: torch.Tensor, epoch: int) -> dict[str, float]:
        """SGD step number ``step`` (from 0) on the images ``indices``; its sums and seconds."""
        tick = time.perf_counter()
        config, model = self.config, self.model
        whiten = getattr(model, "whiten", None)
        if whiten is not None:  # the whitening bias learns only in the first epochs
            whiten.bias.requires_grad_(epoch < config.whiten_bias_epochs)
        scale = lr_factor(step, self.total, config.warmup, config.lr_start, config.lr_end)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * scale
        x = self.augment(normalize(self.train_x[indices], model.mean, model.std), indices, epoch)
        labels = self.train_y[indices]
        logits = model(x.contiguous(memory_format=self.memory))
        loss = F.cross_entropy(logits, labels, label_smoothing=config.label_smoothing)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {loss.item()} at step {step}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.lookahead:
            self.lookahead.update(model, step + 1)
        return {
            "loss": loss.item() * len(labels),
            "correct": int((logits.argmax(1) == labels).sum()),
            "images": len(labels),
            "seconds": time.perf_counter() - tick,
        }

    def finish(self) -> None:
        """After the last step: the model takes the Lookahead average."""
        if self.lookahead:
            self.lookahead.finish(self.model)

    def state_dict(self) -> dict[str, Any]:
        """Model, optimizer, average and augmentation state, plus what loading a teacher needs."""
        return {
            "arch": self.model.arch,
            "spec": teacher_spec(self.model),
            "model": self.model.state_dict(),
            "averaged": self.lookahead.state_dict() if self.lookahead else None,
            "optimizer": self.optimizer.state_dict(),
            "augment": self.augment.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.lookahead and state["averaged"]:
            self.lookahead.load_state_dict(state["averaged"])
        self.augment.load_state_dict(state["augment"])
