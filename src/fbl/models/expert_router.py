r"""RIDE's expert assignment ("router", Wang et al., ICLR 2021): easy images stop after the first experts.

After a multi-expert model is trained, its experts are frozen and a small router learns, for each image,
whether consulting the next expert is worth it. Router :math:`i` (one per expert but the last) looks at
expert :math:`i`'s pooled features :math:`f_i` and the running mean of the first :math:`i` experts'
logits :math:`\bar z_i = \frac1i \sum_{k \le i} z_k` (scaled as trained, RIDE's :math:`s z`):

.. math:: r_i = w^\top [\,\mathrm{top}_k(\bar z_i),\ \mathrm{ReLU}(A_i f_i / \lVert f_i \rVert)\,] + b

with :math:`A_i` a 16-unit affine layer of its own and :math:`(w, b)` shared by the routers; :math:`\mathrm{top}_k`
are the :math:`k` largest logits in descending order (RIDE's CIFAR-100 setting :math:`k = 30`, capped at
the number of classes). At test time an image goes on to expert :math:`i + 1` while
:math:`\sigma(r_i) > 0.5` and is predicted by the mean logits of the experts it saw
(:func:`routed_logits`); the number of experts it used is :func:`experts_used`.

:class:`RoutedExperts` wraps a trained :class:`~fbl.models.multi_expert_resnet.MultiExpertResNet` with
its experts frozen (weights and BatchNorm statistics) and a router; ``fbl train --stage2-from RUN
--preset ride-router`` trains it with :class:`~fbl.losses.ride_router_loss.RIDERouterLoss`.
While training, its logits are the mean of every expert's (as RIDE's). Every expert runs on every image
here; the routed prediction and the experts each image used are exact, the compute the router saves
is counted (``experts_used``), not skipped.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from fbl.errors import ConfigError
from fbl.models._helpers import ForwardWithFeatures, float32_head
from fbl.models.cifar_resnet import _init_weight
from fbl.models.multi_expert_resnet import MultiExpertResNet

#: Logits each router reads (RIDE: 30 for CIFAR-100 and ImageNet-LT ResNet-10, 50 for ResNet-50).
ROUTER_TOP_K = 30
#: Hidden units of each router's feature layer (RIDE's).
ROUTER_HIDDEN = 16


class RoutedOutputs(NamedTuple):
    """The experts' ``logits`` (N, K, C) and pooled ``features`` (N, K, D), the routers' ``router_logits`` (N, K-1)."""

    logits: torch.Tensor
    features: torch.Tensor
    router_logits: torch.Tensor

    def float(self) -> RoutedOutputs:
        return RoutedOutputs(self.logits.float(), self.features.float(), self.router_logits.float())

    @property
    def num_experts(self) -> int:
        return self.logits.shape[1]


def prefix_means(expert_logits: torch.Tensor) -> torch.Tensor:
    """``(N, K, C)``: entry ``i`` is the mean of the first ``i + 1`` experts' logits."""
    k = expert_logits.shape[1]
    steps = torch.arange(1, k + 1, device=expert_logits.device, dtype=expert_logits.dtype).view(1, k, 1)
    return expert_logits.cumsum(dim=1) / steps


def experts_used(router_logits: torch.Tensor) -> torch.Tensor:
    """Experts each image consults, ``(N,)``: one, plus one for every router in a row that says go on."""
    go_on = (router_logits > 0).long()  # sigmoid(r) > 0.5
    return 1 + go_on.cumprod(dim=1).sum(dim=1)


def routed_logits(expert_logits: torch.Tensor, router_logits: torch.Tensor) -> torch.Tensor:
    """Each image's prediction: the mean logits of the experts it consulted, ``(N, C)``."""
    used = experts_used(router_logits) - 1
    return prefix_means(expert_logits)[torch.arange(expert_logits.shape[0], device=used.device), used]


class ExpertRouter(nn.Module):
    """The K - 1 routers of a K-expert model: ``router(expert_logits, expert_features)`` -> ``(N, K - 1)`` logits."""

    def __init__(self, num_experts: int, feature_dim: int, num_classes: int, top_k: int = ROUTER_TOP_K):
        super().__init__()
        if num_experts < 2:
            raise ConfigError(f"A router chooses between experts; this model has {num_experts}")
        self.top_k = min(int(top_k), int(num_classes))
        self.hidden = nn.ModuleList(nn.Linear(feature_dim, ROUTER_HIDDEN) for _ in range(num_experts - 1))
        self.decide = nn.Linear(ROUTER_HIDDEN + self.top_k, 1)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                _init_weight(module)  # RIDE initialises its routers as the rest of the network

    def forward(self, expert_logits: torch.Tensor, expert_features: torch.Tensor) -> torch.Tensor:
        means = prefix_means(expert_logits)
        decisions = []
        for i, hidden in enumerate(self.hidden):
            features = expert_features[:, i]
            seen = F.relu(hidden(features / features.norm(dim=1, keepdim=True)))
            top = means[:, i].topk(self.top_k, dim=1).values
            decisions.append(self.decide(torch.cat([top, seen], dim=1)).squeeze(1))
        return torch.stack(decisions, dim=1)


class RoutedExperts(ForwardWithFeatures, nn.Module):
    """A trained multi-expert model, frozen, with RIDE's router (see the module docstring).

    Args:
        model: the trained :class:`MultiExpertResNet`.
        logit_scale: the factor its experts' logits were trained with (RIDE's ``s`` = 30 on cosine heads);
            the outputs here are scaled by it, so they are the logits as trained.
        top_k: logits each router reads (capped at the number of classes).
    """

    def __init__(self, model: nn.Module, logit_scale: float = 1.0, top_k: int = ROUTER_TOP_K):
        super().__init__()
        if not isinstance(model, MultiExpertResNet):
            raise ConfigError(f"RIDE's router needs a multi-expert model, not {type(model).__name__}")
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        self.model = model
        self.num_experts, self.expert_width = model.num_experts, model.expert_width
        self.router = ExpertRouter(model.num_experts, model.expert_width, model.num_classes, top_k)
        self.register_buffer("logit_scale", torch.tensor(float(logit_scale)))

    def train(self, mode: bool = True) -> RoutedExperts:
        super().train(mode)
        self.model.eval()  # the experts' BatchNorm statistics stay those they were trained with
        return self

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.model.forward_features(x)

    def heads(self, features: torch.Tensor) -> tuple[torch.Tensor, RoutedOutputs]:
        """Logits (every expert's mean while training, routed otherwise) and the :class:`RoutedOutputs`."""
        per_expert = features.view(features.shape[0], self.num_experts, self.expert_width)
        expert_logits = self.model.get_classifier()(per_expert) * self.logit_scale
        router_logits = self.router(expert_logits, per_expert)
        logits = expert_logits.mean(dim=1) if self.training else routed_logits(expert_logits, router_logits)
        return logits, RoutedOutputs(expert_logits, per_expert, router_logits)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return features if pre_logits else self.heads(features)[0]

    def forward(self, x: torch.Tensor, return_features: bool = False, return_experts: bool = False):
        """Logits; ``return_features`` adds the experts' concatenated features, ``return_experts`` the
        :class:`RoutedOutputs` of the same pass (``(logits, features, outputs)``)."""
        features, (logits, outputs) = float32_head(self.forward_features(x), self.heads)
        if return_experts:
            return logits, features, outputs
        return (logits, features) if return_features else logits

    def get_classifier(self) -> nn.Module:
        return self.model.get_classifier()
