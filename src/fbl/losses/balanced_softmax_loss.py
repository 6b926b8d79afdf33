from __future__ import annotations

import torch

from fbl.losses import functional
from fbl.losses._validation import check_inputs
from fbl.losses.base import LongTailLoss
from fbl.losses.registry import register_loss


@register_loss("balanced-softmax")
class BalancedSoftmaxLoss(LongTailLoss):
    r"""Balanced Softmax (Ren et al., NeurIPS 2020). Ignores ``features``.

    .. math:: \ell_i = \mathrm{CE}\big(z_{ij} + \log n_j,\ y_i\big)

    Training on prior-shifted logits leaves the raw logits ``z`` calibrated for a balanced test
    set, so evaluation uses ``z`` unchanged.

    Args: see :class:`~fbl.losses.base.LongTailLoss`.
    """

    def forward(self, logits: torch.Tensor, target: torch.Tensor, *, features=None) -> torch.Tensor:
        check_inputs(logits, target, self.num_classes)
        return functional._balanced_softmax_loss(logits, target, self.class_counts, self.weight, self.reduction)
