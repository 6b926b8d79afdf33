"""Decoupled classifier re-training, cRT (Kang et al., ICLR 2020).

Stage 2 takes the backbone of a finished stage-1 run, freezes it (weights and BatchNorm
statistics), re-initialises the linear classifier and trains only that classifier, by default
with class-balanced sampling and cross-entropy. ``fbl train --stage2-from RUN`` is all it takes:
data, model and seed come from the stage-1 run's config, the stage-2 defaults below from here.
"""
from __future__ import annotations

import torch
from torch import nn

from fbl.engine.checkpoint import load_checkpoint

# Stage-2 settings applied on top of the stage-1 config; any flag the user gives wins.
STAGE2_DEFAULTS = {
    "loss": "ce",
    "train_rule": "balanced-rs",
    "epochs": 10,
    "warmup_epochs": 0,
    "mixup": False,
    "drw_epoch": None,
    "loss_options": {},
}
# What a stage-2 run inherits from stage 1 (so the backbone sees the data it was trained on).
INHERITED = ("dataset", "data_dir", "img_path", "imb_type", "imb_factor", "rand_number", "arch", "classifier", "seed",
             "batch_size", "lr", "momentum", "weight_decay", "lr_milestones", "lr_decay", "root_log")


def stage2_values(stage1_run: str) -> dict:
    """Config values of a cRT stage 2 on top of the stage-1 run at ``stage1_run``."""
    stage1 = load_checkpoint(stage1_run)["config"]
    values = {key: stage1[key] for key in INHERITED}
    values.update(STAGE2_DEFAULTS)
    return values


class ClassifierRetraining(nn.Module):
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

    def train(self, mode: bool = True) -> "ClassifierRetraining":
        super().train(mode)
        self.model.eval()
        self.model.get_classifier().train(mode)
        return self

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.model.forward_features(x)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.model.forward_head(features, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.model.get_classifier()
