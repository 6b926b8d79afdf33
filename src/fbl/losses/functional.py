"""Pure-function forms of the losses. Module classes in this package wrap these.

All functions take raw ``logits`` (N, C) and integer ``target`` (N,), follow the device and dtype of
``logits`` and never move data between devices.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fbl.losses._validation import (
    Counts,
    check_class_counts,
    check_features,
    check_inputs,
    check_reduction,
)


def _counts_like(class_counts: Counts, like: torch.Tensor) -> torch.Tensor:
    if isinstance(class_counts, torch.Tensor):
        return class_counts.to(device=like.device, dtype=like.dtype)
    return torch.tensor(check_class_counts(class_counts), device=like.device, dtype=like.dtype)


def _weight_like(weight, like: torch.Tensor) -> torch.Tensor | None:
    if weight is None:
        return None
    return torch.as_tensor(weight).to(device=like.device, dtype=like.dtype)


def class_stimulus(class_counts: torch.Tensor) -> torch.Tensor:
    r"""FBL's max-normalised class stimulus.

    .. math:: \tilde\lambda_j = \frac{\log n_{max} - \log n_j}{\log n_{max} - \log n_{min}}

    0 for the largest class, 1 for the smallest; all zeros when every class has the same count.
    """
    gap = class_counts.log().max() - class_counts.log()
    spread = gap.max()
    if spread <= 0:
        return torch.zeros_like(gap)
    return gap / spread


def cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight=None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Softmax cross-entropy with an optional per-class weight (weighted mean as in ``F.cross_entropy``)."""
    check_reduction(reduction)
    return F.cross_entropy(logits, target, weight=_weight_like(weight, logits), reduction=reduction)


def feature_balanced_logits(
    logits: torch.Tensor,
    features: torch.Tensor,
    class_counts: Counts,
    lambda_: float,
    alpha: float,
) -> torch.Tensor:
    r"""Logits shifted by FBL's feature-norm-dependent stimulus (Li, Cheung & Jiang, ICME 2022).

    .. math:: \tilde z_{ij} = z_{ij} - \alpha A \tilde\lambda_j / (\lVert f_i \rVert_2 + 10^{-12})

    Every class ``j`` is shifted, not only the target; the gradient flows through ``||f_i||``.
    """
    counts = _counts_like(class_counts, logits)
    stimulus = class_stimulus(counts)
    feature_norm = torch.linalg.vector_norm(features, ord=2, dim=1, keepdim=True).to(logits.dtype)
    return logits - (alpha * lambda_) * stimulus / (feature_norm + 1e-12)


def feature_balanced_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    features: torch.Tensor,
    class_counts: Counts,
    lambda_: float,
    alpha: float,
    weight=None,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Feature-Balanced Loss: cross-entropy on :func:`feature_balanced_logits`.

    Args:
        logits: raw classifier outputs ``z``, shape (N, C).
        target: class indices, shape (N,).
        features: the pooled penultimate features ``f`` that produced ``logits``, shape (N, D).
        class_counts: training samples per class ``n_j`` (length C).
        lambda_: stimulus strength ``A`` (60 on CIFAR, 150 on the large benchmarks).
        alpha: curriculum factor for the current epoch.
        weight: optional per-class weight of the cross-entropy.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Example:
        >>> import torch
        >>> z, f = torch.zeros(2, 3), torch.ones(2, 4)
        >>> loss = feature_balanced_loss(z, torch.tensor([0, 2]), f, [100, 10, 1], lambda_=60.0, alpha=0.0)
        >>> round(loss.item(), 4)  # alpha = 0 is plain cross-entropy: log 3
        1.0986
    """
    check_reduction(reduction)
    counts = class_counts if isinstance(class_counts, torch.Tensor) else check_class_counts(class_counts)
    check_inputs(logits, target, len(counts))
    check_features(features, logits, "The feature-balanced loss")
    adjusted = feature_balanced_logits(logits, features, counts, lambda_, alpha)
    return cross_entropy(adjusted, target, weight=weight, reduction=reduction)
