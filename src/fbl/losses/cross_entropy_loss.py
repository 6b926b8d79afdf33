from __future__ import annotations

import torch

from fbl.losses import functional
from fbl.losses._validation import check_inputs
from fbl.losses.base import LongTailLoss
from fbl.losses.registry import register_loss, register_variant


@register_variant("cb-ce", "effective-number")
@register_loss("ce", "cross-entropy", "crossentropy")
class CrossEntropyLoss(LongTailLoss):
    """Softmax cross-entropy, optionally class-weighted. Ignores ``features``.

    Args: see :class:`~fbl.losses.base.LongTailLoss` (``weight``, ``reduction``). Registered as
    ``ce``; ``cb-ce`` is the class-balanced variant (effective-number weights, Cui et al., CVPR 2019).
    """

    def forward(self, logits: torch.Tensor, target: torch.Tensor, *, features=None) -> torch.Tensor:
        check_inputs(logits, target, self.num_classes)
        return functional._cross_entropy(logits, target, self.weight, self.reduction)
