"""Multi-expert CIFAR ResNets: a shared trunk and K expert branches, as in RIDE and SADE.

RIDE (Wang et al., ICLR 2021) and SADE (Zhang et al., NeurIPS 2022) split a CIFAR ResNet-32 after
its first stage: the 3x3 stem and stage 1 (16 channels) are shared, and each of the K = 3 experts has
its own stages 2 and 3 and its own classifier. Their CIFAR configuration narrows the expert stages
from 32/64 to 24/48 channels ("reduce_dimension") so that three experts cost about what one
ResNet-32 does; BalPoE (Sanchez Aimar et al., CVPR 2023) keeps the full 32/64. Both are registered:

* ``resnet32-ride`` (alias ``resnet32-sade``): stages 16 | 24, 48 per expert;
* ``resnet32-experts``: stages 16 | 32, 64 per expert (BalPoE, and the FBL experts);
* ``digits-experts``: a one-block-per-stage version for the 8x8 grey digits (tests, smoke runs).

The model keeps the one-call contract of every model: ``model(x)`` gives the aggregate logits,
``model(x, return_features=True)`` the aggregate logits and the experts' features concatenated,
and ``return_experts=True`` adds an :class:`ExpertOutputs` of the same call (every expert's logits
and features), which ensemble losses and per-expert metrics read. The aggregate is
:math:`\\sum_k w_k z_k` with the buffer ``expert_weights`` (uniform 1/K, the logit average the three
papers use; SADE's test-time aggregation replaces it, see :mod:`fbl.engine.test_time_aggregation`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from fbl.errors import ConfigError
from fbl.models._helpers import ForwardWithFeatures, check_num_classes, float32_head, no_pretrained_weights
from fbl.models.cifar_resnet import BasicBlock, _init_weight
from fbl.models.normed_linear import NormedLinear
from fbl.models.registry import register_model

#: RIDE's CIFAR ResNet-32 with "reduce_dimension": stage widths (shared, expert, expert).
RIDE_WIDTHS = (16, 24, 48)
#: The plain CIFAR ResNet-32 widths, each expert keeping a full copy of stages 2 and 3 (BalPoE).
FULL_WIDTHS = (16, 32, 64)
#: The registered multi-expert models (what an ensemble loss needs; ``resnet32-sade`` is an alias).
MULTI_EXPERT_ARCHS = ("resnet32-ride", "resnet32-experts", "digits-experts")


class ExpertOutputs(NamedTuple):
    """Every expert's outputs of one forward pass: ``logits`` (N, K, C) and pooled ``features`` (N, K, D)."""

    logits: torch.Tensor
    features: torch.Tensor

    def float(self) -> ExpertOutputs:
        return ExpertOutputs(self.logits.float(), self.features.float())

    @property
    def num_experts(self) -> int:
        return self.logits.shape[1]


class ExpertHeads(nn.Module):
    """K classifiers, expert ``k``'s applied to expert ``k``'s features: (N, K, D) -> (N, K, C)."""

    def __init__(self, in_features: int, num_classes: int, num_experts: int, normed: bool = False):
        super().__init__()
        layer = NormedLinear if normed else nn.Linear
        self.heads = nn.ModuleList(layer(in_features, num_classes) for _ in range(num_experts))
        self.in_features, self.out_features = in_features, num_classes

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.stack([head(features[:, k]) for k, head in enumerate(self.heads)], dim=1)


