"""torchvision's ImageNet ResNet-50/152 under the fbl model contract, optionally with frozen early stages.

``resnet50`` and ``resnet152`` are torchvision's models; ``resnet152_p`` is the Places-LT setting of the
paper (``--arch resnet152_p``): an ImageNet-pretrained ResNet-152 of which only the last residual
stage (``layer4``) and the classifier are trained. ``pretrained`` defaults to False everywhere so that
nothing is downloaded unless asked for; the Places-LT configuration asks for it.
"""
from __future__ import annotations

import os
from urllib.parse import urlparse

import torch
from torch import nn
from torchvision.models import ResNet, ResNet50_Weights, ResNet152_Weights, WeightsEnum
from torchvision.models.resnet import Bottleneck

from fbl.errors import ConfigError
from fbl.models._helpers import LinearHead, check_num_classes, fresh_linear
from fbl.models.registry import register_model

# depth -> (bottleneck blocks per stage, torchvision weights loaded by pretrained=True). IMAGENET1K_V1
# are the original torchvision weights, the ones the long-tailed literature fine-tunes from.
_ARCHS = {
    50: ((3, 4, 6, 3), ResNet50_Weights.IMAGENET1K_V1),
    152: ((3, 8, 36, 3), ResNet152_Weights.IMAGENET1K_V1),
}


class TorchvisionResNet(LinearHead, ResNet):
    """torchvision ``ResNet`` split into ``forward_features`` (up to the 2048-d pooled vector) and ``forward_head``.

    Subclassing keeps torchvision's module names, so torchvision checkpoints load without renaming.

    Args:
        depth: 50 or 152.
        num_classes: size of the linear head. With ``pretrained`` and 1000 classes the ImageNet head is
            kept; otherwise the head is freshly initialised.
        pretrained: load torchvision's ImageNet weights (downloaded once into the torch cache).
        frozen_stages: -1 trains everything; 0 freezes the stem (``conv1``, ``bn1``); ``k`` in 1..4
            freezes the stem and ``layer1`` .. ``layer{k}``. Frozen parameters get ``requires_grad=False``
            and frozen modules stay in eval mode.
    """

    def __init__(self, depth: int = 50, num_classes: int = 1000, pretrained: bool = False, frozen_stages: int = -1):
        if depth not in _ARCHS:
            raise ConfigError(f"Expected a torchvision ResNet depth in {sorted(_ARCHS)} but got {depth!r}")
        num_classes = check_num_classes(num_classes)
        if isinstance(frozen_stages, bool) or frozen_stages not in range(-1, 5):
            raise ConfigError(f"Expected frozen_stages in -1..4 (-1 freezes nothing) but got {frozen_stages!r}")
        layers, weights = _ARCHS[depth]
        # Fetch before building, so a missing download fails fast rather than after a slow initialisation.
        state_dict = _fetch_weights(f"resnet{depth}", weights) if pretrained else None
        super().__init__(Bottleneck, list(layers), num_classes=1000 if pretrained else num_classes)
        if state_dict is not None:
            self.load_state_dict(state_dict)
            if num_classes != self.fc.out_features:
                self.fc = fresh_linear(self.fc, num_classes)
        self.depth = depth
        self.num_classes = num_classes
        self.num_features = self.fc.in_features
        self.frozen_stages = frozen_stages
        for module in self._frozen_modules():
            module.requires_grad_(False)
        self.train(self.training)

    def _frozen_modules(self) -> list[nn.Module]:
        stages = [(self.conv1, self.bn1), (self.layer1,), (self.layer2,), (self.layer3,), (self.layer4,)]
        return [module for stage in stages[: self.frozen_stages + 1] for module in stage]

    def train(self, mode: bool = True) -> "TorchvisionResNet":
        super().train(mode)
        # Frozen stages stay in eval mode even while training: in train mode their BN layers would
        # normalise with batch statistics and overwrite the pretrained running statistics with ones
        # from small long-tailed batches, changing the frozen features although no weight is trained.
        for module in self._frozen_modules():
            module.train(False)
        return self

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Input ``(N, 3, H, W)`` -> globally average-pooled features ``(N, 2048)``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


def _fetch_weights(name: str, weights: WeightsEnum) -> dict:
    """torchvision's state dict for ``weights``, or a one-line ConfigError saying where to put the file."""
    try:
        # No progress bar: library code leaves progress display to the CLI.
        return weights.get_state_dict(progress=False, check_hash=True)
    except OSError as exc:  # URLError, HTTPError, socket errors, an unwritable cache
        cache_dir = os.path.join(torch.hub.get_dir(), "checkpoints")
        file_name = os.path.basename(urlparse(weights.url).path)
        reason = " ".join(str(exc).split())
        raise ConfigError(
            f"Could not download the ImageNet weights for {name} ({reason}); download {weights.url} "
            f"and place {file_name} in {cache_dir} (the torch cache, set by TORCH_HOME)"
        ) from exc


@register_model("resnet50")
def resnet50(num_classes: int, pretrained: bool = False, frozen_stages: int = -1) -> TorchvisionResNet:
    return TorchvisionResNet(50, num_classes, pretrained=pretrained, frozen_stages=frozen_stages)


@register_model("resnet152")
def resnet152(num_classes: int, pretrained: bool = False, frozen_stages: int = -1) -> TorchvisionResNet:
    return TorchvisionResNet(152, num_classes, pretrained=pretrained, frozen_stages=frozen_stages)


@register_model("resnet152_p")
def resnet152_p(num_classes: int, pretrained: bool = False) -> TorchvisionResNet:
    """Places-LT: ResNet-152 with the stem and ``layer1``-``layer3`` frozen; ``layer4`` and the head train."""
    return TorchvisionResNet(152, num_classes, pretrained=pretrained, frozen_stages=3)
