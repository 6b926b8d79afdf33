r"""Test class distributions for test-agnostic evaluation, and accuracy under them.

SADE (Zhang et al., "Self-Supervised Aggregation of Diverse Experts for Test-Agnostic Long-Tailed
Recognition", NeurIPS 2022) and BalPoE (Sarkar et al., "Balanced Product of Calibrated Experts for
Long-Tailed Recognition", CVPR 2023) evaluate one trained model under eleven test label priors:
forward-long-tailed with imbalance :math:`\rho` = 50, 25, 10, 5, 2, uniform, and backward-long-tailed
with :math:`\rho` = 2, 5, 10, 25, 50. Forward means the test set is skewed like the training set:

.. math:: \pi_c \propto \rho^{-r_c / (C - 1)}

where :math:`r_c` is class ``c``'s rank by training count (0 = most frequent; on CIFAR-LT
:math:`r_c = c`); backward uses :math:`C - 1 - r_c`, uniform is :math:`1/C`.

**Two forms of the same number.** The accuracy of a model under prior :math:`\pi` is

.. math:: A(\pi) = \sum_c \pi_c \, \mathrm{acc}_c

with :math:`\mathrm{acc}_c` the accuracy on class ``c``'s test images: it follows exactly from the
per-class accuracies every evaluation records (:func:`prior_weighted_accuracy`), with no noise from
drawing a test subset. SADE instead draws a subset of a balanced test set (``m`` images per class)
with :math:`n_c = \lfloor m \pi_c / \max_k \pi_k \rfloor` images of class ``c``
(:func:`subsample_counts`, :func:`subsample_indices`) and reports its plain accuracy
:math:`\sum_c (n_c / \sum_k n_k)\,\mathrm{acc}'_c`, where :math:`\mathrm{acc}'_c` is the accuracy on the
drawn images. Averaged over draws, :math:`\mathrm{acc}'_c` is :math:`\mathrm{acc}_c`, so the subsampled
number scatters around :math:`A(\tilde\pi)`, :math:`\tilde\pi_c = n_c / \sum_k n_k`, which is
:math:`\pi` up to the rounding of :math:`n_c`. The two are equal when every
:math:`m \pi_c / \max_k \pi_k` is a whole number and the drawn images of each class are as accurate
as the whole class.

**Prior correction.** When the test prior is known, logits that estimate the training posterior are
corrected by :math:`z_c + \log \pi^{test}_c - \log \pi^{train}_c` before the argmax (the Bayes rule
under label shift, Saerens et al., Neural Computation 2002; logit adjustment, Menon et al., ICLR
2021): :func:`prior_shifts`. For a loss that already removes the training prior (balanced softmax,
logit-adjusted loss) the logits estimate the balanced posterior; pass a uniform ``source`` then.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from fbl.checks import Counts, check_class_counts
from fbl.errors import ConfigError

DIRECTIONS = ("forward", "uniform", "backward")


@dataclass(frozen=True)
class LabelPrior:
    """A test class distribution of SADE's family: ``forward`` or ``backward`` long-tailed with
    ``imbalance`` :math:`\\rho` (largest over smallest class probability), or ``uniform``."""

    direction: str
    imbalance: float = 1.0

    def __post_init__(self):
        if self.direction not in DIRECTIONS:
            raise ConfigError(f"Expected a test prior direction in {DIRECTIONS} but got {self.direction!r}")
        if not (math.isfinite(self.imbalance) and self.imbalance >= 1):
            raise ConfigError(f"Expected a test prior imbalance >= 1 but got {self.imbalance!r}")

    @property
    def name(self) -> str:
        """``"forward-50"``, ``"uniform"``, ``"backward-2"``."""
        return "uniform" if self.direction == "uniform" else f"{self.direction}-{self.imbalance:g}"

    def weights(self, class_counts: Counts) -> list[float]:
        """:math:`\\pi_c` for the classes of ``class_counts`` (training counts, which rank the classes); sums to 1.

        Example:
            >>> [round(p, 4) for p in LabelPrior("forward", 4).weights([30, 20, 10])]
            [0.5714, 0.2857, 0.1429]
        """
        ranks = frequency_ranks(class_counts)
        last = max(len(ranks) - 1, 1)
        if self.direction == "uniform":
            raw = [1.0] * len(ranks)
        elif self.direction == "forward":
            raw = [self.imbalance ** (-r / last) for r in ranks]
        else:
            raw = [self.imbalance ** (-(len(ranks) - 1 - r) / last) for r in ranks]
        total = math.fsum(raw)
        return [p / total for p in raw]


#: The eleven test priors of SADE and BalPoE, from most head-heavy to most tail-heavy.
SADE_PRIORS: tuple[LabelPrior, ...] = (
    *(LabelPrior("forward", rho) for rho in (50, 25, 10, 5, 2)),
    LabelPrior("uniform"),
    *(LabelPrior("backward", rho) for rho in (2, 5, 10, 25, 50)),
)


def frequency_ranks(class_counts: Counts) -> list[int]:
    """Each class's rank by training count, 0 for the most frequent (ties: lower class index first).

    Example:
        >>> frequency_ranks([10, 30, 20, 30])
        [3, 0, 2, 1]
    """
    counts = check_class_counts(class_counts)
    order = sorted(range(len(counts)), key=lambda c: (-counts[c], c))
    ranks = [0] * len(counts)
    for rank, cls in enumerate(order):
        ranks[cls] = rank
    return ranks


def prior_weighted_accuracy(per_class_acc: Sequence[float | None], weights: Sequence[float]) -> float | None:
    r""":math:`A(\pi) = \sum_c \pi_c \mathrm{acc}_c` in the unit of ``per_class_acc``.

    A class without test images (``None``) has no accuracy: the sum runs over the classes that have one,
    with :math:`\pi` renormalised over them; ``None`` when no class with weight has an accuracy.
    """
    if len(per_class_acc) != len(weights):
        raise ConfigError(f"Expected one prior weight per class ({len(per_class_acc)}) but got {len(weights)}")
    pairs = [(w, a) for w, a in zip(weights, per_class_acc, strict=True) if a is not None and not math.isnan(a)]
    mass = math.fsum(w for w, _ in pairs)
    if mass <= 0:
        return None
    return math.fsum(w * a for w, a in pairs) / mass


def prior_weighted_standard_error(
    per_class_acc: Sequence[float | None], per_class_n: Sequence[int], weights: Sequence[float]
) -> float | None:
    r"""Standard error of :func:`prior_weighted_accuracy` when each class's accuracy (percent) is a
    proportion measured on its own :math:`n_c` images, classes independent:

    .. math:: \mathrm{SE} = 100 \sqrt{\sum_c \pi_c^2 \, a_c (1 - a_c) / n_c}

    over the classes with an accuracy, :math:`\pi` renormalised over them (the uniform prior gives the
    balanced estimate's SE, :func:`fbl.balanced_estimate.balanced_estimate`); ``None`` where the accuracy is.
    """
    if not len(per_class_acc) == len(per_class_n) == len(weights):
        raise ConfigError(
            f"Expected one accuracy, size and prior weight per class but got "
            f"{len(per_class_acc)}, {len(per_class_n)} and {len(weights)}"
        )
    terms = [
        (w, a / 100, n) for w, a, n in zip(weights, per_class_acc, per_class_n, strict=True) if a is not None and n > 0
    ]
    mass = math.fsum(w for w, _, _ in terms)
    if mass <= 0:
        return None
    return 100 * math.sqrt(math.fsum((w / mass) ** 2 * a * (1 - a) / n for w, a, n in terms))


def prior_shifts(
    priors: Sequence[LabelPrior], class_counts: Counts, source: Sequence[float] | None = None
) -> torch.Tensor:
    r""":math:`\log \pi^{test}_c - \log \pi^{source}_c` for each prior, shape ``(P, C)``, float64.

    ``source`` is the prior the logits are calibrated to: the training prior (``class_counts``
    normalised) unless given; uniform for a loss that balances the training prior itself.
    """
    counts = check_class_counts(class_counts)
    source = [float(n) for n in (counts if source is None else source)]
    if len(source) != len(counts) or any(not (math.isfinite(p) and p > 0) for p in source):
        raise ConfigError(f"Expected {len(counts)} positive source prior weights but got {source!r}")
    log_source = torch.tensor(source, dtype=torch.float64).log() - math.log(math.fsum(source))
    rows = [torch.tensor(prior.weights(counts), dtype=torch.float64).log() - log_source for prior in priors]
    return torch.stack(rows) if rows else torch.zeros(0, len(counts), dtype=torch.float64)


def accuracy_under_priors(
    per_class_acc: Sequence[float | None],
    class_counts: Counts,
    corrected: Mapping[str, Sequence[float | None]] | None = None,
    priors: Sequence[LabelPrior] = SADE_PRIORS,
) -> dict[str, dict[str, float | None]]:
    """``{prior name: {"uncorrected": A(pi), "corrected": A(pi) after prior correction}}``.

    ``corrected`` maps a prior's name to the per-class accuracies of the model corrected for that
    prior (see :func:`prior_shifts`); without it (or without that prior) only ``uncorrected`` is given.
    """
    table = {}
    for prior in priors:
        weights = prior.weights(class_counts)
        row = {"uncorrected": prior_weighted_accuracy(per_class_acc, weights)}
        if corrected is not None and prior.name in corrected:
            row["corrected"] = prior_weighted_accuracy(corrected[prior.name], weights)
        table[prior.name] = row
    return table


def subsample_counts(weights: Sequence[float], per_class: int) -> list[int]:
    r"""SADE's test-set sizes :math:`n_c = \lfloor m \pi_c / \max_k \pi_k \rfloor` from ``per_class`` = ``m``.

    Example:
        >>> subsample_counts([0.5, 0.25, 0.25 / 2], 20)
        [20, 10, 5]
    """
    top = max(weights)
    # The small slack keeps a whole number computed as 9.999999999 from rounding down to 9.
    return [math.floor(per_class * w / top + 1e-9) for w in weights]


def subsample_indices(labels: Sequence[int], counts: Sequence[int], seed: int | None = 0) -> np.ndarray:
    """Positions (sorted) of ``counts[c]`` images of each class ``c`` among ``labels``.

    ``seed`` draws them at random (a ``numpy`` generator seeded with it); ``None`` keeps the first
    ``counts[c]`` of each class in order. A class with fewer images than asked is a ConfigError.
    """
    labels = np.asarray(labels)
    rng = None if seed is None else np.random.default_rng(seed)
    kept = []
    for cls, n in enumerate(counts):
        members = np.flatnonzero(labels == cls)
        if n > len(members):
            raise ConfigError(f"Expected at least {n} test images of class {cls} but there are {len(members)}")
        kept.append(members[:n] if rng is None else rng.choice(members, size=n, replace=False))
    return np.sort(np.concatenate(kept)) if kept else np.zeros(0, dtype=np.int64)


def subsampled_accuracy(
    labels: Sequence[int], predictions: Sequence[int], prior: LabelPrior, class_counts: Counts, seed: int | None = 0
) -> float:
    """Top-1 accuracy in percent on SADE's subsampled test set for ``prior`` (largest ``m`` the test set allows)."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    per_class = int(np.bincount(labels, minlength=len(check_class_counts(class_counts))).min())
    keep = subsample_indices(labels, subsample_counts(prior.weights(class_counts), per_class), seed)
    if not len(keep):
        raise ConfigError("the subsampled test set is empty: some class has no test image")
    return 100.0 * float(np.mean(labels[keep] == predictions[keep]))


def subsampled_accuracies(
    labels: Sequence[int],
    predictions: Sequence[int],
    class_counts: Counts,
    priors: Sequence[LabelPrior] = SADE_PRIORS,
    seed: int | None = 0,
) -> dict[str, float] | None:
    """``{prior name: subsampled_accuracy}`` for each prior; ``None`` when some class has no test image.

    The exact form, :math:`\\sum_c \\pi_c \\mathrm{acc}_c`, is what a subsampled test set estimates: on
    average over draws the two agree up to the rounding of the per-class sizes, and one draw differs from
    it by the sampling noise of its smaller classes (20 images for CIFAR-10's backward/forward-50 ends).
    """
    present = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(check_class_counts(class_counts)))
    if not len(labels) or present.min() == 0:
        return None
    return {prior.name: subsampled_accuracy(labels, predictions, prior, class_counts, seed) for prior in priors}
