"""Run configuration: one dataclass, named presets, ``key=value`` overrides.

A run is fully described by a :class:`TrainConfig`; it is written to the run
directory as ``config.json`` so any run can be repeated from that file.
Presets are named starting points; ``--set key=value`` changes single fields
with the field's own type (parsed in :mod:`deit.overrides`), and unknown keys fail
before any work starts; :func:`validate` rejects what no run can use.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from deit.models import parse_model_name
from deit.models.linear import check_choice as check_cpu_linear
from deit.overrides import ConfigError, parse_overrides

C = TypeVar("C")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs, with the defaults of a labels-only run."""

    student: str = "deit_tiny_patch4_32"  # deit_<size>[_distilled]_patch<P>_<image size>
    # Width, depth and heads: 0 takes the student name's; validate() fills them in, so a
    # saved config records them. A value other than the name's overrides it (older runs).
    embed_dim: int = 0  # width; 0: the student name's
    depth: int = 0  # blocks; 0: the student name's
    num_heads: int = 0  # attention heads; 0: the student name's
    distillation: str = "none"  # none, soft or hard (the paper's losses)
    teacher: str = "cifar10-teacher"  # shipped name or checkpoint path; used unless "none"
    teacher_arch: str = ""  # a bare state dict's architecture: tv_resnet50 (torchvision), timm:NAME
    distillation_alpha: float | None = None  # None: the paper's (soft 0.1, hard 0.5)
    distillation_tau: float = 3.0  # soft distillation's temperature τ
    init_from: str = ""  # checkpoint whose weights start the run (deit finetune); "": random
    teacher_bf16: bool = False  # teacher forward under bfloat16 autocast (faster on bf16 hardware)
    dataset: str = "cifar10"  # cifar10, cifar100, folder (ImageNet layout: data_dir) or shards
    data_dir: str | None = None  # where the data set is (a folder's root); None: $DEIT_DATA
    download: bool = True  # fetch CIFAR when it is missing
    workers: int = -1  # folder data: decoding processes; -1: one per core (a rank's share), 0: none
    train_crop: str = "random_resized"  # folder data: DeiT's crop, or none (resize; padded crop)
    rrc_scale: tuple[float, float] = (0.08, 1.0)  # area range of the random-resized crop
    eval_crop_pct: float = 0.875  # folder evaluation: short side to size/this, central crop
    skip_bad_files: bool = False  # folder data: skip (and list) undecodable files, not stop
    decode_once: bool = False  # folder data: decode train/ once at decode_size, crop on the device
    shard_buffer: int = 1000  # shards: samples in each stream's shuffle buffer (1: no shuffle)
    val_shards: str = ""  # shards: the val shards' folder, pattern or URL; "": from data_dir
    shard_info: str = ""  # shards: their info file (path, URL, pipe:) if none is beside them
    decode_size: int = 0  # decode_once's image size; 0: the student's img_size / 0.875, rounded
    normalization: str = "dataset"  # the data set's mean/std (ImageNet's for folders), or a name
    epochs: int = 10
    batch_size: int = 128
    lr: float = 5e-4  # for a batch of 512; scaled linearly with the batch
    min_lr: float = 1e-5  # the cosine schedule's floor
    warmup_epochs: float = 1.0  # linear warm-up, in epochs
    weight_decay: float = 0.05  # AdamW's, not on norms, biases, tokens, position embedding
    label_smoothing: float = 0.1  # on the labels (never on the teacher's)
    drop_path_rate: float = 0.1  # stochastic depth at the last block
    token_keep: float = 1.0  # fraction of patch tokens each training image keeps; eval: all
    token_keep_schedule: tuple[float, ...] = ()  # token_keep of each first epoch; then token_keep
    crop_padding: int = 4  # random translation of the batched crop, in pixels; 0: off
    hflip: float = 0.5  # probability of a horizontal flip per image
    randaugment_ops: int = 0  # 0: off; the paper uses 2 ops at magnitude 9
    randaugment_magnitude: float = 9.0  # RandAugment's magnitude (0-10)
    random_erasing: float = 0.0  # probability per image; the paper uses 0.25
    mixup: float = 0.0  # Beta(α, α) of Mixup; 0: off (the paper: 0.8)
    cutmix: float = 0.0  # Beta(α, α) of CutMix; 0: off (the paper: 1.0)
    img_size_schedule: tuple[int, ...] = ()  # input size of each first epoch; then full size
    repeated_augmentation: int = 1  # copies of each image per epoch (DeiT: 3); 1: off
    clip_grad: float = 0.0  # max gradient norm; 0: no clipping
    ema_decay: float = 0.0  # model EMA per step, evaluated alongside; 0: off
    bf16: bool = False  # bfloat16 autocast for forward and loss (GPU speed; runs on CPU too)
    compile: bool = False  # torch.compile the student
    train_size: int = 0  # 0: the whole training set; else a class-balanced N of it
    subset_seed: int = 0  # which images train_size keeps (not the run's seed: teachers share it)
    subset_sha256: str = ""  # the training images' fingerprint: recorded at start, then checked
    budget_images: int = 0  # images to see: sets epochs to budget/N, warm-up etc. scaled; 0: off
    test_size: int = 0  # 0: the whole test set
    validation: bool = False  # evaluate on a held-out training slice, not the test set
    eval_every: int = 1  # evaluate after every N-th epoch and after the last; 1: each
    seed: int = 0  # weights, order and augmentation
    threads: int = 0  # 0: all cores
    cpu_linear: str = "auto"  # the CPU library of the student's linears: auto, blas, onednn
    checkpoint_every: int = 0  # steps between mid-epoch checkpoints; 0: at epoch ends only
    device: str = "auto"  # auto: this rank's GPU if there is one, else the CPU; or cpu, cuda

    def model_overrides(self) -> dict[str, int]:
        """The architecture fields set here that replace what the student's name says.

        Fields equal to the name's are left out, so a config of a registered size (every
        preset) gives none, and ``create_model(student, **model_overrides())`` builds it.
        """
        named = parse_model_name(self.student)
        return {k: v for k, v in self._sizes().items() if v and v != named[k]}

    def _sizes(self) -> dict[str, int]:
        """The architecture fields as set (0: from the name)."""
        return {"embed_dim": self.embed_dim, "depth": self.depth, "num_heads": self.num_heads}

    @property
    def img_size(self) -> int:
        """The student's input size (from its name)."""
        return parse_model_name(self.student)["img_size"]

    def img_size_at(self, epoch: int) -> int:
        """The student's training input size in ``epoch`` (0-based)."""
        schedule = self.img_size_schedule
        return schedule[epoch] if epoch < len(schedule) else self.img_size

    def token_keep_at(self, epoch: int) -> float:
        """The fraction of patch tokens each training image keeps in ``epoch`` (0-based)."""
        schedule = self.token_keep_schedule
        return schedule[epoch] if epoch < len(schedule) else self.token_keep

    @property
    def scaled_lr(self) -> float:
        """Peak learning rate for this batch size (the paper's lr × batch/512)."""
        return self.peak_lr(world_size=1)

    def peak_lr(self, world_size: int) -> float:
        """Peak learning rate for the global batch of ``world_size`` ranks (lr × global/512)."""
        return self.lr * self.batch_size * world_size / 512


PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {
        "student": "deit_nano_distilled_patch4_32",  # 64 wide, 4 deep, 2 heads
        "epochs": 3,
        "batch_size": 64,
        "lr": 1.6e-2,
        "warmup_epochs": 0.3,
        "drop_path_rate": 0.0,
        "train_size": 5000,
        "test_size": 2000,
    },
    # Tuned for accuracy per minute on a 2-core CPU, on a validation split: each student of
    # the matrix in under 30 minutes on the full training set, teacher included. What was
    # tried and what it gave: results/cpu-proxy/NOTES.md. Its student, micro, was recorded
    # before micro had a name as deit_tiny_distilled_patch4_32 with micro's sizes as overrides.
    "cpu-proxy": {
        "student": "deit_micro_distilled_patch4_32",
        "distillation": "hard",
        "teacher_bf16": True,
        "epochs": 15,
        "token_keep": 0.25,
        "batch_size": 64,
        "lr": 4e-3,
        "warmup_epochs": 0.5,
        "drop_path_rate": 0.0,
        "eval_every": 3,
    },
    # The paper's recipe (Touvron et al. 2020, reference code defaults) for DeiT-Ti at 32 px.
    "paper": {
        "student": "deit_tiny_distilled_patch4_32",
        "distillation": "hard",
        "epochs": 300,
        "batch_size": 512,
        "lr": 5e-4,
        "min_lr": 1e-5,
        "warmup_epochs": 5,
        "weight_decay": 0.05,
        "label_smoothing": 0.1,
        "drop_path_rate": 0.1,
        "randaugment_ops": 2,
        "randaugment_magnitude": 9,
        "random_erasing": 0.25,
        "mixup": 0.8,
        "cutmix": 1.0,
        "ema_decay": 0.99996,
        "repeated_augmentation": 3,
        "bf16": True,
    },
}
# The student report's setting: the same DeiT-Ti recipe for 20 epochs.
PRESETS["seed"] = {**PRESETS["paper"], "epochs": 20, "warmup_epochs": 2}


