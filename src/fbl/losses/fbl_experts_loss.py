from __future__ import annotations

import torch

from fbl.errors import ConfigError
from fbl.losses._validation import Counts
from fbl.losses.ensemble_functional import fbl_experts_loss
from fbl.losses.ensemble_loss import EnsembleLoss
from fbl.losses.registry import register_loss
from fbl.losses.schedules import Curriculum

#: Stimulus strengths of the three experts: the ends and the middle of the project's CIFAR-LT sweep
#: (15: best head accuracy, 60: the paper's A and the best tail accuracy).
DEFAULT_EXPERT_LAMBDAS = (15.0, 30.0, 60.0)


@register_loss("fbl-experts", "feabal-experts")
class FBLExpertsLoss(Curriculum, EnsembleLoss):
    r"""Feature-Balanced Loss experts: expert ``k`` is trained with FBL at its own strength
    :math:`\lambda_k` on its own features, the losses averaged.

    .. math::
        \mathcal L = \frac1K \sum_k \mathrm{CE}\big(z_{k,ij} - \alpha \lambda_k \tilde\lambda_j
        / \lVert f_{k,i} \rVert_2,\ y_i\big)

    A small :math:`\lambda` keeps the head accurate, a large one lifts the tail; the experts'
    logits are averaged (the model's aggregate) or weighted by SADE's test-time aggregation when
    the test prior is unknown. The curriculum :math:`\alpha` is shared, as in
    :class:`~fbl.losses.feature_balanced_loss.FeatureBalancedLoss`.

    Args:
        class_counts: training samples per class.
        expert_lambdas: one stimulus strength per expert (the number of experts the model must have).
        schedule, total_epochs: the curriculum and the run length.
        weight, reduction: see :class:`~fbl.losses.base.LongTailLoss`.
    """

    def __init__(
        self,
        class_counts: Counts,
        expert_lambdas=DEFAULT_EXPERT_LAMBDAS,
        schedule: str = "parabolic",
        total_epochs: int = 200,
        weight=None,
        reduction: str = "mean",
    ):
        super().__init__(class_counts, weight, reduction)
        lambdas = list(expert_lambdas) if isinstance(expert_lambdas, (list, tuple)) else [expert_lambdas]
        if not lambdas or any(isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 for v in lambdas):
            raise ConfigError(f"Expected expert_lambdas to be numbers >= 0, one per expert, but got {expert_lambdas!r}")
        self.expert_lambdas = tuple(float(v) for v in lambdas)
        self.num_experts = len(self.expert_lambdas)
        self.start_curriculum(schedule, total_epochs)

    def expert_loss(self, experts, target: torch.Tensor) -> torch.Tensor:
        return fbl_experts_loss(
            experts.logits, experts.features, target, self.class_counts, lambdas=self.expert_lambdas,
            alpha=self.alpha, weight=self.weight, reduction=self.reduction,
        )  # fmt: skip

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, expert_lambdas={self.expert_lambdas}, alpha={self.alpha:.4f}"
