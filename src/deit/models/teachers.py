"""CNN teachers, and the wrapper that feeds a teacher the inputs it was trained on.

A teacher is only as good as its inputs. The student report's hard-distillation
rows collapsed because its teacher saw the *student's* normalisation: its argmax
labels were then mostly wrong. So every teacher architecture here carries its
own input normalisation (``mean``, ``std``) and resolution (``img_size``), and
:class:`Teacher` converts whatever batch the student trains on into exactly
that before the forward pass.

Two architectures:

- ``fastcnn``: a small, fast CIFAR network in the style of the fastest
  published CIFAR-10 trainers (Page's "How to train your ResNet", tysam's
  hlb-CIFAR10, Jordan's airbench): a frozen 2×2 patch-whitening convolution
  initialised from the data, three conv groups (conv, max-pool, BN, GELU,
  conv, BN, GELU), a max-pool and a scaled linear head.
- ``resnet18``: ResNet-18 for CIFAR (3×3 stride-1 stem) whose state-dict
  keys and shapes follow the widely shared CIFAR-10 ResNet-18 checkpoints
  (``conv1``, ``bn1``, ``layerN.M.{conv,bn}{1,2}``, ``layerN.0.shortcut.{0,1}``,
  ``linear``), so such a checkpoint loads with ``strict=True``.

:func:`load_teacher` reads a shipped name, a project checkpoint or a
safetensors file, with errors that say what is wrong.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from deit.checkpoint import CheckpointError, load_checkpoint
from deit.data.augment import CIFAR10_MEAN, CIFAR10_STD

__all__ = [
    "RESNET18_CIFAR_MEAN",
    "RESNET18_CIFAR_STD",
    "SHIPPED_TEACHERS",
    "TEACHER_ARCHS",
    "CheckpointError",
    "FastCNN",
    "ResNet18",
    "Teacher",
    "create_teacher",
    "fastcnn_flops",
    "fold_batchnorm",
    "load_teacher",
    "load_weights",
    "param_count",
    "teacher_spec",
]

RESNET18_CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
RESNET18_CIFAR_STD = (0.2471, 0.2435, 0.2616)

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
SHIPPED_TEACHERS = {"cifar10-teacher": "cifar10-teacher.safetensors"}
"""Teachers shipped inside the package: name → file in ``deit/weights/``."""


# ----------------------------------------------------------------------------- fast CNN


def _batchnorm(channels: int) -> nn.BatchNorm2d:
    """BatchNorm with a fixed unit scale (only the shift learns) and fast-moving statistics.

    A learnable scale is redundant before GELU once the next conv can rescale,
    and fixing it keeps every BN scale positive, which lets BN fold through
    the preceding max-pool. Statistics follow the last few batches
    (momentum 0.4), which suits short runs whose weights move fast.
    """
    bn = nn.BatchNorm2d(channels, eps=1e-12, momentum=0.4)
    bn.weight.requires_grad_(False)
    return bn


def _conv3x3(c_in: int, c_out: int) -> nn.Conv2d:
    """A bias-free 3×3 'same' convolution initialised as identity on its first ``c_in`` filters.

    The partial identity (Dirac) start lets signals pass the deep part of the
    network unchanged at step 0, which speeds up the first epoch.
    """
    conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[: min(c_in, c_out)])
    return conv


class ConvGroup(nn.Module):
    """conv → 2×2 max-pool → BN → GELU → conv → BN → GELU; halves the resolution."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = _conv3x3(c_in, c_out)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = _batchnorm(c_out)
        self.conv2 = _conv3x3(c_out, c_out)
        self.norm2 = _batchnorm(c_out)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the group (pooling before BN: BN then runs on a quarter of the pixels)."""
        x = self.act(self.norm1(self.pool(self.conv1(x))))
        return self.act(self.norm2(self.conv2(x)))


class FastCNN(nn.Module):
    """The fast CIFAR teacher: patch whitening, three conv groups, a scaled linear head.

    The first layer is a 2×2 convolution whose filters are the eigenvectors of
    the training patches' second-moment matrix, scaled to unit variance
    (ZCA-like whitening, ±each filter so GELU keeps both signs); it is frozen
    and only its bias may learn. Widths default to 64/256/256 (≈2 M
    parameters, ≈0.24 GFLOP per 32×32 image forward). The head's logits are
    scaled by ``logit_scale`` so that their start is small and label smoothing
    does not saturate.
    """

    arch = "fastcnn"

    def __init__(
        self,
        num_classes: int = 10,
        widths: tuple[int, int, int] = (64, 256, 256),
        logit_scale: float = 1 / 9,
        mean: tuple[float, ...] = CIFAR10_MEAN,
        std: tuple[float, ...] = CIFAR10_STD,
        img_size: int = 32,
    ):
        super().__init__()
        self.kwargs = dict(num_classes=num_classes, widths=tuple(widths), logit_scale=logit_scale)
        self.mean, self.std, self.img_size = tuple(mean), tuple(std), img_size
        whiten_width = 2 * 3 * 2 * 2
        self.whiten = nn.Conv2d(3, whiten_width, 2, bias=True)
        self.whiten.weight.requires_grad_(False)
        nn.init.zeros_(self.whiten.bias)
        self.act = nn.GELU()
        w1, w2, w3 = widths
        self.group1 = ConvGroup(whiten_width, w1)
        self.group2 = ConvGroup(w1, w2)
        self.group3 = ConvGroup(w2, w3)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.head = nn.Linear(w3, num_classes, bias=False)
        self.logit_scale = logit_scale

    @torch.no_grad()
    def init_whitening(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the whitening filters from normalised training images ``N×3×H×W``.

        Eigenvectors of the 12×12 second-moment matrix of all 2×2 patches,
        largest eigenvalue first, each divided by sqrt(eigenvalue + eps) and
        used with both signs. A few thousand images are plenty.
        """
        k = self.whiten.kernel_size[0]
        patches = images.float().unfold(2, k, 1).unfold(3, k, 1)  # N×C×H'×W'×k×k
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, 3 * k * k)
        moment = (patches.T @ patches).double() / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(moment)
        order = eigenvalues.argsort(descending=True)
        filters = eigenvectors.T[order] / (eigenvalues[order, None] + eps).sqrt()
        filters = filters.reshape(-1, 3, k, k)
        self.whiten.weight.copy_(torch.cat([filters, -filters]).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch normalised with ``self.mean``/``self.std``."""
        x = self.act(self.whiten(x))
        x = self.group3(self.group2(self.group1(x)))
        return self.head(self.pool(x).flatten(1)) * self.logit_scale

    def conv_bn_pairs(self) -> list[tuple[str, str, bool]]:
        """(conv, batch norm, max-pool between them?) for :func:`fold_batchnorm`."""
        groups = ("group1", "group2", "group3")
        return [(f"{g}.conv{i}", f"{g}.norm{i}", i == 1) for g in groups for i in (1, 2)]


# ----------------------------------------------------------------------------- ResNet-18


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN layers plus a shortcut (1×1 conv-BN when the shape changes)."""

    expansion = 1

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))."""
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 for 32×32 images in the public CIFAR-10 checkpoints' state-dict layout.

    Stem: 3×3 stride-1 conv, BN, ReLU, then (``maxpool=True``, as DESIGN.md
    asks) a 3×3 stride-2 max-pool; four stages of two BasicBlocks with
    64/128/256/512 channels; global average pool; ``linear`` head. The
    max-pool has no parameters, so checkpoints trained with or without it
    load alike; pass ``maxpool`` to match how the checkpoint was trained.
    ``mean``/``std`` default to the usual CIFAR-10 ResNet statistics;
    checkpoints trained with other statistics must say so here.
    """

    arch = "resnet18"

    def __init__(
        self,
        num_classes: int = 10,
        maxpool: bool = True,
        mean: tuple[float, ...] = RESNET18_CIFAR_MEAN,
        std: tuple[float, ...] = RESNET18_CIFAR_STD,
        img_size: int = 32,
    ):
        super().__init__()
        self.kwargs = dict(num_classes=num_classes, maxpool=maxpool)
        self.mean, self.std, self.img_size = tuple(mean), tuple(std), img_size
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1) if maxpool else nn.Identity()
        widths, c_in = (64, 128, 256, 512), 64
        for i, width in enumerate(widths, start=1):
            stride = 1 if i == 1 else 2
            blocks = [BasicBlock(c_in, width, stride), BasicBlock(width, width)]
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
            c_in = width
        self.linear = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch normalised with ``self.mean``/``self.std``."""
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.linear(x.mean((2, 3)))

    def conv_bn_pairs(self) -> list[tuple[str, str, bool]]:
        """(conv, batch norm, max-pool between them?) for :func:`fold_batchnorm`."""
        pairs = [("conv1", "bn1", False)]
        for name, block in self.named_modules():
            if isinstance(block, BasicBlock):
                pairs += [(f"{name}.conv{i}", f"{name}.bn{i}", False) for i in (1, 2)]
                if len(block.shortcut):
                    pairs.append((f"{name}.shortcut.0", f"{name}.shortcut.1", False))
        return pairs


TEACHER_ARCHS: dict[str, type[nn.Module]] = {"fastcnn": FastCNN, "resnet18": ResNet18}
"""Teacher architectures by name."""


def create_teacher(arch: str, **kwargs: Any) -> nn.Module:
    """Build teacher architecture ``arch`` (``fastcnn`` or ``resnet18``) with ``kwargs``."""
    if arch not in TEACHER_ARCHS:
        raise ValueError(
            f"unknown teacher architecture {arch!r}; choose one of {list(TEACHER_ARCHS)}"
        )
    return TEACHER_ARCHS[arch](**kwargs)


def teacher_spec(model: nn.Module) -> dict[str, Any]:
    """Everything besides the weights needed to rebuild ``model``: arch, kwargs, mean, std, size.

    Stored with every checkpoint and exported file, so a teacher is always
    rebuilt with the inputs it was trained on.
    """
    kwargs = {k: list(v) if isinstance(v, tuple) else v for k, v in model.kwargs.items()}
    return {
        "arch": model.arch,
        "kwargs": kwargs,
        "mean": list(model.mean),
        "std": list(model.std),
        "img_size": model.img_size,
    }


def _from_spec(spec: Mapping[str, Any]) -> nn.Module:
    """Rebuild an untrained model from :func:`teacher_spec`'s dictionary."""
    kwargs = dict(spec.get("kwargs", {}))
    for key in ("mean", "std", "img_size"):
        if key in spec:
            kwargs[key] = spec[key]
    return create_teacher(spec["arch"], **kwargs)