def stretched(preset: dict[str, Any], factor: int) -> dict[str, Any]:
    """``preset`` trained ``factor`` times as long: every epoch count, phase and warm-up × factor.

    Each entry of the resolution and token schedules is repeated ``factor`` times, so
    the run spends the same fraction of its epochs at each setting; the learning rate
    schedule (cosine over the epochs, warm-up fraction) keeps its shape.
    """
    longer = {**preset, "epochs": preset["epochs"] * factor}
    for key in ("img_size_schedule", "token_keep_schedule"):
        longer[key] = tuple(value for value in preset.get(key, ()) for _ in range(factor))
    if "warmup_epochs" in preset:
        longer["warmup_epochs"] = preset["warmup_epochs"] * factor
    return longer


# The cpu-proxy recipe three times as long (40-101 minutes per student on 2 cores, measured): does
# distillation's advantage grow with training length? See results/cpu-long/.
PRESETS["cpu-long"] = stretched(PRESETS["cpu-proxy"], 3)


def apply_overrides(config: C, overrides: list[str]) -> C:
    """Return ``config`` (any config dataclass) with each ``key=value`` string applied.

    The result is not validated here; each config type has its own validator. A new
    ``student`` on a :class:`TrainConfig` drops the sizes that only repeated the old
    student's name (as :func:`validate` fills them in), so the new name gives its own.
    """
    changes = parse_overrides(type(config), overrides)
    if isinstance(config, TrainConfig) and changes.get("student", config.student) != config.student:
        changes = {**_named_sizes_cleared(config), **changes}
    return dataclasses.replace(config, **changes)


def _named_sizes_cleared(config: TrainConfig) -> dict[str, int]:
    """0 for each size field of ``config`` that equals its student name's (set by validate)."""
    try:
        named = parse_model_name(config.student)
    except ValueError:
        return {}
    return {k: 0 for k, v in config._sizes().items() if v == named[k]}


