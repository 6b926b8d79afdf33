"""Argument checks shared by every loss (functional and module forms)."""
from __future__ import annotations

import math
import numbers
from typing import Sequence, Union

import torch

from fbl.errors import ConfigError

Counts = Union[Sequence[int], Sequence[float], torch.Tensor]

REDUCTIONS = ("mean", "sum", "none")


def check_class_counts(class_counts: Counts) -> list[int]:
    """Return the training counts as a list of positive ints, or raise naming the bad class."""
    if isinstance(class_counts, torch.Tensor):
        class_counts = class_counts.detach().cpu().reshape(-1).tolist()
    values = list(class_counts)
    if len(values) == 0:
        raise ConfigError("Expected at least one class count but got an empty list")
    checked = []
    for cls, n in enumerate(values):
        try:
            as_float = float(n)
        except (TypeError, ValueError):
            raise ConfigError(f"Expected an integer count for class {cls} but got {n!r}") from None
        if not math.isfinite(as_float) or as_float != int(as_float):
            raise ConfigError(f"Expected an integer count for class {cls} but got {n!r}")
        if as_float <= 0:
            raise ConfigError(f"Expected a positive count for class {cls} but got {n!r}: every class needs training samples")
        checked.append(int(as_float))
    return checked


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


def check_non_negative(value, name: str, meaning: str = "") -> float:
    """``value`` as a finite float >= 0 (``meaning`` is added to the message, e.g. the paper's symbol)."""
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        as_float = math.nan
    if not (math.isfinite(as_float) and as_float >= 0):
        raise ConfigError(f"Expected {name}{meaning} >= 0 but got {value!r}")
    return as_float


def check_positive(value, name: str, meaning: str = "") -> float:
    """``value`` as a finite float > 0."""
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        as_float = math.nan
    if not (math.isfinite(as_float) and as_float > 0):
        raise ConfigError(f"Expected {name}{meaning} > 0 but got {value!r}")
    return as_float


def check_epoch_index(value, name: str) -> int:
    """A 0-based epoch index: an int >= 0 (bools and fractional values are refused)."""
    ok = (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value == int(value)
        and value >= 0
    )
    if not ok:
        raise ConfigError(f"Expected {name} to be a 0-based epoch (an integer >= 0) but got {value!r}")
    return int(value)
