"""torchvision's ImageNet ResNet-50/152 under the fbl model contract, optionally with frozen early stages.

``resnet50`` and ``resnet152`` are torchvision's models; ``resnet152_p`` is the Places-LT setting of the
paper (``--arch resnet152_p``, :class:`PlacesResNet152`): an ImageNet-pretrained ResNet-152 run frozen
up to the second bottleneck of ``layer4``, whose third bottleneck is replaced by a freshly initialised
one; only that block and the classifier are trained. ``pretrained`` defaults to False everywhere so
that nothing is downloaded unless asked for; the Places-LT configuration asks for it (or for a local
weights file), see :func:`require_pretrained_source`. Every model here also takes
``pretrained_weights``, a torchvision-format state dict file of its depth (``--pretrained-weights``).
"""

from __future__ import annotations

import os
import pickle
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
        pretrained_weights: path of a torchvision-format ResNet state dict of this depth to load instead
            of ``pretrained``; its head is kept when it has ``num_classes`` outputs, else a fresh one is used.
    """

    def __init__(
        self,
        depth: int = 50,
        num_classes: int = 1000,
        pretrained: bool = False,
        frozen_stages: int = -1,
        pretrained_weights: str | None = None,
    ):
        if depth not in _ARCHS:
            raise ConfigError(f"Expected a torchvision ResNet depth in {sorted(_ARCHS)} but got {depth!r}")
        num_classes = check_num_classes(num_classes)
        if isinstance(frozen_stages, bool) or frozen_stages not in range(-1, 5):
            raise ConfigError(f"Expected frozen_stages in -1..4 (-1 freezes nothing) but got {frozen_stages!r}")
        if pretrained and pretrained_weights:
            raise ConfigError("Give either pretrained (torchvision cache) or pretrained_weights (a file), not both")
        layers, weights = _ARCHS[depth]
        # Fetch or read before building, so a missing download or a bad file fails fast, not after a slow build.
        state_dict = _fetch_weights(f"resnet{depth}", weights) if pretrained else None
        file_state = _read_weights_file(pretrained_weights) if pretrained_weights else None
        super().__init__(Bottleneck, list(layers), num_classes=1000 if pretrained else num_classes)
        self.depth = depth
        if state_dict is not None:
            self.load_state_dict(state_dict)
            if num_classes != self.fc.out_features:
                self.fc = fresh_linear(self.fc, num_classes)
        if file_state is not None:
            _load_backbone(self, file_state, pretrained_weights, replaced=("fc.",))
            head = {name[len("fc.") :]: value for name, value in file_state.items() if name.startswith("fc.")}
            if all(head.get(name, torch.empty(0)).shape == value.shape for name, value in self.fc.state_dict().items()):
                self.fc.load_state_dict(head)
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
def resnet50(
    num_classes: int, pretrained: bool = False, frozen_stages: int = -1, pretrained_weights: str | None = None
) -> TorchvisionResNet:
    return TorchvisionResNet(50, num_classes, pretrained, frozen_stages, pretrained_weights)


@register_model("resnet152")
def resnet152(
    num_classes: int, pretrained: bool = False, frozen_stages: int = -1, pretrained_weights: str | None = None
) -> TorchvisionResNet:
    return TorchvisionResNet(152, num_classes, pretrained, frozen_stages, pretrained_weights)


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
            _load_backbone(self, state_dict, pretrained_weights, self.REPLACED_PREFIXES)
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


#: How a file that ``torch.save`` wrote begins: a zip archive, or the pickled magic number of the legacy format.
_TORCH_FILE_STARTS = (b"PK\x03\x04", b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19")

_SAVE_HINT = "expected a state dict saved by torch.save(model.state_dict(), PATH)"


def _read_weights_file(path: str) -> dict:
    """A state dict of tensors from ``path`` via ``torch.load(weights_only=True)``, or a one-line ConfigError.

    torch's own messages are pages long and, for a refused pickle, suggest ``weights_only=False``
    (which would run whatever code the file names); each case gets one line of ours instead.
    """
    if not os.path.isfile(path):
        what = "not found" if not os.path.exists(path) else "not a regular file"
        raise ConfigError(f"Pretrained weights file {path} {what}")
    with open(path, "rb") as handle:
        start = handle.read(16)
    if not start:
        raise ConfigError(f"Pretrained weights file {path} is empty (0 bytes); {_SAVE_HINT}")
    if not start.startswith(_TORCH_FILE_STARTS):
        raise ConfigError(f"Pretrained weights file {path} is not a torch file (text or another format); {_SAVE_HINT}")
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ConfigError(
            f"Pretrained weights file {path} holds objects other than tensors, refused because loading them "
            f"could run code (or the file is damaged); {_SAVE_HINT}"
        ) from None
    except Exception:  # noqa: BLE001 -- a zip archive torch cannot read: truncated or corrupt
        raise ConfigError(f"Pretrained weights file {path} is a damaged torch file (truncated or corrupt)") from None
    _check_tensor_dict(state_dict, path)
    return state_dict


def _check_tensor_dict(state_dict, path: str) -> None:
    """A ConfigError unless ``state_dict`` maps names to tensors; a training checkpoint gets a hint."""
    if not isinstance(state_dict, dict):
        raise ConfigError(f"{path} does not hold a state dict (a dict of tensors) but a {type(state_dict).__name__}")
    other = next((key for key, value in state_dict.items() if not isinstance(value, torch.Tensor)), None)
    if other is not None:
        nested = [key for key in ("model", "state_dict") if isinstance(state_dict.get(key), dict)]
        hint = f"; it looks like a training checkpoint: save its {nested[0]!r} entry alone" if nested else ""
        raise ConfigError(
            f"{path} does not hold a state dict (a dict of tensors): entry {other!r} is a "
            f"{type(state_dict[other]).__name__}{hint}"
        )


def _load_backbone(model: TorchvisionResNet, state_dict: dict, path: str, replaced: tuple[str, ...]) -> None:
    """Load every entry of ``state_dict`` except those under ``replaced``, which must match ``model`` exactly.

    Names and shapes are compared first, so that a file for another model (a ResNet-50 given to
    ResNet-152, a DDP ``module.`` prefix) is one line naming what differs, not torch's long list.
    """
    what = f"{path} is not a torchvision ResNet-{model.depth} state dict"
    own = model.state_dict()
    expected = {name for name in own if not name.startswith(replaced)}
    given = {name for name in state_dict if not name.startswith(replaced)}
    missing, unexpected = sorted(expected - given), sorted(given - expected)
    if missing or unexpected:
        detail = [
            f"{len(names)} {kind} keys (e.g. {names[0]!r})"
            for kind, names in (("missing", missing), ("unexpected", unexpected))
            if names
        ]
        raise ConfigError(f"{what}: {', '.join(detail)}")
    for name in sorted(expected):
        if state_dict[name].shape != own[name].shape:
            shape, wanted = tuple(state_dict[name].shape), tuple(own[name].shape)
            raise ConfigError(f"{what}: {name} has shape {shape}, expected {wanted}")
    model.load_state_dict({name: state_dict[name] for name in expected}, strict=False)
