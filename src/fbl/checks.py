"""Argument checks shared by every layer (losses, class weights, samplers, train rules).

Each returns the value in canonical form or raises a one-line :class:`~fbl.errors.ConfigError`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch

from fbl.errors import ConfigError

Counts = Sequence[int] | Sequence[float] | torch.Tensor


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
            raise ConfigError(
                f"Expected a positive count for class {cls} but got {n!r}: every class needs training samples"
            )
        checked.append(int(as_float))
    return checked


def check_non_negative(value, name: str, meaning: str = "") -> float:
    """``value`` as a finite float >= 0 (``meaning`` is added to the message, e.g. the paper's symbol)."""
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        as_float = math.nan
    if not (math.isfinite(as_float) and as_float >= 0):
        raise ConfigError(f"Expected {name}{meaning} >= 0 but got {value!r}")
    return as_float


def check_finite(value, name: str, meaning: str = "") -> float:
    """``value`` as a finite float of either sign."""
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        as_float = math.nan
    if not math.isfinite(as_float):
        raise ConfigError(f"Expected {name}{meaning} to be a finite number but got {value!r}")
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


def check_beta(beta) -> float:
    """The effective-number hyper-parameter, a float in the open interval (0, 1)."""
    try:
        as_float = float(beta)
    except (TypeError, ValueError):
        as_float = math.nan
    if not 0.0 < as_float < 1.0:
        raise ConfigError(f"Expected beta in the open interval (0, 1) but got {beta!r}")
    return as_float