def from_preset(name: str, **changes: Any) -> TrainConfig:
    """Build the config of preset ``name`` with ``changes`` applied on top."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    values = {**PRESETS[name], **{k: v for k, v in changes.items() if v is not None}}
    return validate(TrainConfig(**values))


def build_config(preset: str, changes: dict[str, Any], overrides: list[str]) -> TrainConfig:
    """Preset ``preset``, then the ``changes`` (None: not given), then ``key=value`` overrides.

    What ``deit train`` and ``deit finetune`` build from their flags; validated. Epochs
    and ``budget_images`` given together are refused: the budget sets the epochs.
    """
    refuse_epochs_with_budget({k: v for k, v in changes.items() if v is not None}, overrides)
    return validate(apply_overrides(from_preset(preset, **changes), overrides))


def refuse_epochs_with_budget(changes: dict[str, Any], overrides: list[str]) -> None:
    """``ConfigError`` if the user's settings hold both epochs and a nonzero ``budget_images``."""
    given = changes | parse_overrides(TrainConfig, overrides)
    if given.get("budget_images") and "epochs" in given:
        raise ConfigError("give epochs or budget_images, not both: the budget sets the epochs")


def validate(config: TrainConfig) -> TrainConfig:
    """Reject values no run can use, before any work is done; return it with sizes resolved.

    ``embed_dim``, ``depth`` and ``num_heads`` left at 0 are filled in from the student's
    name, so that the saved ``config.json`` says which model was trained; older configs
    (0s, or a name plus size overrides) load and build the same model as before.
    """
    positive = ("epochs", "batch_size", "lr", "repeated_augmentation", "eval_every")
    for name in positive:
        if getattr(config, name) <= 0:
            raise ConfigError(f"{name} must be positive, got {getattr(config, name)}")
    non_negative = ("min_lr", "warmup_epochs", "weight_decay", "crop_padding", "train_size")
    non_negative += ("randaugment_ops", "randaugment_magnitude", "mixup", "cutmix", "clip_grad")
    non_negative += ("test_size", "threads", "checkpoint_every", "budget_images")
    for name in (*non_negative, "embed_dim", "depth", "num_heads"):
        if getattr(config, name) < 0:
            raise ConfigError(f"{name} must not be negative, got {getattr(config, name)}")
    if not 0 <= config.label_smoothing < 1:
        raise ConfigError(f"label_smoothing must be in [0, 1), got {config.label_smoothing}")
    if not 0 <= config.ema_decay < 1:
        raise ConfigError(f"ema_decay must be in [0, 1), got {config.ema_decay}")
    if not 0 <= config.hflip <= 1:
        raise ConfigError(f"hflip must be in [0, 1], got {config.hflip}")
    if config.device != "auto" and config.device.split(":")[0] not in ("cpu", "cuda"):
        raise ConfigError(f"device must be auto, cpu or cuda[:N], got {config.device!r}")
    if not 0 <= config.random_erasing <= 1:
        raise ConfigError(f"random_erasing must be in [0, 1], got {config.random_erasing}")
    for keep in (config.token_keep, *config.token_keep_schedule):
        if not 0 < keep <= 1:
            raise ConfigError(f"token_keep must be in (0, 1], got {keep}")
    if not 0 <= config.drop_path_rate < 1:
        raise ConfigError(f"drop_path_rate must be in [0, 1), got {config.drop_path_rate}")
    try:
        size_of = {**parse_model_name(config.student), **config.model_overrides()}
    except ValueError as err:
        raise ConfigError(str(err)) from None
    config = dataclasses.replace(config, **{k: size_of[k] for k in config._sizes()})
    if size_of["embed_dim"] % size_of["num_heads"]:
        raise ConfigError(
            f"embed_dim {size_of['embed_dim']} is not divisible by {size_of['num_heads']} heads"
        )
    for size in config.img_size_schedule:
        if not 0 < size <= size_of["img_size"] or size % size_of["patch_size"]:
            raise ConfigError(
                f"img_size_schedule: {size} is not a multiple of the patch size "
                f"{size_of['patch_size']} up to the image size {size_of['img_size']}"
            )
    if config.distillation not in ("none", "soft", "hard"):
        raise ConfigError(f"distillation must be none, soft or hard, got {config.distillation!r}")
    alpha = config.distillation_alpha
    if alpha is not None and not 0 <= alpha <= 1:
        raise ConfigError(f"distillation_alpha must be in [0, 1], got {alpha}")
    if config.distillation_tau <= 0:
        raise ConfigError(f"distillation_tau must be positive, got {config.distillation_tau}")
    if config.dataset not in ("cifar10", "cifar100", "folder", "shards"):
        raise ConfigError(
            f"dataset must be cifar10, cifar100, folder or shards, got {config.dataset!r}"
        )
    if config.dataset == "folder" and not config.data_dir:
        raise ConfigError("dataset=folder needs --data-dir ROOT (ROOT/train/<class>/<image>, val/)")
    _check_shards(config)
    if config.normalization not in ("dataset", "cifar10", "cifar100", "imagenet"):
        raise ConfigError(
            f"normalization must be dataset, cifar10, cifar100 or imagenet, "
            f"got {config.normalization!r}"
        )
    if config.train_crop not in ("random_resized", "none"):
        raise ConfigError(f"train_crop must be random_resized or none, got {config.train_crop!r}")
    if len(config.rrc_scale) != 2:
        raise ConfigError(f"rrc_scale takes two numbers, low,high; got {config.rrc_scale}")
    low, high = config.rrc_scale
    if not 0 < low <= high <= 1:
        raise ConfigError(f"rrc_scale must be 0 < low <= high <= 1, got {config.rrc_scale}")
    if not 0 < config.eval_crop_pct <= 1:
        raise ConfigError(f"eval_crop_pct must be in (0, 1], got {config.eval_crop_pct}")
    if config.decode_once and config.dataset != "folder":
        raise ConfigError("decode_once applies to dataset=folder (CIFAR is in memory already)")
    if config.decode_size < 0:
        raise ConfigError(f"decode_size must not be negative, got {config.decode_size}")
    try:
        check_cpu_linear(config.cpu_linear)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if config.workers < -1:
        raise ConfigError(f"workers must be -1 (one per core) or more, got {config.workers}")
    return config


