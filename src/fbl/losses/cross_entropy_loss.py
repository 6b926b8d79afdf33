from __future__ import annotations

import torch

from fbl.losses import functional
from fbl.losses.base import LongTailLoss
from fbl.losses.registry import register_loss


@register_loss("ce", "cross-entropy", "crossentropy")
class CrossEntropyLoss(LongTailLoss):
    """Softmax cross-entropy, optionally class-weighted. Ignores ``features``."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor, *, features=None) -> torch.Tensor:
        return functional.cross_entropy(logits, target, weight=self.weight, reduction=self.reduction)
