"""The contract of a loss over a multi-expert model's experts (RIDE, SADE, BalPoE, FBL experts)."""

from __future__ import annotations

import torch

from fbl.losses._validation import check_inputs
from fbl.losses.base import LongTailLoss
from fbl.losses.ensemble_functional import check_experts


class EnsembleLoss(LongTailLoss):
    """A loss that reads every expert's outputs: ``loss(logits, target, *, features=None, experts=None)``.

    ``needs_experts`` tells the training loop to call the model with ``return_experts=True`` and pass
    the resulting :class:`~fbl.models.multi_expert_resnet.ExpertOutputs` (``logits`` (N, K, C),
    ``features`` (N, K, D)) as ``experts``; ``logits`` and ``features`` are the aggregate ones, which
    these losses do not use. Subclasses implement :meth:`expert_loss`.
    """

    needs_experts = True
    #: The number of experts the loss is defined for (``None``: any).
    num_experts: int | None = None

    def forward(self, logits: torch.Tensor, target: torch.Tensor, *, features=None, experts=None) -> torch.Tensor:
        if experts is None:
            raise ValueError(
                f"The {type(self).__name__} trains each expert of a multi-expert model: call it with "
                "experts=model(x, return_features=True, return_experts=True)[2] (e.g. --arch resnet32-ride)"
            )
        check_inputs(logits, target, self.num_classes)
        check_experts(experts.logits, target, self.num_classes, self.num_experts)
        return self.expert_loss(experts, target)

    def expert_loss(self, experts, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError
