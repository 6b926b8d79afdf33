"""Decoupled classifier re-training, cRT (Kang et al., ICLR 2020).

Stage 2 takes the backbone of a finished stage-1 run, freezes it (weights and BatchNorm
statistics), re-initialises the linear classifier and trains only that classifier, by default
with class-balanced sampling and cross-entropy. ``fbl train --stage2-from RUN`` is all it takes:
data, model and seed come from the stage-1 run's config, the stage-2 defaults from
:data:`fbl.config.STAGE2_DEFAULTS`.
"""

from __future__ import annotations

import torch
from torch import nn

from fbl.models._helpers import ForwardWithFeatures


class ClassifierRetraining(ForwardWithFeatures, nn.Module):
    """A trained model whose backbone is frozen: only ``forward_head``'s classifier learns.

    ``train()`` keeps the backbone in eval mode so its BatchNorm statistics stay those of stage 1;
    features are computed without building a graph, which also makes stage 2 fast.
    """

    def __init__(self, model: nn.Module, num_classes: int):
        super().__init__()
        self.model = model
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        model.reset_classifier(num_classes)  # the fresh layer's parameters require grad

    def train(self, mode: bool = True) -> ClassifierRetraining:
        super().train(mode)
        self.model.eval()
        self.model.get_classifier().train(mode)
        return self

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.model.forward_features(x)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.model.forward_head(features, pre_logits=pre_logits)

    def get_classifier(self) -> nn.Module:
        return self.model.get_classifier()
