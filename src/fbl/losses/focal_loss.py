from __future__ import annotations

import torch

from fbl.losses import functional
from fbl.losses._validation import Counts, check_inputs, check_non_negative
from fbl.losses.base import LongTailLoss
from fbl.losses.registry import register_loss, register_variant


@register_variant("cb-focal", "effective-number")
@register_loss("focal")
class FocalLoss(LongTailLoss):
    r"""Softmax focal loss (Lin et al., ICCV 2017), optionally class-weighted. Ignores ``features``.

    .. math:: \ell_i = -w_{y_i} (1 - p_{i,y_i})^\gamma \log p_{i,y_i}

    The weighted ``"mean"`` is :math:`\sum_i w_{y_i} \ell_i / \sum_i w_{y_i}`, the same convention as
    weighted cross-entropy, so ``gamma = 0`` gives exactly :class:`CrossEntropyLoss` with the same weight.

    Args:
        class_counts: training samples per class.
        gamma: focusing parameter :math:`\gamma \ge 0` (default 1, as in the LDAM-DRW code's focal baseline).
        weight, reduction: see :class:`~fbl.losses.base.LongTailLoss`. ``cb-focal`` is the
            class-balanced variant (effective-number weights, Cui et al., CVPR 2019).
    """

    def __init__(
        self,
        class_counts: Counts,
        gamma: float = 1.0,
        weight=None,
        reduction: str = "mean",
    ):
        super().__init__(class_counts, weight, reduction)
        self.gamma = check_non_negative(gamma, "gamma", " (focusing parameter)")

    def forward(self, logits: torch.Tensor, target: torch.Tensor, *, features=None) -> torch.Tensor:
        check_inputs(logits, target, self.num_classes)
        return functional._focal_loss(logits, target, self.gamma, self.weight, self.reduction)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, gamma={self.gamma}"
