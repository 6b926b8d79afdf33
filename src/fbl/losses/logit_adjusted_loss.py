from __future__ import annotations

import torch

from fbl.losses import functional
from fbl.losses._validation import Counts, check_inputs, check_non_negative
from fbl.losses.base import LongTailLoss
from fbl.losses.registry import register_loss


@register_loss("logit-adjusted", "logit-adjustment")
class LogitAdjustedLoss(LongTailLoss):
    r"""Logit-adjusted loss (Menon et al., ICLR 2021). Ignores ``features``.

    .. math:: \ell_i = \mathrm{CE}\big(z_{ij} + \tau \log \pi_j,\ y_i\big),\quad \pi_j = n_j / \textstyle\sum_k n_k

    For the evaluation-time alternative on a model trained with plain cross-entropy see
    :func:`fbl.posthoc.logit_adjust`.

    Args:
        class_counts: training samples per class.
        tau: adjustment strength :math:`\tau \ge 0` (1 in the paper; ``tau = 0`` is cross-entropy).
        weight, reduction: see :class:`~fbl.losses.base.LongTailLoss`.
    """

    def __init__(
        self,
        class_counts: Counts,
        tau: float = 1.0,
        weight=None,
        reduction: str = "mean",
    ):
        super().__init__(class_counts, weight, reduction)
        self.tau = check_non_negative(tau, "tau", " (adjustment strength)")

    def forward(self, logits: torch.Tensor, target: torch.Tensor, *, features=None) -> torch.Tensor:
        check_inputs(logits, target, self.num_classes)
        return functional._logit_adjusted_loss(logits, target, self.class_counts, self.tau, self.weight, self.reduction)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, tau={self.tau}"
