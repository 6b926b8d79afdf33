"""Decoupled classifier learning (Kang et al., "Decoupling Representation and Classifier for
Long-Tailed Recognition", ICLR 2020): cRT and LWS.

Stage 2 takes the backbone of a finished stage-1 run, freezes it (weights and BatchNorm
statistics) and trains only the classifier, by default with class-balanced sampling and
cross-entropy. ``fbl train --stage2-from RUN`` is all it takes: data, model and seed come from the
stage-1 run's config, the stage-2 defaults from each option's ``stage2`` value. Two methods
(``--decoupled``):

* ``crt`` (classifier re-training): the classifier is re-initialised and trained;
* ``lws`` (learnable weight scaling): the stage-1 classifier is kept, frozen, and only one scale
  per class is learnt, :math:`\tilde w_j = f_j w_j` (:class:`~fbl.posthoc.LearnableWeightScaling`).

tau-normalisation, the third, needs no training (:func:`fbl.posthoc.tau_normalized_classifier`).
"""

from __future__ import annotations

import torch
from torch import nn

from fbl.errors import ConfigError
from fbl.models._helpers import ForwardWithFeatures
from fbl.posthoc import LearnableWeightScaling

#: The stage-2 methods: re-train the classifier, or learn a scale per class of the stage-1 one.
DECOUPLED_METHODS = ("crt", "lws")


class ClassifierRetraining(ForwardWithFeatures, nn.Module):
    """A trained model whose backbone is frozen: only ``forward_head``'s classifier learns (``method``
    ``crt``: a fresh classifier; ``lws``: the per-class scales of the stage-1 classifier).

    ``train()`` keeps the backbone in eval mode so its BatchNorm statistics stay those of stage 1;
    features are computed without building a graph, which also makes stage 2 fast.
    """

    def __init__(self, model: nn.Module, num_classes: int, method: str = "crt"):
        super().__init__()
        if method not in DECOUPLED_METHODS:
            raise ConfigError(f"Unknown decoupled method {method!r}; choose one of: {', '.join(DECOUPLED_METHODS)}")
        self.model, self.method = model, method
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        if method == "crt":
            model.reset_classifier(num_classes)  # the fresh layer's parameters require grad
        elif not isinstance(getattr(model, "fc", None), nn.Module):
            raise ConfigError(f"LWS scales the classifier `fc`, which {type(model).__name__} does not have")
        else:
            model.fc = LearnableWeightScaling(model.fc)  # only its scales require grad

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
