from __future__ import annotations

import torch

from fbl.errors import ConfigError
from fbl.losses._validation import Counts, check_positive
from fbl.losses.ensemble_functional import balpoe_loss
from fbl.losses.ensemble_loss import EnsembleLoss
from fbl.losses.registry import register_loss


@register_loss("balpoe")
class BalPoELoss(EnsembleLoss):
    r"""Balanced Product of Experts (Sanchez Aimar et al., "Balanced Product of Calibrated Experts for
    Long-Tailed Recognition", CVPR 2023): logit-adjusted losses of strengths :math:`\tau_k`, averaged.

    .. math:: \mathcal L = \frac1K \sum_k \mathrm{CE}(s z_k + \tau_k \log\pi,\ y)

    The experts are combined by averaging their logits (the model's aggregate), a product of
    experts that is balanced when the strengths average to 1 (the paper's 0, 1, 2). The paper
    calibrates the experts with input mixup (alpha 0.8 on CIFAR-10, 0.4 on CIFAR-100): its presets turn ``--mixup`` on.
    See :func:`fbl.losses.ensemble_functional.balpoe_loss`.

    Args:
        class_counts: training samples per class.
        taus: one adjustment strength per expert (the number of experts the model must have).
        s: scale of the cosine logits (30).
        weight, reduction: see :class:`~fbl.losses.base.LongTailLoss`.
    """

    preferred_classifier = "normed"

    def __init__(
        self, class_counts: Counts, taus=(0.0, 1.0, 2.0), s: float = 30.0, weight=None, reduction: str = "mean"
    ):
        super().__init__(class_counts, weight, reduction)
        taus = [taus] if isinstance(taus, (int, float)) else list(taus)
        if not taus or any(isinstance(t, bool) or not isinstance(t, (int, float)) for t in taus):
            raise ConfigError(f"Expected taus to be a list of numbers, one per expert, but got {taus!r}")
        self.taus = tuple(float(t) for t in taus)
        self.num_experts = len(self.taus)
        self.s = self.logit_scale = check_positive(s, "s", " (logit scale)")

    def expert_loss(self, experts, target: torch.Tensor) -> torch.Tensor:
        return balpoe_loss(
            experts.logits, target, self.class_counts, taus=self.taus, s=self.s, weight=self.weight,
            reduction=self.reduction,
        )  # fmt: skip

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, taus={self.taus}, s={self.s}"
