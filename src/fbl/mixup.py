r"""Input mixup (Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018).

.. math::
    \lambda \sim \mathrm{Beta}(\alpha, \alpha), \quad
    \tilde x = \lambda x + (1 - \lambda) x_{\pi}, \quad
    \mathcal L = \lambda \ell(f(\tilde x), y) + (1 - \lambda) \ell(f(\tilde x), y_{\pi})

with :math:`\pi` a random permutation of the batch. Everything random comes from the
``torch.Generator`` the caller passes, so a seeded generator reproduces the same mixes.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from fbl.errors import ConfigError

__all__ = ["mixup_batch", "mixup_loss"]

_SEED_BOUND = 2**63 - 1


def _beta(alpha: float, generator: torch.Generator) -> float:
    # torch's Beta/Gamma samplers take no generator, so one draw from `generator` seeds a numpy
    # Generator for the Beta draw: deterministic given the generator's state, and it advances it.
    seed = int(torch.randint(0, _SEED_BOUND, (), generator=generator, device=generator.device))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def mixup_batch(
    x: torch.Tensor, y: torch.Tensor, alpha: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    r"""Mix a batch with a shuffled copy of itself.

    Draws :math:`\lambda \sim \mathrm{Beta}(\alpha, \alpha)`, then a permutation :math:`\pi` of the
    batch, both from ``generator`` (in that order), and returns
    ``(lam * x + (1 - lam) * x[perm], y, y[perm], lam)``. ``x`` is not modified.

    Args:
        x: inputs of shape ``(N, ...)``.
        y: targets of shape ``(N,)``.
        alpha: Beta concentration, > 0 (the paper uses 0.1 to 0.4 on ImageNet, 1 on CIFAR).
        generator: source of all randomness; may live on another device than ``x``.

    Returns:
        ``(mixed_x, y_a, y_b, lam)`` with ``y_a = y``, ``y_b = y[perm]`` and ``lam`` a Python float.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> mixed, y_a, y_b, lam = mixup_batch(torch.eye(3), torch.arange(3), 1.0, g)
        >>> torch.allclose(mixed, lam * torch.eye(3) + (1 - lam) * torch.eye(3)[y_b])
        True
    """
    try:
        concentration = float(alpha)
    except (TypeError, ValueError):
        concentration = math.nan
    if not (math.isfinite(concentration) and concentration > 0):
        raise ConfigError(f"Expected a finite mixup alpha > 0 but got {alpha!r}")
    if x.dim() < 1 or y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"Expected x of shape (N, ...) and y of shape (N,) but got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    lam = _beta(concentration, generator)
    perm = torch.randperm(x.shape[0], generator=generator, device=generator.device).to(x.device)
    mixed = lam * x + (1.0 - lam) * x[perm]
    return mixed, y, y[perm.to(y.device)], lam


def mixup_loss(
    criterion: Callable[..., torch.Tensor],
    logits: torch.Tensor,
    y_a: torch.Tensor,
    y_b: torch.Tensor,
    lam: float,
    features: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""``lam * criterion(logits, y_a) + (1 - lam) * criterion(logits, y_b)``.

    ``criterion`` follows the loss contract ``criterion(logits, target, *, features=None)``; the
    features of the mixed batch are passed to both terms, so feature-dependent losses (FBL) work.
    """
    return lam * criterion(logits, y_a, features=features) + (1.0 - lam) * criterion(logits, y_b, features=features)
