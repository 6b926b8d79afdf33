"""The contract every loss in the registry follows."""
from __future__ import annotations

import torch
from torch import nn

from fbl.losses._validation import Counts, check_class_counts, check_reduction, check_weight


class LongTailLoss(nn.Module):
    """Base class: class counts and per-class weight held as buffers, one call convention.

    Subclasses implement ``forward(logits, target, *, features=None)``. ``set_epoch(epoch)`` is
    called by the trainer at the start of every (0-based) epoch; losses without a curriculum
    ignore it. Buffers follow ``module.to(...)``; forward casts them to the logits' dtype.
    """

    def __init__(self, class_counts: Counts, weight=None, reduction: str = "mean"):
        super().__init__()
        counts = check_class_counts(class_counts)
        self.num_classes = len(counts)
        self.reduction = check_reduction(reduction)
        self.register_buffer("class_counts", torch.tensor(counts, dtype=torch.float32))
        weight = check_weight(weight, self.num_classes)
        self.register_buffer("weight", weight)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, reduction={self.reduction!r}"
