"""torchvision's ImageNet ResNet-50/152 under the fbl model contract, optionally with frozen early stages.

``resnet50`` and ``resnet152`` are torchvision's models; ``resnet152_p`` is the Places-LT setting of the
paper (``--arch resnet152_p``, :class:`PlacesResNet152`): an ImageNet-pretrained ResNet-152 run frozen
up to the second bottleneck of ``layer4``, whose third bottleneck is replaced by a freshly initialised
one; only that block and the classifier are trained. ``pretrained`` defaults to False everywhere so
that nothing is downloaded unless asked for; the Places-LT configuration asks for it (or for a local
weights file), see :func:`require_pretrained_source`.
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

#: Models that are meaningless without ImageNet weights (the trainer refuses them without a weights source).
NEEDS_PRETRAINED = frozenset({"resnet152_p"})

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

    def train(self, mode: bool = True) -> TorchvisionResNet:
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
            f"and place {file_name} in {cache_dir} (the torch cache, set by TORCH_HOME), "
            "or pass --pretrained-weights PATH"
        ) from exc


@register_model("resnet50")
def resnet50(num_classes: int, pretrained: bool = False, frozen_stages: int = -1) -> TorchvisionResNet:
    return TorchvisionResNet(50, num_classes, pretrained=pretrained, frozen_stages=frozen_stages)


@register_model("resnet152")
def resnet152(num_classes: int, pretrained: bool = False, frozen_stages: int = -1) -> TorchvisionResNet:
    return TorchvisionResNet(152, num_classes, pretrained=pretrained, frozen_stages=frozen_stages)


class PlacesResNet152(TorchvisionResNet):
    """The Places-LT model: ResNet-152 frozen through ``layer4[1]``, a new ``layer4[2]``, average pooling, head.

    The frozen part (stem, ``layer1``-``layer3``, ``layer4[0]``, ``layer4[1]``) has ``requires_grad=False``,
    stays in eval mode under ``.train()`` (its BatchNorm statistics never change) and runs without
    autograd. ``layer4[2]`` is a fresh ``Bottleneck(2048, 512)`` (output 2048, no downsample) initialised
    as torchvision initialises its ResNets, and ``fc`` a fresh ``2048 -> num_classes`` linear layer.

    Args:
        num_classes: size of the head.
        pretrained: load torchvision's ImageNet weights from the torch cache (downloaded once).
        pretrained_weights: path of a torchvision-format ResNet-152 state dict to load instead; its
            ``layer4.2.*`` and ``fc.*`` entries are ignored since those modules are replaced.

    With neither, the weights are random (what tests build); :func:`require_pretrained_source` is the
    check that keeps training runs from doing so.
    """

    REPLACED_PREFIXES = ("layer4.2.", "fc.")

    def __init__(self, num_classes: int = 365, pretrained: bool = False, pretrained_weights: str | None = None):
        if pretrained and pretrained_weights:
            raise ConfigError("Give either pretrained (torchvision cache) or pretrained_weights (a file), not both")
        # Read the file before the slow build, so a bad path fails fast.
        state_dict = _read_weights_file(pretrained_weights) if pretrained_weights else None
        super().__init__(152, num_classes, pretrained=pretrained, frozen_stages=-1)
        if state_dict is not None:
            self._load_backbone(state_dict, pretrained_weights)
        self.frozen_stages = 3  # plus layer4[0] and layer4[1], see _frozen_modules
        block = Bottleneck(self.fc.in_features, self.fc.in_features // Bottleneck.expansion)
        _init_like_torchvision(block)
        self.layer4[2] = block.to(device=self.fc.weight.device, dtype=self.fc.weight.dtype)
        self.fc = fresh_linear(self.fc, self.num_classes)  # the ImageNet head is never kept
        for module in self._frozen_modules():
            module.requires_grad_(False)
        self.train(self.training)

    def _frozen_modules(self) -> list[nn.Module]:
        return [self.conv1, self.bn1, self.layer1, self.layer2, self.layer3, self.layer4[0], self.layer4[1]]

    def _load_backbone(self, state_dict: dict, path: str) -> None:
        def kept(names):
            return {name for name in names if not name.startswith(self.REPLACED_PREFIXES)}

        own = self.state_dict()
        expected, given = kept(own), kept(state_dict)
        missing, unexpected = sorted(expected - given), sorted(given - expected)
        if missing or unexpected:
            detail = [
                f"{len(names)} {what} keys (e.g. {names[0]!r})"
                for what, names in (("missing", missing), ("unexpected", unexpected))
                if names
            ]
            raise ConfigError(f"{path} is not a torchvision ResNet-152 state dict: {', '.join(detail)}")
        for name in sorted(expected):
            if state_dict[name].shape != own[name].shape:
                raise ConfigError(
                    f"{path} is not a torchvision ResNet-152 state dict: {name} has shape "
                    f"{tuple(state_dict[name].shape)}, expected {tuple(own[name].shape)}"
                )
        self.load_state_dict({name: state_dict[name] for name in expected}, strict=False)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Input ``(N, 3, H, W)`` -> globally average-pooled features ``(N, 2048)``."""
        # The frozen part trains nothing, so autograd need not record it (saves most activation memory).
        with torch.no_grad():
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer3(self.layer2(self.layer1(x)))
            x = self.layer4[1](self.layer4[0](x))
        x = self.layer4[2](x)
        return torch.flatten(self.avgpool(x), 1)


@register_model("resnet152_p")
def resnet152_p(num_classes: int, pretrained: bool = False, pretrained_weights: str | None = None) -> PlacesResNet152:
    """Places-LT: frozen ImageNet ResNet-152 up to ``layer4[1]``, a fresh ``layer4[2]`` and head train."""
    return PlacesResNet152(num_classes, pretrained=pretrained, pretrained_weights=pretrained_weights)


def require_pretrained_source(arch: str, pretrained: bool, pretrained_weights: str | None) -> None:
    """Raise a one-line ConfigError when ``arch`` needs ImageNet weights and none were asked for.

    Building such a model from random weights is allowed (tests do), but training it is not what the
    paper's setting means; the trainer is meant to call this before building.
    """
    key = str(arch).strip().lower()
    if key in NEEDS_PRETRAINED and not pretrained and not pretrained_weights:
        raise ConfigError(
            f"{key} needs ImageNet weights: pass --pretrained (torchvision cache) or --pretrained-weights PATH"
        )


def _init_like_torchvision(block: nn.Module) -> None:
    """torchvision's ResNet initialisation: He-normal (fan_out) convolutions, BatchNorm weight 1 and bias 0."""
    for module in block.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def _read_weights_file(path: str) -> dict:
    """A state dict of tensors from ``path`` via ``torch.load(weights_only=True)``, or a one-line ConfigError."""
    if not os.path.isfile(path):
        raise ConfigError(f"Pretrained weights file {path} not found")
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 -- whatever torch.load raises, the cause is the user's file
        reason = " ".join(str(exc).split()) or type(exc).__name__
        # torch's weights-only refusal is a page of advice; the part naming what was refused is the useful one.
        marker = "WeightsUnpickler error:"
        if marker in reason:
            reason = reason[reason.index(marker) :]
        raise ConfigError(f"Cannot load {path} as weights-only tensors: {reason[:200]}") from None
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ConfigError(f"{path} does not hold a state dict (a dict of tensors)")
    return state_dict
