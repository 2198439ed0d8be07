"""ImageNet-style ResNets (18, 34, 50) in torchvision's state-dict layout, as teachers.

For image-folder data sets the natural teachers are ImageNet ResNets, pretrained
or fine-tuned with torchvision. These networks are torchvision's ResNet
definition (He et al. 2016, "v1.5": a Bottleneck strides on its 3×3 conv)
written again here, with the same module and parameter names (``conv1``,
``bn1``, ``layerN.M.{conv,bn}{1,2,3}``, ``layerN.0.downsample.{0,1}``, ``fc``),
so a torchvision checkpoint, or a fine-tune of one with any number of classes,
loads with ``strict=True`` (:func:`deit.models.teacher_files.load_teacher`).

The architecture names are ``tv_resnet18``, ``tv_resnet34`` and ``tv_resnet50``:
``tv_`` says "exactly torchvision's model and names" (the prefix timm gave its
torchvision-weight ResNets) and keeps them apart from ``resnet18``, the CIFAR
ResNet-18 with a 3×3 stride-1 stem in :mod:`deit.models.cnn`. Like every
teacher, each carries its input normalisation (``mean``/``std``, ImageNet's by
default) and resolution (``img_size``, 224 by default): the
:class:`~deit.models.teachers.Teacher` wrapper resizes a student's batch to it.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from deit.data.augment import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "RESNET_ARCHS",
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "TVResNet18",
    "TVResNet34",
    "TVResNet50",
]


def _downsample(c_in: int, c_out: int, stride: int) -> nn.Sequential | None:
    """torchvision's projection shortcut (1×1 conv, BN), or None when the shape is kept."""
    if stride == 1 and c_in == c_out:
        return None
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN layers (the first strides) plus the identity or a projection."""

    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _downsample(c_in, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3 (strided: torchvision's v1.5), 1×1 expand ×4, each with BN; shortcut."""

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int = 1):
        super().__init__()
        width = planes * self.expansion
        self.conv1 = nn.Conv2d(c_in, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, width, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(c_in, width, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + shortcut(x))."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNet(nn.Module):
    """An ImageNet ResNet: 7×7/2 conv stem, BN, ReLU, 3×3/2 max-pool, four stages, avg pool, fc.

    Subclasses fix ``arch``, the ``block`` type and the ``depths`` of the four
    stages (64/128/256/512 planes; the first block of stages 2–4 strides by 2).
    Initialisation is torchvision's: Kaiming-normal convolutions (fan-out,
    ReLU gain), BN scale 1 and shift 0, PyTorch's default for ``fc``.
    ``mean``/``std`` are the normalisation the weights were trained with and
    ``img_size`` the resolution the teacher is fed (a student's batch is
    resized to it); override them for a fine-tune trained otherwise.
    """

    arch = ""
    block: type[BasicBlock | Bottleneck] = BasicBlock
    depths: tuple[int, int, int, int] = (2, 2, 2, 2)

    def __init__(
        self,
        num_classes: int = 1000,
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
        img_size: int = 224,
    ):
        super().__init__()
        self.kwargs = dict(num_classes=num_classes)
        self.mean, self.std, self.img_size = tuple(mean), tuple(std), img_size
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        c_in = 64
        for i, (planes, depth) in enumerate(
            zip((64, 128, 256, 512), self.depths, strict=True), start=1
        ):
            blocks = []
            for b in range(depth):
                blocks.append(self.block(c_in, planes, 2 if i > 1 and b == 0 else 1))
                c_in = planes * self.block.expansion
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch normalised with ``self.mean``/``self.std`` (any size ≥ 32 px)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))

    def conv_bn_pairs(self) -> list[tuple[str, str, bool]]:
        """(conv, batch norm, max-pool between them?) for :func:`deit.models.cnn.fold_batchnorm`."""
        pairs = [("conv1", "bn1", False)]
        for name, block in self.named_modules():
            if isinstance(block, (BasicBlock, Bottleneck)):
                convs = 3 if isinstance(block, Bottleneck) else 2
                pairs += [(f"{name}.conv{i}", f"{name}.bn{i}", False) for i in range(1, convs + 1)]
                if block.downsample is not None:
                    pairs.append((f"{name}.downsample.0", f"{name}.downsample.1", False))
        return pairs


class TVResNet18(ResNet):
    """torchvision's ResNet-18: BasicBlocks 2-2-2-2 (11,689,512 parameters at 1000 classes)."""

    arch, block, depths = "tv_resnet18", BasicBlock, (2, 2, 2, 2)


class TVResNet34(ResNet):
    """torchvision's ResNet-34: BasicBlocks 3-4-6-3 (21,797,672 parameters at 1000 classes)."""

    arch, block, depths = "tv_resnet34", BasicBlock, (3, 4, 6, 3)


class TVResNet50(ResNet):
    """torchvision's ResNet-50 v1.5: Bottlenecks 3-4-6-3 (25,557,032 parameters at 1000)."""

    arch, block, depths = "tv_resnet50", Bottleneck, (3, 4, 6, 3)


RESNET_ARCHS: dict[str, type[ResNet]] = {
    cls.arch: cls for cls in (TVResNet18, TVResNet34, TVResNet50)
}
"""The ImageNet ResNets by architecture name."""
