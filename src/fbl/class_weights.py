"""Per-class weights: the functions, the named weightings, and the one resolver of a run's loss weight.

Each function takes the training counts ``n_j`` and returns a float64 tensor of length C, normalised
so the weights sum to C (the convention of the LDAM-DRW / class-balanced-loss code the field compares
with). A sampler draws class ``j`` with probability proportional to ``n_j * w_j``.

A loss is weighted by at most one named weighting, chosen either by the train rule (``balanced-rw``,
``effective-number-rw``, ``drw``) or by a ``cb-*`` loss; :func:`resolve_class_weight` is the one place
that choice is made and the weight computed, for ``fbl train`` (through the train rule) and for
``create_loss("cb-focal", ...)`` alike.
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


# Named weightings: what the train rules re-sample and re-weight by, and what the ``cb-*`` losses name.
WEIGHTINGS = {
    "effective-number": effective_number_weights,
    "inverse-frequency": lambda class_counts, beta=0.9999: inverse_frequency_weights(class_counts),
    "square-root": lambda class_counts, beta=0.9999: inverse_frequency_weights(class_counts, power=0.5),
}


def weights_for(weighting: str, class_counts: Counts, beta: float = 0.9999) -> torch.Tensor:
    """Per-class weights of a named weighting (``effective-number`` uses ``beta``)."""
    if weighting not in WEIGHTINGS:
        raise ConfigError(f"Unknown weighting {weighting!r}; choose one of: {', '.join(WEIGHTINGS)}")
    return WEIGHTINGS[weighting](class_counts, beta=beta)


def single_weighting(rule: str, rule_weighting: str | None, loss_weighting: str | None) -> str | None:
    """The one weighting of a run's loss: the train rule's or the ``cb-*`` loss's; both is a :class:`ConfigError`.

    Args:
        rule: the train rule's name, for the message.
        rule_weighting: the weighting the rule re-weights the loss by, or ``None``.
        loss_weighting: the weighting a ``cb-*`` loss names, or ``None``.
    """
    if rule_weighting is not None and loss_weighting is not None:
        raise ConfigError(
            f"Train rule {rule!r} re-weights the loss by {rule_weighting} and the loss is already weighted by "
            f"{loss_weighting}: use one of them, not both"
        )
    return rule_weighting if rule_weighting is not None else loss_weighting


def resolve_class_weight(
    class_counts: Counts,
    *,
    rule: str = "none",
    rule_weighting: str | None = None,
    loss_weighting: str | None = None,
    beta: float = 0.9999,
) -> torch.Tensor | None:
    """A run's per-class loss weight (float64, sums to C), or ``None`` for an unweighted loss.

    The weight is :func:`weights_for` the :func:`single_weighting` of the train rule and the loss;
    when it switches on (DRW) is the train rule's business (:class:`fbl.train_rules.ResolvedRule`).

    Example:
        >>> resolve_class_weight([3, 1], loss_weighting="inverse-frequency")
        tensor([0.5000, 1.5000], dtype=torch.float64)
    """
    weighting = single_weighting(rule, rule_weighting, loss_weighting)
    return None if weighting is None else weights_for(weighting, class_counts, beta)
