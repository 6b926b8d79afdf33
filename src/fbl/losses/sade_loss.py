from __future__ import annotations

import torch

from fbl.losses._validation import Counts, check_non_negative, check_positive
from fbl.losses.ensemble_functional import sade_loss
from fbl.losses.ensemble_loss import EnsembleLoss
from fbl.losses.registry import register_loss


@register_loss("sade")
class SADELoss(EnsembleLoss):
    r"""SADE's skill-diverse loss (Zhang et al., "Self-Supervised Aggregation of Diverse Experts for
    Test-Agnostic Long-Tailed Recognition", NeurIPS 2022), three experts.

    .. math::
        \mathcal L = \mathrm{CE}(s z_1, y) + \mathrm{CE}(s z_2 + \log\pi, y)
        + \mathrm{CE}(s z_3 + \log\pi - \tau \log\tilde\pi, y)

    Experts 1, 2 and 3 fit a forward-long-tailed (the training prior), a uniform and a
    backward-long-tailed test prior. Their average serves a uniform test set; when the test prior is
    unknown, :func:`fbl.engine.test_time_aggregation.learn_expert_weights` re-weights them on the
    unlabelled test images. See :func:`fbl.losses.ensemble_functional.sade_loss`.

    Args:
        class_counts: training samples per class.
        s: scale of the cosine logits (30).
        tau: strength of the inverse-prior adjustment of expert 3 (2, SADE's CIFAR setting).
        weight, reduction: see :class:`~fbl.losses.base.LongTailLoss`.
    """

    preferred_classifier = "normed"
    num_experts = 3

    def __init__(self, class_counts: Counts, s: float = 30.0, tau: float = 2.0, weight=None, reduction: str = "mean"):
        super().__init__(class_counts, weight, reduction)
        self.s = self.logit_scale = check_positive(s, "s", " (logit scale)")
        self.tau = check_non_negative(tau, "tau", " (inverse-prior strength)")

    def expert_loss(self, experts, target: torch.Tensor) -> torch.Tensor:
        return sade_loss(
            experts.logits, target, self.class_counts, s=self.s, tau=self.tau, weight=self.weight,
            reduction=self.reduction,
        )  # fmt: skip

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, s={self.s}, tau={self.tau}"
