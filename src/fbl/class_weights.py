"""Per-class weight functions shared by the re-weighting rules and the re-sampling sampler.

Each takes the training counts ``n_j`` and returns a float64 tensor of length C, normalised so the
weights sum to C (the convention of the LDAM-DRW / class-balanced-loss code the field compares with).
A sampler draws class ``j`` with probability proportional to ``n_j * w_j``.
"""

from __future__ import annotations

import torch

from fbl.checks import Counts, check_beta, check_class_counts
from fbl.errors import ConfigError


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
    beta = check_beta(beta)
    counts = _counts(class_counts)
    return _normalised((1.0 - beta) / (1.0 - torch.pow(torch.tensor(beta, dtype=torch.float64), counts)))


# Named weightings: what ``--train-rule *-rw`` / ``drw`` and the ``cb-*`` losses re-weight by.
WEIGHTINGS = {
    "effective-number": effective_number_weights,
    "inverse-frequency": lambda class_counts, beta=0.9999: inverse_frequency_weights(class_counts),
}


def weights_for(weighting: str, class_counts: Counts, beta: float = 0.9999) -> torch.Tensor:
    """Per-class weights of a named weighting (``effective-number`` uses ``beta``)."""
    if weighting not in WEIGHTINGS:
        raise ConfigError(f"Unknown weighting {weighting!r}; choose one of: {', '.join(WEIGHTINGS)}")
    return WEIGHTINGS[weighting](class_counts, beta=beta)
