"""ResNet-20/32/44/56/110 for 32x32 images (He et al., "Deep Residual Learning", CVPR 2016, Sec. 4.2).

The variant used by LDAM-DRW and the Feature-Balanced Loss experiments on CIFAR-LT: a 3x3 stem with 16
channels, three stages of ``n = (depth - 2) / 6`` basic blocks with 16/32/64 channels, parameter-free
(option A) shortcuts, global average pooling and one linear layer. ResNet-32 has 464,154 parameters
with 10 classes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fbl.errors import ConfigError
from fbl.models._helpers import LinearHead, check_num_classes, no_pretrained_weights
from fbl.models.registry import register_model

STAGE_WIDTHS = (16, 32, 64)


class ShortcutA(nn.Module):
    """Option-A shortcut: ``x[:, :, ::s, ::s]`` with zero channels padded equally on both sides.

    It has no parameters, which is why the CIFAR ResNets keep the parameter counts of the paper's table.
    """

    def __init__(self, in_planes: int, out_planes: int, stride: int):
        super().__init__()
        if out_planes < in_planes or (out_planes - in_planes) % 2:
            raise ValueError(f"option-A shortcut needs an even channel increase, got {in_planes} -> {out_planes}")
        self.stride = stride
        # For the 16->32 and 32->64 blocks this is planes // 4, as in the reference code.
        self.pad = (out_planes - in_planes) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad, self.pad))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, pad={self.pad}"


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus a shortcut: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        # No conv biases: the BN that follows each conv has its own shift.
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride != 1 or in_planes != planes:
            self.shortcut = ShortcutA(in_planes, planes, stride)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(LinearHead, nn.Module):
    """CIFAR ResNet of depth ``6n + 2``; ``forward_features`` gives the 64-d pooled vector."""

    def __init__(self, depth: int, num_classes: int = 10):
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
            raise ConfigError(
                f"Expected a CIFAR ResNet depth of the form 6n+2 (e.g. 20, 32, 44, 56, 110) but got {depth!r}"
            )
        num_classes = check_num_classes(num_classes)
        blocks_per_stage = (depth - 2) // 6
        self.depth = depth
        self.num_classes = num_classes
        self.num_features = STAGE_WIDTHS[-1]

        self.conv1 = nn.Conv2d(3, STAGE_WIDTHS[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(STAGE_WIDTHS[0])
        in_planes = STAGE_WIDTHS[0]
        stages = []
        for i, planes in enumerate(STAGE_WIDTHS):
            stride = 1 if i == 0 else 2
            blocks = []
            for j in range(blocks_per_stage):
                blocks.append(BasicBlock(in_planes, planes, stride if j == 0 else 1))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(self.num_features, num_classes)

        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                _init_weight(module)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Input ``(N, 3, H, W)`` -> globally average-pooled features ``(N, 64)``."""
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return x.mean(dim=(2, 3))

    def init_classifier(self, layer: nn.Linear) -> None:
        _init_weight(layer)


def _init_weight(module: nn.Module) -> None:
    # Kaiming-normal (fan_in, gain sqrt(2)) on conv and linear weights as in the LDAM-DRW code the
    # CIFAR-LT results are compared with; biases and BN keep PyTorch's defaults, as there.
    nn.init.kaiming_normal_(module.weight)


def _cifar_resnet(depth: int, num_classes: int, pretrained: bool) -> CifarResNet:
    no_pretrained_weights(f"resnet{depth}", pretrained)
    return CifarResNet(depth, num_classes)


@register_model("resnet20")
def resnet20(num_classes: int, pretrained: bool = False) -> CifarResNet:
    return _cifar_resnet(20, num_classes, pretrained)


@register_model("resnet32")
def resnet32(num_classes: int, pretrained: bool = False) -> CifarResNet:
    return _cifar_resnet(32, num_classes, pretrained)


@register_model("resnet44")
def resnet44(num_classes: int, pretrained: bool = False) -> CifarResNet:
    return _cifar_resnet(44, num_classes, pretrained)


@register_model("resnet56")
def resnet56(num_classes: int, pretrained: bool = False) -> CifarResNet:
    return _cifar_resnet(56, num_classes, pretrained)


@register_model("resnet110")
def resnet110(num_classes: int, pretrained: bool = False) -> CifarResNet:
    return _cifar_resnet(110, num_classes, pretrained)
