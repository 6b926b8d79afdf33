"""Evaluation-time corrections for a model trained on long-tailed data; no retraining.

* :func:`logit_adjust` subtracts the scaled log prior from the logits (post-hoc logit adjustment,
  Menon et al., ICLR 2021).
* :func:`tau_normalize` / :func:`tau_normalized_classifier` rescale each class's classifier
  weights by a power of their norm (tau-normalisation, Kang et al., ICLR 2020).
* :class:`LearnableWeightScaling` rescales each class's classifier weights by a learnt factor
  (LWS, Kang et al., ICLR 2020): the one correction here that is trained, in a decoupled stage 2
  (``fbl train --stage2-from RUN --decoupled lws``, see :mod:`fbl.models.classifier_retraining`).

Both follow the device and dtype of their inputs and do not change them in place.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fbl.checks import Counts, check_class_counts, check_finite, check_non_negative
from fbl.errors import ConfigError
from fbl.losses.functional import class_log_prior

__all__ = ["LearnableWeightScaling", "logit_adjust", "tau_normalize", "tau_normalized_classifier"]


def logit_adjust(logits: torch.Tensor, class_counts: Counts, tau: float = 1.0) -> torch.Tensor:
    r"""Post-hoc logit adjustment (Menon et al., ICLR 2021).

    .. math:: \hat z_{ij} = z_{ij} - \tau \log \pi_j, \quad \pi_j = n_j / \textstyle\sum_k n_k

    Rare classes gain, frequent ones lose; ``argmax`` of the result estimates the balanced-error
    Bayes classifier when ``softmax(z)`` estimates the training posterior. ``tau = 0`` returns the
    logits unchanged. A negative ``tau`` moves decisions towards the frequent classes: it measures
    how far a model trained with a rebalancing loss (FBL, LDAM, ...) over-corrects for the prior.

    Args:
        logits: raw outputs with the classes on the last dimension, shape (..., C).
        class_counts: training samples per class ``n_j`` (length C).
        tau: adjustment strength, any finite number (1 in the paper).

    Example:
        >>> import torch
        >>> logit_adjust(torch.zeros(1, 2), [3, 1], tau=1.0).argmax(dim=1)  # ties go to the rare class
        tensor([1])
    """
    tau = check_finite(tau, "tau", " (adjustment strength)")
    counts = check_class_counts(class_counts)
    if logits.dim() < 1 or logits.shape[-1] != len(counts):
        raise ConfigError(
            f"Expected logits with {len(counts)} classes (one per class count) on the last dimension "
            f"but got shape {tuple(logits.shape)}"
        )
    log_prior = class_log_prior(torch.tensor(counts, dtype=torch.float64))
    return logits - (tau * log_prior).to(device=logits.device, dtype=logits.dtype)


def _check_p(p) -> float:
    return check_non_negative(p, "p", " (tau-normalisation power)")


def tau_normalize(weight: torch.Tensor, p: float) -> torch.Tensor:
    r"""Tau-normalised classifier weights (Kang et al., ICLR 2020), row by row.

    .. math:: \tilde W_j = W_j / \lVert W_j \rVert_2^{\,p}

    ``p = 0`` leaves ``W`` unchanged, ``p = 1`` gives unit-norm rows; values in between shrink the
    large norms of head classes part of the way. A row of zeros stays zero.

    Args:
        weight: classifier weight, one row per class, shape (C, D).
        p: the power (Kang et al. call it :math:`\tau`), >= 0.

    Example:
        >>> import torch
        >>> tau_normalize(torch.tensor([[3.0, 4.0], [0.0, 2.0]]), p=1.0)
        tensor([[0.6000, 0.8000],
                [0.0000, 1.0000]])
    """
    p = _check_p(p)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2 or not weight.is_floating_point():
        what = (
            f"{weight.dtype} of shape {tuple(weight.shape)}"
            if isinstance(weight, torch.Tensor)
            else type(weight).__name__
        )
        raise ConfigError(f"Expected a floating-point classifier weight of shape (C, D) but got {what}")
    norms = torch.linalg.vector_norm(weight, ord=2, dim=1, keepdim=True)
    # A zero row has nothing to rescale: divide it by 1 rather than 0**p.
    return weight / torch.where(norms > 0, norms.pow(p), torch.ones_like(norms))


def tau_normalized_classifier(linear: nn.Linear, p: float, *, keep_bias: bool = False) -> nn.Linear:
    """A new ``nn.Linear`` whose weight is :func:`tau_normalize` of ``linear.weight``; ``linear`` is untouched.

    The bias is dropped by default (``keep_bias=False``), as the reference evaluation of Kang et al.
    computes the tau-normalised logits as ``f @ W_tilde.T`` alone: a bias learned on long-tailed data
    carries the same head-class preference the normalisation removes, and it is not rescaled with
    ``W``. ``keep_bias=True`` copies it unchanged. The copy has the device and dtype of ``linear``.
    """
    if not isinstance(linear, nn.Linear):
        raise ConfigError(f"Expected an nn.Linear classifier but got {type(linear).__name__}")
    p = _check_p(p)
    with_bias = bool(keep_bias) and linear.bias is not None
    out = nn.Linear(
        linear.in_features, linear.out_features, bias=with_bias, device=linear.weight.device, dtype=linear.weight.dtype
    )
    with torch.no_grad():
        out.weight.copy_(tau_normalize(linear.weight.detach(), p))
        if with_bias:
            out.bias.copy_(linear.bias.detach())
    return out


class LearnableWeightScaling(nn.Module):
    r"""Learnable weight scaling, LWS (Kang et al., ICLR 2020): a frozen classifier whose class ``j``
    weight is scaled by a learnt :math:`f_j` (initially 1).

    .. math:: z_j = f_j\, w_j^\top x + b_j

    For an ``nn.Linear`` the bias is kept as it is, as the paper scales the weights only. Any other
    classifier (a cosine head, a multi-expert model's heads) has its outputs, classes on the last
    dimension, multiplied by :math:`f`. The classifier's own parameters are frozen here.

    Example:
        >>> layer = nn.Linear(2, 3)
        >>> lws = LearnableWeightScaling(layer)
        >>> torch.equal(lws(torch.ones(1, 2)), layer(torch.ones(1, 2)))  # the scales start at 1
        True
    """

    def __init__(self, classifier: nn.Module):
        super().__init__()
        num_classes = getattr(classifier, "out_features", None)
        if not isinstance(num_classes, int):
            raise ConfigError(f"Expected a classifier with out_features but got {type(classifier).__name__}")
        self.classifier = classifier
        for parameter in classifier.parameters():
            parameter.requires_grad_(False)
        weight = next(classifier.parameters(), None)
        device, dtype = (None, None) if weight is None else (weight.device, weight.dtype)
        self.scales = nn.Parameter(torch.ones(num_classes, device=device, dtype=dtype))
        self.in_features, self.out_features = getattr(classifier, "in_features", None), num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.classifier, nn.Linear):
            return F.linear(x, self.classifier.weight * self.scales[:, None], self.classifier.bias)
        return self.classifier(x) * self.scales
