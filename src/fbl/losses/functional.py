"""Pure-function forms of the losses. Module classes in this package wrap these.

All functions take raw ``logits`` (N, C) and integer ``target`` (N,), follow the device and dtype of
``logits`` and never move data between devices.

Each public function checks its arguments (class counts included, which reads them on the host) and
then calls a private ``_name`` helper that does the arithmetic only. The module classes validate once
at construction and call the private helpers with their buffers, so a training step never waits on a
device-to-host copy.

Weighted ``"mean"`` reduction everywhere follows :func:`torch.nn.functional.cross_entropy`:
:math:`\\sum_i w_{y_i} \\ell_i / \\sum_i w_{y_i}`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fbl.losses._validation import (
    Counts,
    check_class_counts,
    check_features,
    check_inputs,
    check_non_negative,
    check_positive,
    check_reduction,
)


def _counts_like(class_counts: Counts, like: torch.Tensor) -> torch.Tensor:
    """Validated counts as a tensor on ``like``'s device and dtype."""
    return torch.tensor(check_class_counts(class_counts), device=like.device, dtype=like.dtype)


def _weight_like(weight, like: torch.Tensor) -> torch.Tensor | None:
    if weight is None:
        return None
    return torch.as_tensor(weight).to(device=like.device, dtype=like.dtype)


def _reduce(losses: torch.Tensor, target: torch.Tensor, weight, reduction: str) -> torch.Tensor:
    """Per-sample ``losses`` times ``weight[target]``, reduced like ``F.cross_entropy``."""
    weight = _weight_like(weight, losses)
    if weight is not None:
        sample_weight = weight.gather(0, target)
        losses = losses * sample_weight
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    return losses.sum() / sample_weight.sum() if weight is not None else losses.mean()


def _check_common(logits: torch.Tensor, target: torch.Tensor, class_counts: Counts | None, reduction: str):
    check_reduction(reduction)
    if class_counts is None:
        check_inputs(logits, target, logits.shape[-1] if logits.dim() > 0 else 0)
        return None
    counts = _counts_like(class_counts, logits)
    check_inputs(logits, target, counts.numel())
    return counts


# --- class statistics ------------------------------------------------------------------------


def class_stimulus(class_counts: torch.Tensor) -> torch.Tensor:
    r"""FBL's max-normalised class stimulus.

    .. math:: \tilde\lambda_j = \frac{\log n_{max} - \log n_j}{\log n_{max} - \log n_{min}}

    0 for the largest class, 1 for the smallest; all zeros when every class has the same count.
    """
    gap = class_counts.log().max() - class_counts.log()
    spread = gap.max()
    # A branch on ``spread`` would need its value on the host (a device sync every step).
    return gap / torch.where(spread > 0, spread, torch.ones_like(spread))


def class_log_prior(class_counts: torch.Tensor) -> torch.Tensor:
    r"""Log of the training label prior, :math:`\log \pi_j = \log n_j - \log \sum_k n_k`."""
    return class_counts.log() - class_counts.sum().log()


def ldam_margins(class_counts: torch.Tensor, max_m: float = 0.5) -> torch.Tensor:
    r"""LDAM's per-class margins :math:`m_j = C / n_j^{1/4}`, with ``C`` such that :math:`\max_j m_j` = ``max_m``."""
    raw = class_counts.pow(-0.25)
    return raw * (max_m / raw.max())


# --- cross-entropy ---------------------------------------------------------------------------


def cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight=None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Softmax cross-entropy with an optional per-class weight (weighted mean as in ``F.cross_entropy``)."""
    check_reduction(reduction)
    return _cross_entropy(logits, target, weight, reduction)


def _cross_entropy(logits, target, weight, reduction):
    return F.cross_entropy(logits, target, weight=_weight_like(weight, logits), reduction=reduction)


# --- feature-balanced loss -------------------------------------------------------------------


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
    return _feature_balanced_logits(logits, features, _counts_like(class_counts, logits), alpha * lambda_)


def _feature_balanced_logits(logits, features, counts, strength):
    stimulus = class_stimulus(counts.to(device=logits.device, dtype=logits.dtype))
    feature_norm = torch.linalg.vector_norm(features, ord=2, dim=1, keepdim=True).to(logits.dtype)
    return logits - strength * stimulus / (feature_norm + 1e-12)


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
    counts = _check_common(logits, target, class_counts, reduction)
    check_features(features, logits, "The feature-balanced loss")
    return _feature_balanced_loss(logits, target, features, counts, lambda_ * alpha, weight, reduction)


def _feature_balanced_loss(logits, target, features, counts, strength, weight, reduction):
    adjusted = _feature_balanced_logits(logits, features, counts, strength)
    return _cross_entropy(adjusted, target, weight, reduction)


# --- focal loss ------------------------------------------------------------------------------


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    gamma: float = 1.0,
    weight=None,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Softmax focal loss (Lin et al., ICCV 2017).

    .. math:: \ell_i = -w_{y_i} (1 - p_{i,y_i})^\gamma \log p_{i,y_i}, \quad p_i = \mathrm{softmax}(z_i)

    ``gamma = 0`` is cross-entropy. The weighted ``"mean"`` divides by :math:`\sum_i w_{y_i}`, as
    weighted cross-entropy does, so a constant weight leaves the mean unchanged.

    Example:
        >>> import torch
        >>> z = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
        >>> print(f"{focal_loss(z, torch.tensor([0, 1]), gamma=0.0).item():.4f}")  # gamma 0: cross-entropy
        0.4100
        >>> print(f"{focal_loss(z, torch.tensor([0, 1]), gamma=2.0).item():.4f}")  # confident samples count less
        0.0875
    """
    _check_common(logits, target, None, reduction)
    gamma = check_non_negative(gamma, "gamma", " (focusing parameter)")
    return _focal_loss(logits, target, gamma, weight, reduction)


