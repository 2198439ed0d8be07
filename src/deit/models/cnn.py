"""The CNN teacher architectures, as networks: build, describe, rebuild, fold, count.

A teacher is only as good as its inputs, so every architecture here carries
its own input normalisation (``mean``, ``std``) and resolution
(``img_size``); :func:`teacher_spec` records them with the architecture's
settings and :func:`model_from_spec` rebuilds the network from that record.
Using a trained teacher (feeding it a student's batches, predicting,
evaluating) is :mod:`deit.models.teachers`; loading, checking and exporting
its weights is :mod:`deit.models.teacher_files`.

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

:func:`fold_batchnorm` makes the inference copy of either (every BN merged
into its conv).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from deit.data.augment import CIFAR10_MEAN, CIFAR10_STD
from deit.models.resnet import RESNET_ARCHS

__all__ = [
    "RESNET18_CIFAR_MEAN",
    "RESNET18_CIFAR_STD",
    "TEACHER_ARCHS",
    "BasicBlock",
    "ConvGroup",
    "FastCNN",
    "ResNet18",
    "create_teacher",
    "fastcnn_flops",
    "fold_batchnorm",
    "model_from_spec",
    "param_count",
    "teacher_spec",
]

RESNET18_CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
RESNET18_CIFAR_STD = (0.2471, 0.2435, 0.2616)


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

    Stem: 3×3 stride-1 conv, BN, ReLU, then (``maxpool=True``, the default) a
    3×3 stride-2 max-pool; four stages of two BasicBlocks with
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


TEACHER_ARCHS: dict[str, type[nn.Module]] = {
    "fastcnn": FastCNN,
    "resnet18": ResNet18,
    **RESNET_ARCHS,  # tv_resnet18/34/50: ImageNet ResNets in torchvision's layout (resnet.py)
}
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


def model_from_spec(spec: Mapping[str, Any]) -> nn.Module:
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


# ----------------------------------------------------------------------------- counting


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