def _check_shards(config: TrainConfig) -> None:
    """dataset=shards: a source, and none of the selections that need the samples listed."""
    if config.dataset != "shards":
        for key in ("val_shards", "shard_info"):
            if getattr(config, key):
                raise ConfigError(f"{key} is about shards: it needs --set dataset=shards, not "
                                  f"dataset={config.dataset}")  # fmt: skip
        return
    if not config.data_dir:
        raise ConfigError("dataset=shards needs --data-dir DIR, a pattern or a URL of the shards")
    if config.shard_buffer < 1:
        raise ConfigError(f"shard_buffer must be at least 1, got {config.shard_buffer}")
    listed = ("train_size", "test_size", "validation", "decode_once")
    chosen = [key for key in listed if getattr(config, key)]
    if chosen:  # e.g. the smoke preset's train_size=5000
        key, value = chosen[0], getattr(config, chosen[0])
        value, off = ("true", "false") if isinstance(value, bool) else (value, "0")
        raise ConfigError(f"dataset=shards streams every sample: {key}={value} needs the folder; "
                          f"add --set {key}={off}, or select before writing the shards "
                          f"(python -m deit.data.export shards)")  # fmt: skip


def save_config(config: TrainConfig, path: Path) -> None:
    """Write ``config`` as JSON, the record needed to rerun it."""
    path.write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")


def load_config(path: Path) -> TrainConfig:
    """Read a config written by :func:`save_config`."""
    return config_from_dict(json.loads(Path(path).read_text()))


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """A validated :class:`TrainConfig` from its saved form (JSON lists back to tuples).

    Fields missing from older runs take their defaults; unknown ones are an error.
    """
    unknown = sorted(set(values) - {f.name for f in fields(TrainConfig)})
    if unknown:
        raise ConfigError(f"unknown config keys {unknown}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return validate(TrainConfig(**values))
