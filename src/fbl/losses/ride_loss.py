from __future__ import annotations

import torch

from fbl.losses._validation import Counts, check_non_negative, check_positive
from fbl.losses.ensemble_functional import ride_loss
from fbl.losses.ensemble_loss import EnsembleLoss
from fbl.losses.registry import register_loss


@register_loss("ride")
class RIDELoss(EnsembleLoss):
    r"""RIDE's loss (Wang et al., "Long-tailed Recognition by Routing Diverse Distribution-Aware
    Experts", ICLR 2021): LDAM for every expert plus a diversity term, summed over the experts.

    .. math::
        \mathcal L = \sum_k \Big[\mathrm{LDAM}(z_k, y; w)
        + \eta\, \bar T^2\, \mathrm{KL}\big(\mathrm{softmax}(s\bar z/T) \| \mathrm{softmax}(s z_k/T)\big)\Big]

    See :func:`fbl.losses.ensemble_functional.ride_loss`. RIDE's deferred re-weighting is the train
    rule's (``--train-rule drw``, epoch 160 of 200): when the rule assigns ``loss.weight``, the LDAM
    terms are weighted and the diversity temperature becomes per class, both at once as in RIDE's
    code. The expert-assignment router (RIDE's "EA" stage, which stops easy images after the first
    experts) is trained afterwards on the frozen experts: :mod:`fbl.models.expert_router`.

    Args:
        class_counts: training samples per class.
        max_m, s: LDAM's largest margin and logit scale (0.5, 30).
        diversity_factor: :math:`\eta`; negative rewards disagreement (-0.2 by default in RIDE's code,
            -0.45 in its CIFAR-100 configuration).
        temperature: base diversity temperature :math:`T_0` (1).
        reweight_factor: ``r`` of the per-class temperatures (0.05).
        weight, reduction: see :class:`~fbl.losses.base.LongTailLoss`.
    """

    preferred_classifier = "normed"

    def __init__(
        self,
        class_counts: Counts,
        max_m: float = 0.5,
        s: float = 30.0,
        diversity_factor: float = -0.2,
        temperature: float = 1.0,
        reweight_factor: float = 0.05,
        weight=None,
        reduction: str = "mean",
    ):
        super().__init__(class_counts, weight, reduction)
        self.max_m = check_positive(max_m, "max_m", " (largest margin)")
        self.s = self.logit_scale = check_positive(s, "s", " (logit scale)")
        self.diversity_factor = float(diversity_factor)
        self.temperature = check_positive(temperature, "temperature", " (diversity temperature)")
        self.reweight_factor = check_non_negative(reweight_factor, "reweight_factor")

    def expert_loss(self, experts, target: torch.Tensor) -> torch.Tensor:
        return ride_loss(
            experts.logits, target, self.class_counts, max_m=self.max_m, s=self.s,
            diversity_factor=self.diversity_factor, temperature=self.temperature,
            reweight_factor=self.reweight_factor, class_temperatures=self.weight is not None,
            weight=self.weight, reduction=self.reduction,
        )  # fmt: skip

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, max_m={self.max_m}, s={self.s}, diversity_factor={self.diversity_factor}"
