"""Per-class weight functions shared by the re-weighting losses and the re-sampling sampler.

Each takes the training counts ``n_j`` and returns a float64 tensor of length C, normalised so the
weights sum to C (the convention of the LDAM-DRW / class-balanced-loss code the field compares with).
A sampler draws class ``j`` with probability proportional to ``n_j * w_j``.
"""
from __future__ import annotations

import torch

from fbl.errors import ConfigError
from fbl.losses._validation import Counts, check_class_counts


def _normalised(raw: torch.Tensor) -> torch.Tensor:
    return raw / raw.sum() * raw.numel()


def _counts(class_counts: Counts) -> torch.Tensor:
    return torch.tensor(check_class_counts(class_counts), dtype=torch.float64)


def uniform_weights(class_counts: Counts) -> torch.Tensor:
    """``w_j = 1``: no re-weighting (instance-balanced sampling)."""
    return torch.ones(len(check_class_counts(class_counts)), dtype=torch.float64)


def inverse_frequency_weights(class_counts: Counts, power: float = 1.0) -> torch.Tensor:
    """``w_j ∝ n_j^-power``: power 1 balances classes, power 0.5 gives square-root sampling."""
    if power < 0:
        raise ConfigError(f"Expected power >= 0 but got {power}")
    return _normalised(_counts(class_counts).pow(-power))


def effective_number_weights(class_counts: Counts, beta: float = 0.9999) -> torch.Tensor:
    r"""Class-balanced weights by effective number (Cui et al., CVPR 2019).

    .. math:: w_j \propto \frac{1 - \beta}{1 - \beta^{n_j}}
    """
    if not 0.0 < beta < 1.0:
        raise ConfigError(f"Expected beta in the open interval (0, 1) but got {beta}")
    counts = _counts(class_counts)
    return _normalised((1.0 - beta) / (1.0 - torch.pow(torch.tensor(beta, dtype=torch.float64), counts)))