def _stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    layers = [BasicBlock(in_planes, planes, stride)]
    layers += [BasicBlock(planes, planes, 1) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class MultiExpertResNet(ForwardWithFeatures, nn.Module):
    """CIFAR ResNet of depth ``6n + 2`` whose stage 1 is shared and stages 2-3 are per expert.

    Args:
        depth: 32 for ResNet-32 (``n = 5`` blocks per stage).
        num_classes: classes of every expert's head.
        num_experts: K >= 1.
        widths: channels of (stage 1, expert stage 2, expert stage 3).
        in_chans: image channels (3; 1 for the digits).
    """

    def __init__(self, depth: int, num_classes: int, num_experts: int = 3, widths=RIDE_WIDTHS, in_chans: int = 3):
        super().__init__()
        if isinstance(num_experts, bool) or not isinstance(num_experts, int) or num_experts < 1:
            raise ConfigError(f"Expected num_experts to be an integer >= 1 but got {num_experts!r}")
        blocks = (depth - 2) // 6
        self.depth, self.num_experts, self.widths = depth, num_experts, tuple(widths)
        self.num_classes = check_num_classes(num_classes)
        self.expert_width = widths[2]
        self.num_features = num_experts * widths[2]  # the aggregate features: the experts' concatenated
        self.conv1 = nn.Conv2d(in_chans, widths[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.layer1 = _stage(widths[0], widths[0], blocks, 1)
        self.experts = nn.ModuleList(
            nn.Sequential(_stage(widths[0], widths[1], blocks, 2), _stage(widths[1], widths[2], blocks, 2))
            for _ in range(num_experts)
        )
        self.fc = ExpertHeads(widths[2], self.num_classes, num_experts)
        self.register_buffer("expert_weights", torch.full((num_experts,), 1.0 / num_experts))
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                _init_weight(module)

    def __setattr__(self, name, value):
        # create_model(classifier="normed") assigns one cosine layer as ``fc``; every expert gets its own.
        if name == "fc" and isinstance(value, NormedLinear) and "fc" in self._modules:
            value = ExpertHeads(self.expert_width, value.out_features, self.num_experts, normed=True)
        super().__setattr__(name, value)

    def expert_features(self, x: torch.Tensor) -> torch.Tensor:
        """Input ``(N, C, H, W)`` -> each expert's pooled features ``(N, K, D)``."""
        shared = self.layer1(F.relu(self.bn1(self.conv1(x))))
        return torch.stack([expert(shared).mean(dim=(2, 3)) for expert in self.experts], dim=1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The aggregate features: every expert's, concatenated, ``(N, K * D)``."""
        return self.expert_features(x).flatten(1)

    def aggregate(self, expert_logits: torch.Tensor) -> torch.Tensor:
        r""":math:`\sum_k w_k z_k` over the experts' logits ``(N, K, C)``, with ``w = expert_weights``."""
        return torch.einsum("nkc,k->nc", expert_logits, self.expert_weights.to(expert_logits.dtype))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if pre_logits:
            return x
        return self.aggregate(self.fc(x.view(x.shape[0], self.num_experts, self.expert_width)))

    def _expert_and_aggregate_logits(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        expert_logits = self.fc(features)
        return expert_logits, self.aggregate(expert_logits)

    def forward(self, x: torch.Tensor, return_features: bool = False, return_experts: bool = False):
        """Aggregate logits; ``return_features`` adds the aggregate features, ``return_experts`` the
        :class:`ExpertOutputs` of the same pass (``(logits, features, experts)``)."""
        features, (expert_logits, logits) = float32_head(self.expert_features(x), self._expert_and_aggregate_logits)
        if return_experts:
            return logits, features.flatten(1), ExpertOutputs(expert_logits, features)
        return (logits, features.flatten(1)) if return_features else logits

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """Fresh linear heads for every expert (cRT on a multi-expert backbone)."""
        device = self.fc.heads[0].weight.device
        self.fc = ExpertHeads(self.expert_width, check_num_classes(num_classes), self.num_experts).to(device)
        for head in self.fc.heads:
            _init_weight(head)
        self.num_classes = num_classes

    def set_expert_weights(self, weights) -> None:
        """Replace the aggregation weights (K non-negative numbers summing to 1)."""
        weights = torch.as_tensor(weights, dtype=self.expert_weights.dtype).to(self.expert_weights.device)
        if weights.shape != self.expert_weights.shape or bool((weights < 0).any()):
            raise ConfigError(f"Expected {self.num_experts} non-negative expert weights but got {weights.tolist()}")
        if abs(float(weights.sum()) - 1.0) > 1e-4:
            raise ConfigError(f"Expected expert weights summing to 1 but got {weights.tolist()}")
        self.expert_weights.copy_(weights)


def _build(name: str, depth: int, widths, num_classes: int, num_experts: int, pretrained: bool, in_chans: int):
    no_pretrained_weights(name, pretrained)
    return MultiExpertResNet(depth, num_classes, num_experts=num_experts, widths=widths, in_chans=in_chans)


@register_model("resnet32-ride", "resnet32-sade")
def resnet32_ride(num_classes: int, num_experts: int = 3, pretrained: bool = False) -> MultiExpertResNet:
    return _build("resnet32-ride", 32, RIDE_WIDTHS, num_classes, num_experts, pretrained, 3)


@register_model("resnet32-experts")
def resnet32_experts(num_classes: int, num_experts: int = 3, pretrained: bool = False) -> MultiExpertResNet:
    return _build("resnet32-experts", 32, FULL_WIDTHS, num_classes, num_experts, pretrained, 3)


@register_model("digits-experts")
def digits_experts(
    num_classes: int, num_experts: int = 3, in_chans: int = 1, pretrained: bool = False
) -> MultiExpertResNet:
    return _build("digits-experts", 8, (8, 12, 16), num_classes, num_experts, pretrained, in_chans)
