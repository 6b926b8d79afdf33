r"""Pure-function forms of the multi-expert losses (RIDE, SADE, BalPoE, FBL experts).

Every function takes the experts' raw logits ``expert_logits`` of shape (N, K, C) — expert ``k``'s
are ``expert_logits[:, k]`` — and integer ``target`` (N,). Cosine classifiers (RIDE, SADE and
BalPoE use them) give logits in [-1, 1]; the losses multiply them by ``s`` as the papers' models do.
A loss over experts is the sum (RIDE, SADE) or the mean (BalPoE, FBL experts) of per-expert losses,
each reduced like :func:`torch.nn.functional.cross_entropy` (weighted mean
:math:`\sum_i w_{y_i}\ell_i / \sum_i w_{y_i}`), as in the papers' code.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from fbl.losses import functional
from fbl.losses._validation import check_reduction


def check_experts(expert_logits: torch.Tensor, target: torch.Tensor, num_classes: int, num_experts=None) -> None:
    """Shapes of an ensemble loss's inputs: (N, K, C) logits (K = ``num_experts`` when given), (N,) target."""
    if expert_logits.dim() != 3 or expert_logits.shape[2] != num_classes:
        raise ValueError(
            f"Expected expert logits of shape (N, K, {num_classes}) but got shape {tuple(expert_logits.shape)}"
        )
    if num_experts is not None and expert_logits.shape[1] != num_experts:
        raise ValueError(f"Expected {num_experts} experts but the model has {expert_logits.shape[1]}")
    if target.dim() != 1 or target.shape[0] != expert_logits.shape[0]:
        raise ValueError(f"Expected target of shape ({expert_logits.shape[0]},) but got {tuple(target.shape)}")


