r"""Balanced top-1 from per-class accuracies measured on samples of different sizes, with its standard error.

On a balanced test set top-1 is the mean of the per-class accuracies, so it can be estimated class
by class on any held-out images of each class, however many each class has (the
:data:`~fbl.data.lossless_estimate_split.LOSSLESS_ESTIMATE` split: thousands for a tail class of
CIFAR-10-LT, 103 for its head class). With :math:`p_c` the accuracy on :math:`n_c` images of class
:math:`c` and :math:`C` classes measured,

.. math::

    \hat{a} = \frac{1}{C} \sum_c p_c, \qquad
    \mathrm{SE}(\hat{a}) = \frac{1}{C} \sqrt{\sum_c \frac{p_c (1 - p_c)}{n_c}}

(each :math:`p_c` binomial, classes independent). The per-class term is the Wald estimate: it is 0
for a class measured at exactly 0 or 100 %, which understates the uncertainty of a class with few
images, so :func:`balanced_estimate` returns each ``n_c`` beside its accuracy. Many/medium/few are
the same mean and standard error over the classes of each shot group (by training count).

Two models evaluated on the same images are compared in the same way, image by image
(:func:`paired_balanced_difference`): with :math:`d_i` = 1 where only A is right, −1 where only B is,
0 otherwise (averaged over the seed pairs when there are several), :math:`\bar d_c` its mean over class
:math:`c`'s :math:`n_c` images and :math:`s_c^2` their variance,

.. math::

    \Delta = \frac{1}{C} \sum_c \bar d_c, \qquad
    \mathrm{SE}(\Delta) = \frac{1}{C} \sqrt{\sum_c \frac{s_c^2}{n_c}}

(for one pair :math:`s_c^2 = (b_c + w_c)/n_c - \bar d_c^2` with :math:`b_c, w_c` the images only A, only
B gets right). The images both get right or wrong cancel, so the paired SE is much smaller than the
two estimates' SEs combined whenever the models agree on most images.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from fbl.data.shot_groups import shot_groups
from fbl.errors import ConfigError
from fbl.predictions import Predictions, paired_images

#: The numbers of an estimate without its per-class lists: balanced top-1, many/medium/few, their SEs.
ESTIMATE_KEYS = ("top1", "se", "many", "many_se", "medium", "medium_se", "few", "few_se")
#: Two-sided 95% normal quantile: ``interval`` is Δ ± this × SE.
Z_95 = 1.959963984540054


def _mean_and_se(accuracies: list[float], sizes: list[int]) -> tuple[float | None, float | None]:
    """Mean of per-class accuracies (percent) and its binomial standard error (percent)."""
    if not accuracies:
        return None, None
    variance = sum((a / 100) * (1 - a / 100) / n for a, n in zip(accuracies, sizes, strict=True))
    count = len(accuracies)
    return sum(accuracies) / count, 100 * math.sqrt(variance) / count


def balanced_estimate(
    per_class_acc: Sequence[float | None], per_class_n: Sequence[int], class_counts: Sequence[int]
) -> dict:
    """Balanced top-1 and many/medium/few with their standard errors, from per-class results.

    Args:
        per_class_acc: accuracy of each class in percent, ``None`` for a class with no image (as
            :meth:`fbl.metrics.ClassMetrics.compute` reports ``per_class_acc``).
        per_class_n: images each accuracy was measured on (0 where it is ``None``).
        class_counts: training images per class, which decide the shot groups.

    Returns:
        ``top1``, ``se``, ``many``, ``many_se``, ``medium``, ``medium_se``, ``few``, ``few_se`` (percent;
        ``None`` where no class was measured), ``per_class_acc``, ``per_class_n``, ``missing_classes``
        and ``partial`` (true when some class was not measured: the means are over the others only).

    Example:
        >>> r = balanced_estimate([90.0, 60.0], [100, 400], [500, 50])
        >>> r["top1"], round(r["se"], 4)
        (75.0, 1.9365)
    """
    if not len(per_class_acc) == len(per_class_n) == len(class_counts):
        raise ValueError(
            f"Expected one accuracy, size and training count per class but got "
            f"{len(per_class_acc)}, {len(per_class_n)} and {len(class_counts)}"
        )
    for cls, (acc, n) in enumerate(zip(per_class_acc, per_class_n, strict=True)):
        if (acc is None) != (n == 0) or n < 0 or (acc is not None and not 0 <= acc <= 100):
            raise ValueError(
                f"Expected class {cls} to have an accuracy in [0, 100] on n > 0 images, or None on 0, "
                f"but got {acc!r} on {n}"
            )
    measured = [c for c, n in enumerate(per_class_n) if n > 0]
    top1, se = _mean_and_se([per_class_acc[c] for c in measured], [per_class_n[c] for c in measured])
    result = {"top1": top1, "se": se}
    for name, members in shot_groups(list(class_counts)).items():
        present = [c for c in members if per_class_n[c] > 0]
        mean, group_se = _mean_and_se([per_class_acc[c] for c in present], [per_class_n[c] for c in present])
        result[name], result[f"{name}_se"] = mean, group_se
    missing = [c for c, n in enumerate(per_class_n) if n == 0]
    result.update(
        per_class_acc=list(per_class_acc), per_class_n=[int(n) for n in per_class_n], missing_classes=missing,
        partial=bool(missing),
    )  # fmt: skip
    return result


def estimate_intervals(estimate: dict) -> dict[str, list[float] | None]:
    """95% intervals of a :func:`balanced_estimate`: ``[v − 1.96 SE, v + 1.96 SE]`` for the balanced top-1 and
    many/medium/few (``None`` for an empty group). A bootstrap over the split's images would give the
    interval of the image-weighted top-1 of a split whose classes differ in size, not of this estimate."""
    pairs = (("top1", "se"), ("many", "many_se"), ("medium", "medium_se"), ("few", "few_se"))
    return {
        key: None if estimate.get(key) is None or estimate.get(se) is None
        else [estimate[key] - Z_95 * estimate[se], estimate[key] + Z_95 * estimate[se]]
        for key, se in pairs
    }  # fmt: skip


def balanced_estimate_of(metrics: dict, class_counts: Sequence[int]) -> dict:
    """:func:`balanced_estimate` of an :func:`fbl.engine.evaluate.evaluate` result.

    Each class's ``n_c`` is the number of images actually evaluated (so ``limit_batches`` stays
    consistent): ``per_class_n`` where the result has it, else the row sums of its ``confusion``.
    """
    if "per_class_n" in metrics:
        sizes = [int(n) for n in metrics["per_class_n"]]
    elif "confusion" in metrics:
        sizes = [int(sum(row)) for row in metrics["confusion"]]
    else:
        raise ValueError("Expected an evaluation result with 'per_class_n' or 'confusion' but got neither")
    return balanced_estimate(metrics["per_class_acc"], sizes, class_counts)


def paired_balanced_difference(pairs: Sequence[tuple[Predictions, Predictions]]) -> dict:
    """Balanced top-1 of A minus B on the same images, with its paired standard error (module docstring).

    Args:
        pairs: ``(A, B)`` predictions of runs (one pair per seed, say), compared on the images all of them
            hold (:func:`fbl.predictions.paired_images`; a one-line :class:`~fbl.errors.ConfigError` when
            they cannot be paired).

    Returns:
        ``difference`` (percentage points, A − B, over the classes with images), ``se``, ``z`` (``None``
        when ``se`` is 0), ``interval`` (Δ ± 1.96 SE), ``per_pair`` (each pair's Δ) and ``images`` (how
        many were compared).

    Example:
        >>> from fbl.predictions import Predictions
        >>> labels = np.array([0, 0, 1, 1])
        >>> a = Predictions(np.arange(4), labels, np.array([0, 0, 1, 0]), 2)
        >>> b = Predictions(np.arange(4), labels, np.array([0, 1, 1, 0]), 2)
        >>> r = paired_balanced_difference([(a, b)])
        >>> r["difference"], round(r["se"], 2)
        (25.0, 17.68)
    """
    pairs = paired_images(pairs)
    first = pairs[0][0]
    per_image = [a.correct.astype(np.float64) - b.correct.astype(np.float64) for a, b in pairs]
    classes = [c for c in range(first.num_classes) if np.any(first.label == c)]
    if not classes:
        raise ConfigError("Expected predictions on at least one image but got none")

    def balanced(d: np.ndarray) -> float:
        return 100.0 * math.fsum(d[first.label == c].mean() for c in classes) / len(classes)

    mean_d = np.mean(per_image, axis=0)
    variance = math.fsum(mean_d[first.label == c].var() / np.sum(first.label == c) for c in classes)
    difference, se = balanced(mean_d), 100.0 * math.sqrt(variance) / len(classes)
    return {
        "difference": difference,
        "se": se,
        "z": difference / se if se > 0 else None,
        "interval": [difference - Z_95 * se, difference + Z_95 * se],
        "per_pair": [balanced(d) for d in per_image],
        "images": len(first),
    }
