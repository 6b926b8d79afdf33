"""Argument checks shared by every loss (functional and module forms)."""

from __future__ import annotations

import torch

from fbl.checks import Counts, check_class_counts, check_epoch_index, check_non_negative, check_positive
from fbl.errors import ConfigError

__all__ = [
    "Counts",
    "check_class_counts",
    "check_epoch_index",
    "check_features",
    "check_inputs",
    "check_non_negative",
    "check_positive",
    "check_reduction",
    "check_weight",
]

REDUCTIONS = ("mean", "sum", "none")


def check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ConfigError(f"Expected reduction in {REDUCTIONS} but got {reduction!r}")
    return reduction


def check_weight(weight, num_classes: int) -> torch.Tensor | None:
    """Per-class weights as a float tensor of length ``num_classes`` (``None`` passes through)."""
    if weight is None:
        return None
    weight = torch.as_tensor(weight, dtype=torch.float32).detach().reshape(-1)
    if weight.numel() != num_classes:
        raise ConfigError(f"Expected {num_classes} per-class weights but got {weight.numel()}")
    if not torch.isfinite(weight).all() or (weight < 0).any():
        raise ConfigError(f"Expected finite, non-negative per-class weights but got {weight.tolist()}")
    return weight


def check_inputs(logits: torch.Tensor, target: torch.Tensor, num_classes: int) -> None:
    if logits.dim() != 2:
        raise ValueError(f"Expected logits of shape (N, C) but got shape {tuple(logits.shape)}")
    if logits.shape[1] != num_classes:
        raise ValueError(f"Expected logits with {num_classes} classes (one per class count) but got {logits.shape[1]}")
    if target.dim() != 1 or target.shape[0] != logits.shape[0]:
        raise ValueError(f"Expected target of shape ({logits.shape[0]},) but got {tuple(target.shape)}")


def check_features(features: torch.Tensor | None, logits: torch.Tensor, loss_name: str) -> torch.Tensor:
    if features is None:
        raise ValueError(
            f"{loss_name} needs the penultimate features: call it as loss(logits, target, features=feats) "
            "with feats = model.forward_features(x)"
        )
    if features.dim() != 2 or features.shape[0] != logits.shape[0]:
        raise ValueError(f"Expected features of shape ({logits.shape[0]}, D) but got {tuple(features.shape)}")
    return features