def _counts(class_counts, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(class_counts).to(device=like.device, dtype=like.dtype)


def _sum_over_experts(losses: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(losses).sum(dim=0)


# --- RIDE --------------------------------------------------------------------------------------


def ride_temperatures(class_counts: torch.Tensor, base: float, reweight_factor: float) -> torch.Tensor:
    r"""RIDE's per-class diversity temperatures once re-weighting is on.

    .. math:: T_j = T_0\, d_j / \max_k d_k,\quad d_j = C \pi_j r + 1 - r

    with :math:`\pi` the training prior and :math:`r` the ``reweight_factor`` (0.05): head classes get
    a temperature near :math:`T_0`, tail classes a slightly lower one.
    """
    prior = class_counts / class_counts.sum()
    d = class_counts.numel() * prior * reweight_factor + 1 - reweight_factor
    return base * d / d.max()


def ride_diversity(expert_logits: torch.Tensor, temperature) -> torch.Tensor:
    r"""RIDE's per-sample diversity term of each expert, (N, K).

    .. math::
        \bar T^2\, \mathrm{KL}\big(\mathrm{softmax}(\bar z / T)\ \|\ \mathrm{softmax}(z_k / T)\big),
        \quad \bar z = \tfrac1K \textstyle\sum_k z_k \text{ (no gradient)}

    ``temperature``: a number or per-class temperatures (C,); :math:`\bar T` is their mean. The
    ensemble's distribution is a constant target, as in RIDE's code (one pass, not K^2 pairs).
    """
    temperature = torch.as_tensor(temperature, dtype=expert_logits.dtype, device=expert_logits.device)
    log_q = F.log_softmax(expert_logits / temperature, dim=2)
    with torch.no_grad():
        log_p = F.log_softmax(expert_logits.mean(dim=1, keepdim=True) / temperature, dim=2)
    return temperature.mean() ** 2 * (log_p.exp() * (log_p - log_q)).sum(dim=2)


def ride_loss(
    expert_logits: torch.Tensor,
    target: torch.Tensor,
    class_counts,
    *,
    max_m: float = 0.5,
    s: float = 30.0,
    diversity_factor: float = -0.2,
    temperature: float = 1.0,
    reweight_factor: float = 0.05,
    class_temperatures: bool = False,
    weight=None,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""RIDE's loss (Wang et al., ICLR 2021): per expert, LDAM plus the scaled diversity term.

    .. math::
        \mathcal L = \sum_k \Big[\mathrm{LDAM}(z_k, y; w)
        + \eta\, \bar T^2\, \mathrm{KL}\big(\mathrm{softmax}(s\bar z/T) \| \mathrm{softmax}(s z_k/T)\big)\Big]

    with :math:`\eta` the ``diversity_factor`` (negative: the experts are pushed apart; -0.45 in the
    CIFAR-100 configuration of RIDE's code) and ``T`` the ``temperature``, per class
    (:func:`ride_temperatures`) when ``class_temperatures`` (RIDE switches both that and the LDAM
    weights ``w`` on at the deferred re-weighting epoch).
    """
    check_reduction(reduction)
    counts = _counts(class_counts, expert_logits)
    temperatures = ride_temperatures(counts, temperature, reweight_factor) if class_temperatures else temperature
    diversity = ride_diversity(s * expert_logits, temperatures)
    losses = []
    for k in range(expert_logits.shape[1]):
        base = functional._ldam_loss(expert_logits[:, k], target, counts, max_m, s, weight, reduction)
        losses.append(base + diversity_factor * _reduce_plain(diversity[:, k], reduction))
    return _sum_over_experts(losses)


def _reduce_plain(values: torch.Tensor, reduction: str) -> torch.Tensor:
    return values if reduction == "none" else values.sum() if reduction == "sum" else values.mean()


# --- SADE --------------------------------------------------------------------------------------


def inverse_prior(class_counts: torch.Tensor) -> torch.Tensor:
    r"""SADE's inversely long-tailed prior: the training prior with its class order reversed.

    The class with the ``r``-th smallest count gets the ``r``-th largest prior; ties are ranked by
    class index (a stable sort), so equal counts give a well-defined result.
    """
    prior = class_counts / class_counts.sum()
    values, order = torch.sort(prior, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=order.device)
    return values[order.numel() - 1 - rank]


def sade_loss(
    expert_logits: torch.Tensor,
    target: torch.Tensor,
    class_counts,
    *,
    s: float = 30.0,
    tau: float = 2.0,
    weight=None,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""SADE's skill-diverse expert loss (Zhang et al., NeurIPS 2022), three experts.

    .. math::
        \mathcal L = \mathrm{CE}(s z_1, y) + \mathrm{CE}(s z_2 + \log\pi, y)
        + \mathrm{CE}(s z_3 + \log\pi - \tau \log\tilde\pi, y)

    Expert 1 fits the long-tailed training prior :math:`\pi` (softmax), expert 2 a uniform one
    (balanced softmax), expert 3 the inverse prior :math:`\tilde\pi` (:func:`inverse_prior`; ``tau`` 2).
    """
    check_reduction(reduction)
    counts = _counts(class_counts, expert_logits)
    log_prior = functional.class_log_prior(counts)
    shifts = (torch.zeros_like(log_prior), log_prior, log_prior - tau * inverse_prior(counts).log())
    losses = [
        functional._cross_entropy(s * expert_logits[:, k] + shift, target, weight, reduction)
        for k, shift in enumerate(shifts)
    ]
    return _sum_over_experts(losses)


# --- BalPoE ------------------------------------------------------------------------------------


def balpoe_loss(
    expert_logits: torch.Tensor,
    target: torch.Tensor,
    class_counts,
    *,
    taus: Sequence[float] = (0.0, 1.0, 2.0),
    s: float = 30.0,
    weight=None,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""BalPoE's loss (Sanchez Aimar et al., CVPR 2023): the mean of the experts' logit-adjusted losses.

    .. math:: \mathcal L = \frac1K \sum_k \mathrm{CE}(s z_k + \tau_k \log\pi,\ y)

    Expert ``k`` is consistent for the test prior :math:`\propto \pi^{1-\tau_k}`; the average of the
    experts' logits (a product of experts) for :math:`\pi^{1-\bar\tau}`, the uniform one when
    :math:`\bar\tau = 1` (the paper's ``taus`` 0, 1, 2).
    """
    check_reduction(reduction)
    log_prior = functional.class_log_prior(_counts(class_counts, expert_logits))
    losses = [
        functional._cross_entropy(s * expert_logits[:, k] + float(tau) * log_prior, target, weight, reduction)
        for k, tau in enumerate(taus)
    ]
    return _sum_over_experts(losses) / len(losses)


# --- FBL experts -------------------------------------------------------------------------------


def fbl_experts_loss(
    expert_logits: torch.Tensor,
    expert_features: torch.Tensor,
    target: torch.Tensor,
    class_counts,
    *,
    lambdas: Sequence[float],
    alpha: float,
    weight=None,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Feature-Balanced Loss per expert, each with its own stimulus strength, averaged.

    .. math::
        \mathcal L = \frac1K \sum_k \mathrm{CE}\big(z_{k,ij} - \alpha \lambda_k \tilde\lambda_j
        / \lVert f_{k,i} \rVert_2,\ y_i\big)

    with :math:`f_k` expert ``k``'s own pooled features (see
    :func:`fbl.losses.functional.feature_balanced_loss`).
    """
    check_reduction(reduction)
    counts = _counts(class_counts, expert_logits)
    losses = [
        functional._feature_balanced_loss(
            expert_logits[:, k], target, expert_features[:, k], counts, alpha * float(lam), weight, reduction
        )
        for k, lam in enumerate(lambdas)
    ]
    return _sum_over_experts(losses) / len(losses)