# ----------------------------------------------------------------------------- BN folding


def _fold_pair(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Merge ``bn`` (eval mode, running statistics) into ``conv``'s weight and bias."""
    scale = bn.running_var.double().add(bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    shift = -bn.running_mean.double() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.double()
    if conv.bias is not None:
        shift = shift + conv.bias.double() * scale
    weight = conv.weight.double() * scale.view(-1, 1, 1, 1)
    conv.weight = nn.Parameter(weight.float(), requires_grad=False)
    conv.bias = nn.Parameter(shift.float(), requires_grad=False)


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def fold_batchnorm(model: nn.Module, channels_last: bool = True) -> nn.Module:
    """An inference copy of ``model`` with every BatchNorm merged into the conv before it.

    A BN in eval mode is a per-channel affine map, so conv→BN is one conv with
    a bias: the teacher's forward then skips a full pass over every activation.
    ``FastCNN`` has a max-pool between conv and BN; the fold stays exact there
    because max-pooling commutes with a positive per-channel scale and a shift
    (checked; its BN scales are fixed at 1). The copy is in eval mode, frozen,
    and channels-last when asked (faster convolutions on CPU). The original is
    left untouched.
    """
    folded = copy.deepcopy(model).eval()
    modules = dict(folded.named_modules())
    pairs = folded.conv_bn_pairs() if hasattr(folded, "conv_bn_pairs") else []
    for conv_name, bn_name, pooled in pairs:
        conv, bn = modules[conv_name], modules[bn_name]
        if pooled and bn.weight is not None and not bool((bn.weight > 0).all()):
            raise ValueError(f"cannot fold {bn_name} through a max-pool: a scale is not positive")
        _fold_pair(conv, bn)
        _replace(folded, bn_name, nn.Identity())
    folded.requires_grad_(False)
    if channels_last:
        folded = folded.to(memory_format=torch.channels_last)
    return folded


# ----------------------------------------------------------------------------- wrapper


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a batch to ``size``×``size``; no-op when it is that size already.

    Downscaling by a whole factor averages blocks (exactly undoing a
    nearest-neighbour upscale and anti-aliasing any other); other sizes use
    anti-aliased bilinear interpolation.
    """
    h, w = x.shape[-2:]
    if (h, w) == (size, size):
        return x
    if h % size == 0 and w % size == 0:
        return F.avg_pool2d(x, (h // size, w // size))
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


class Teacher(nn.Module):
    """A frozen teacher that takes the student's batches and sees its own inputs.

    ``input_mean``/``input_std`` are the normalisation of the batches the
    student trains on (any resolution). Each forward un-normalises the batch
    to [0, 1] pixels, resizes it to the teacher's ``img_size`` if needed, and
    normalises it with the teacher's own statistics, so the teacher's
    accuracy on the student's tensors is its accuracy on its native inputs.

    The model inside is an inference copy (BN folded, channels-last) with no
    gradients; ``train()`` cannot take it out of eval mode, so its batch-norm
    statistics never drift; the forward runs under ``torch.inference_mode``
    and returns ordinary tensors that losses can use.

    ``bf16`` runs the network under bfloat16 autocast (logits returned in
    float32): on CPUs with bf16 matrix units (AVX512-BF16, AMX) and on GPUs
    the teacher's forward is then much cheaper, and its predictions barely
    move (benchmarks/RESULTS.md measures both on the test set).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        input_mean: tuple[float, ...],
        input_std: tuple[float, ...],
        fold: bool = True,
        bf16: bool = False,
    ):
        super().__init__()
        self.bf16 = bf16
        self.model = fold_batchnorm(model) if fold else copy.deepcopy(model).eval()
        self.model.requires_grad_(False)
        self.mean, self.std, self.img_size = model.mean, model.std, model.img_size
        self.input_mean, self.input_std = tuple(input_mean), tuple(input_std)
        self.register_buffer("_in_mean", torch.tensor(input_mean).view(1, -1, 1, 1), False)
        self.register_buffer("_in_std", torch.tensor(input_std).view(1, -1, 1, 1), False)
        self.register_buffer("_mean", torch.tensor(model.mean).view(1, -1, 1, 1), False)
        self.register_buffer("_std", torch.tensor(model.std).view(1, -1, 1, 1), False)
        self.train(False)

    def train(self, mode: bool = True) -> Teacher:
        """Stay in eval mode whatever is asked: a teacher's BN statistics must not move."""
        return super().train(False)

    def adapt(self, x: torch.Tensor) -> torch.Tensor:
        """Turn a student-normalised batch into the teacher's normalised input."""
        pixels = x * self._in_std + self._in_mean
        pixels = _resize(pixels, self.img_size)
        return ((pixels - self._mean) / self._std).contiguous(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Teacher logits for a student-normalised batch (no gradient flows)."""
        autocast = torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16)
        with torch.inference_mode(), autocast:
            logits = self.model(self.adapt(x))
        return logits.float().clone()  # an ordinary tensor, usable in autograd graphs


# ----------------------------------------------------------------------------- loading


def _strip_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix) :]: v for k, v in state.items()}
    return dict(state)


def _torchvision_to_cifar_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a torchvision-style ResNet state dict (``downsample``, ``fc``) to ours.

    Some public CIFAR-10 ResNet-18 checkpoints keep torchvision's names; the
    tensors are the same, only the names differ.
    """
    renamed = {}
    for key, value in state.items():
        key = key.replace(".downsample.", ".shortcut.")
        if key.startswith("fc."):
            key = "linear." + key[3:]
        renamed[key] = value
    return renamed


def _describe_mismatch(model: nn.Module, state: Mapping[str, torch.Tensor]) -> str | None:
    """Name the keys that keep ``state`` from loading into ``model`` strictly, or None."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]

    def listed(title: str, keys: list[str]) -> str:
        more = f" … (+{len(keys) - 8} more)" if len(keys) > 8 else ""
        return f"{title} ({len(keys)}): {', '.join(keys[:8])}{more}"

    parts = [
        listed(title, keys)
        for title, keys in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches (file vs model)", shapes),
        )
        if keys
    ]
    return "; ".join(parts) or None


def load_weights(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> nn.Module:
    """Load ``state`` into ``model`` strictly; on mismatch raise naming the offending keys."""
    state = _strip_prefix(state, "module.")
    torchvision_layout = "fc.weight" in state or any(".downsample." in k for k in state)
    if isinstance(model, ResNet18) and torchvision_layout:
        state = _torchvision_to_cifar_layout(state)
    problem = _describe_mismatch(model, state)
    if problem:
        raise CheckpointError(
            f"{source} does not fit architecture "
            f"{getattr(model, 'arch', type(model).__name__)!r} "
            f"({json.dumps(getattr(model, 'kwargs', {}))}): {problem}"
        )
    model.load_state_dict(state, strict=True)
    return model


def _shipped_path(name: str) -> Path:
    path = WEIGHTS_DIR / SHIPPED_TEACHERS[name]
    if not path.is_file():
        raise CheckpointError(
            f"the shipped teacher {name!r} is not installed (expected {path}); train one with "
            f"deit.teacher_training.train_teacher and export it with export_teacher"
        )
    return path


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and the JSON-decoded metadata of a safetensors file."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a safetensors file: {err}") from None
    decoded = {}
    for key, value in meta.items():
        try:
            decoded[key] = json.loads(value)
        except json.JSONDecodeError:
            decoded[key] = value
    return state, decoded


def _read_torch_checkpoint(path: Path) -> dict[str, Any]:
    payload = load_checkpoint(path)
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path} is not a checkpoint (holds a {type(payload).__name__})")
    return payload


def _unpack(payload: dict[str, Any], path: Path, arch: str | None):
    """(state dict, spec) from a loaded .pt payload of any of the accepted shapes."""
    if "arch" in payload and "model" in payload:  # a teacher run's checkpoint
        spec = payload.get("spec") or {"arch": payload["arch"]}
        return payload.get("averaged") or payload["model"], spec
    if "model" in payload and "config" in payload:
        raise CheckpointError(
            f"{path} is a student checkpoint ({payload['config'].get('student', '?')}), "
            f"not a teacher"
        )
    for key in ("model", "state_dict", "net"):  # common wrappers of a bare state dict
        if isinstance(payload.get(key), dict):
            payload = payload[key]
            break
    if not payload or not all(isinstance(v, torch.Tensor) for v in payload.values()):
        raise CheckpointError(f"{path} is not a checkpoint: it holds no model state dict")
    if arch is None:
        raise CheckpointError(
            f"{path} is a bare state dict without an architecture; pass arch= "
            f"(one of {list(TEACHER_ARCHS)})"
        )
    return payload, {"arch": arch}


def load_teacher(
    name_or_path: str | Path, *, arch: str | None = None, **overrides: Any
) -> nn.Module:
    """Load a trained teacher, in eval mode, carrying its normalisation and resolution.

    Accepts a shipped name (``cifar10-teacher``), a checkpoint written by
    ``train_teacher`` (``.pt``, read with ``weights_only=True``), a
    ``.safetensors`` file with the metadata ``export_teacher`` writes, or a
    bare state dict (e.g. a public CIFAR-10 ResNet-18 checkpoint) together
    with ``arch=``; ``overrides`` (``mean``, ``std``, ``maxpool``, …) replace
    the stored settings. Raises ``FileNotFoundError`` for a missing file and
    :class:`CheckpointError` for a file that is not a checkpoint or whose
    keys do not fit the architecture (the keys are named). Wrap the result
    in :class:`Teacher` to distil from it.
    """
    if str(name_or_path) in SHIPPED_TEACHERS:
        path = _shipped_path(str(name_or_path))
    else:
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"no teacher checkpoint at {path}; give a checkpoint file or one of the "
                f"shipped names {list(SHIPPED_TEACHERS)}"
            )
    if path.suffix == ".safetensors":
        state, spec = _read_safetensors(path)
        if arch is None and "arch" not in spec:
            raise CheckpointError(f"{path} has no 'arch' metadata; pass arch=")
    else:
        state, spec = _unpack(_read_torch_checkpoint(path), path, arch)
    spec = {**spec, **({"arch": arch} if arch else {})}
    spec["kwargs"] = {**spec.get("kwargs", {}), **overrides}
    try:
        model = _from_spec(spec)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: cannot build its architecture {spec}: {err}") from None
    load_weights(model, state, str(path))
    model.meta = {k: v for k, v in spec.items() if k not in ("kwargs",)}
    return model.eval()


def param_count(model: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


def fastcnn_flops(widths: tuple[int, int, int] = (64, 256, 256), img_size: int = 32) -> float:
    """Forward multiply-adds ×2 of ``FastCNN`` for one image (convolutions and head)."""
    size = img_size - 1  # after the 2×2 whitening conv without padding
    flops, c_in = 2 * 12 * 24 * size * size, 24
    for width in widths:
        pooled = size // 2
        flops += 2 * 9 * c_in * width * size * size + 2 * 9 * width * width * pooled * pooled
        size, c_in = pooled, width
    return float(flops + 2 * c_in * 10)
