"""The contract every loss in the registry follows."""

from __future__ import annotations

import torch
from torch import nn

from fbl.losses._validation import Counts, check_class_counts, check_epoch_index, check_reduction, check_weight


class LongTailLoss(nn.Module):
    r"""Base class: class counts and an optional per-class weight held as buffers, one call convention.

    Subclasses implement ``forward(logits, target, *, features=None)`` and use :attr:`weight`
    (``None``: unweighted). ``set_epoch(epoch)`` is called by the trainer at the start of every
    (0-based) epoch; subclasses with a curriculum override it and call ``super().set_epoch(epoch)``.

    Where class weights come from, and when they switch on (re-weighting, class-balanced weights,
    deferred re-weighting), is the train rule's business (:mod:`fbl.train_rules`): the trainer
    assigns ``loss.weight`` each epoch. A loss only applies the weight it is given.

    Args:
        class_counts: training samples per class ``n_j``.
        weight: per-class weight (length C), or ``None``.
        reduction: ``"mean"`` (weighted mean, as :func:`torch.nn.functional.cross_entropy`),
            ``"sum"`` or ``"none"``.
    """

    #: The factor the loss multiplies the model's outputs by before its softmax (LDAM's ``s`` on cosine
    #: logits). Evaluation multiplies by it too, so that probabilities, calibration and post-hoc
    #: adjustments see the logits the model was trained with; predictions do not change.
    logit_scale: float = 1.0
    #: The curriculum's factor this epoch (FBL's ``alpha``), recorded with every epoch; ``None``: no curriculum.
    alpha: float | None = None
    #: Whether the loss trains a multi-expert model's experts: the training loop then calls the model
    #: with ``return_experts=True`` and passes its :class:`~fbl.models.multi_expert_resnet.ExpertOutputs`
    #: as ``forward(..., experts=...)`` (see :class:`~fbl.losses.ensemble_loss.EnsembleLoss`).
    needs_experts: bool = False

    def __init__(self, class_counts: Counts, weight=None, reduction: str = "mean"):
        super().__init__()
        counts = check_class_counts(class_counts)
        self.num_classes = len(counts)
        self.reduction = check_reduction(reduction)
        self.register_buffer("class_counts", torch.tensor(counts, dtype=torch.float32))
        self.register_buffer("weight", check_weight(weight, self.num_classes))
        self.epoch = 0

    def set_weight(self, weight) -> None:
        """Replace the per-class weight (``None`` turns weighting off), on the buffers' device and dtype."""
        weight = check_weight(weight, self.num_classes)
        self.weight = None if weight is None else weight.to(self.class_counts.device, self.class_counts.dtype)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = check_epoch_index(epoch, "epoch")

    def extra_repr(self) -> str:
        text = f"num_classes={self.num_classes}, reduction={self.reduction!r}"
        return text + (", weighted" if self.weight is not None else "")