def _focal_loss(logits, target, gamma, weight, reduction):
    log_pt = F.log_softmax(logits, dim=1).gather(1, target.unsqueeze(1)).squeeze(1)
    # 1 - p_t as -expm1(log p_t): exact for confident samples where 1 - exp(.) would cancel.
    modulator = (-torch.expm1(log_pt)).clamp_min(0).pow(gamma)
    return _reduce(-modulator * log_pt, target, weight, reduction)


# --- LDAM ------------------------------------------------------------------------------------


def ldam_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    class_counts: Counts,
    max_m: float = 0.5,
    s: float = 30.0,
    weight=None,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Label-distribution-aware margin loss (Cao et al., NeurIPS 2019).

    .. math::
        \ell_i = \mathrm{CE}\big(s\,(z_i - m_{y_i} e_{y_i}),\ y_i\big), \quad
        m_j \propto n_j^{-1/4},\ \max_j m_j = m_{max}

    Only the target logit loses its margin; every logit is then scaled by ``s``.

    Example:
        >>> import torch
        >>> z = torch.zeros(1, 2)
        >>> round(ldam_loss(z, torch.tensor([1]), [16, 1], max_m=0.5, s=1.0).item(), 4)  # log(1 + e^0.5)
        0.9741
    """
    counts = _check_common(logits, target, class_counts, reduction)
    max_m = check_positive(max_m, "max_m", " (largest margin)")
    s = check_positive(s, "s", " (logit scale)")
    return _ldam_loss(logits, target, counts, max_m, s, weight, reduction)


def _ldam_loss(logits, target, counts, max_m, s, weight, reduction):
    margins = ldam_margins(counts.to(device=logits.device, dtype=logits.dtype), max_m)
    target_margin = margins.gather(0, target).unsqueeze(1)
    shifted = logits - torch.zeros_like(logits).scatter(1, target.unsqueeze(1), target_margin)
    return _cross_entropy(s * shifted, target, weight, reduction)


# --- logit-adjusted losses -------------------------------------------------------------------


def balanced_softmax_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    class_counts: Counts,
    weight=None,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Balanced Softmax (Ren et al., NeurIPS 2020): :math:`\mathrm{CE}(z_{ij} + \log n_j,\ y_i)`.

    Example:
        >>> import torch
        >>> z = torch.zeros(1, 2)
        >>> round(balanced_softmax_loss(z, torch.tensor([1]), [3, 1]).item(), 4)  # -log(1/4)
        1.3863
    """
    counts = _check_common(logits, target, class_counts, reduction)
    return _balanced_softmax_loss(logits, target, counts, weight, reduction)


def _balanced_softmax_loss(logits, target, counts, weight, reduction):
    return _cross_entropy(logits + counts.to(device=logits.device, dtype=logits.dtype).log(), target, weight, reduction)


def logit_adjusted_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    class_counts: Counts,
    tau: float = 1.0,
    weight=None,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Logit-adjusted loss (Menon et al., ICLR 2021): :math:`\mathrm{CE}(z_{ij} + \tau \log \pi_j,\ y_i)`.

    :math:`\pi_j = n_j / \sum_k n_k`. With ``tau = 1`` it equals Balanced Softmax (the softmax does
    not see the constant :math:`-\log \sum_k n_k`).

    Example:
        >>> import torch
        >>> z = torch.zeros(1, 2)
        >>> round(logit_adjusted_loss(z, torch.tensor([1]), [3, 1], tau=1.0).item(), 4)
        1.3863
    """
    counts = _check_common(logits, target, class_counts, reduction)
    tau = check_non_negative(tau, "tau", " (adjustment strength)")
    return _logit_adjusted_loss(logits, target, counts, tau, weight, reduction)


def _logit_adjusted_loss(logits, target, counts, tau, weight, reduction):
    log_prior = class_log_prior(counts.to(device=logits.device, dtype=logits.dtype))
    return _cross_entropy(logits + tau * log_prior, target, weight, reduction)
