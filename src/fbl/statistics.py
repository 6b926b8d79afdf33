r"""How sure a number is: intervals over the evaluation images, and tests between two models on the same images.

**Bootstrap interval** (Efron & Tibshirani, *An Introduction to the Bootstrap*, 1993): draw the ``N``
evaluation images ``N`` times with replacement, recompute the metric, repeat ``B`` times; the 2.5th and
97.5th percentiles of the ``B`` values are the 95% interval (:func:`bootstrap_intervals`). It says how
far the number would move on another test set drawn like this one, for this trained model; how far it
moves between training seeds is the mean ± std over seeds that reports show beside it.

**Paired difference**: two models evaluated on the same images are resampled together (the same draw
of images for both), so the interval of their difference excludes the test-set luck they share
(:func:`paired_bootstrap`; as in Koehn, EMNLP 2004, for machine translation). With several seeds per
method the runs are paired seed by seed and the difference is averaged over the pairs under each
draw. For top-1 there is also McNemar's exact test (McNemar, Psychometrika 1947; :func:`mcnemar`): under
"the two models are equally accurate" the images exactly one of them gets right fall to either side
with probability 1/2.

**Seed interval**: how far the mean over training seeds would move with other seeds is the Student-t
interval of the mean (:func:`seed_interval`), from the seeds' results alone.

Every metric is computed from bootstrap-weighted per-class sums by :func:`fbl.metrics.metrics_from_sums`,
the same definition evaluation uses.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np

from fbl.data.shot_groups import shot_groups
from fbl.errors import ConfigError
from fbl.metrics import metrics_from_sums
from fbl.predictions import Predictions, paired_images

#: Metrics that get an interval: all of them are functions of per-class sums.
INTERVAL_METRICS = ("top1", "many", "medium", "few", "worst", "hmean", "gmean", "macro_f1")
DEFAULT_RESAMPLES = 1000
DEFAULT_LEVEL = 0.95


def resample_weights(n: int, resamples: int, seed: int = 0) -> Iterator[np.ndarray]:
    """For each of ``resamples`` bootstrap samples, how often each of ``n`` images is drawn (one at a
    time, so memory stays ``O(n)``); the same ``seed`` gives the same samples.

    Example:
        >>> [int(w.sum()) for w in resample_weights(4, 3)]
        [4, 4, 4]
    """
    if resamples < 1:
        raise ConfigError(f"Expected at least one bootstrap resample but got {resamples}")
    rng = np.random.default_rng(seed)
    for _ in range(resamples):
        yield np.bincount(rng.integers(0, n, size=n), minlength=n) if n else np.zeros(0, dtype=np.int64)


def weighted_metrics(predictions: Predictions, weights: np.ndarray, groups: dict) -> dict[str, float | None]:
    """:func:`~fbl.metrics.metrics_from_sums` of the images counted ``weights`` times each."""
    c = predictions.num_classes
    samples = np.bincount(predictions.label, weights=weights, minlength=c)
    hits = np.bincount(predictions.label, weights=weights * predictions.correct, minlength=c)
    predicted = np.bincount(predictions.prediction, weights=weights, minlength=c)
    return metrics_from_sums(samples, hits, predicted, groups)


def percentile_interval(values: Sequence[float | None], level: float = DEFAULT_LEVEL) -> list[float] | None:
    """``[low, high]``: the central ``level`` of ``values`` (``None`` ignored; linear interpolation);
    ``None`` without values."""
    if not 0 < level < 1:
        raise ConfigError(f"Expected a confidence level in (0, 1) but got {level!r}")
    finite = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    if not finite.size:
        return None
    tail = 100.0 * (1.0 - level) / 2.0
    return [float(np.percentile(finite, tail)), float(np.percentile(finite, 100.0 - tail))]


def bootstrap_intervals(
    predictions: Predictions,
    class_counts: Sequence[int],
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
    metrics: Sequence[str] = INTERVAL_METRICS,
) -> dict[str, list[float] | None]:
    """``{metric: [low, high]}``, the bootstrap percentile interval over the evaluation images, in percent."""
    groups = shot_groups(class_counts)
    draws = [weighted_metrics(predictions, w, groups) for w in resample_weights(len(predictions), resamples, seed)]
    return {name: percentile_interval([d[name] for d in draws], level) for name in metrics}


def paired_bootstrap(
    pairs: Sequence[tuple[Predictions, Predictions]],
    class_counts: Sequence[int],
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
    metrics: Sequence[str] = INTERVAL_METRICS,
) -> dict[str, dict]:
    """``{metric: {"difference", "interval", "per_pair"}}`` for A - B, in percentage points.

    ``pairs`` holds ``(A, B)`` predictions of runs (one pair per seed, say), compared on the images all
    of them hold (:func:`fbl.predictions.paired_images`); ``difference`` is the mean over pairs of A's
    metric minus B's, ``per_pair`` those differences, and ``interval`` the bootstrap interval of the mean
    difference, one draw of images for all pairs.
    """
    pairs = paired_images(pairs)
    first = pairs[0][0]
    groups = shot_groups(class_counts)
    ones = np.ones(len(first))
    observed = [_differences(a, b, ones, groups) for a, b in pairs]
    draws = [_mean_difference(pairs, w, groups) for w in resample_weights(len(first), resamples, seed)]
    result = {}
    for name in metrics:
        per_pair = [d[name] for d in observed]
        result[name] = {
            "difference": _mean(per_pair),
            "interval": percentile_interval([d[name] for d in draws], level),
            "per_pair": per_pair,
        }
    return result


def _differences(a: Predictions, b: Predictions, weights: np.ndarray, groups: dict) -> dict[str, float | None]:
    ma, mb = weighted_metrics(a, weights, groups), weighted_metrics(b, weights, groups)
    return {k: None if ma[k] is None or mb[k] is None else ma[k] - mb[k] for k in ma}


def _mean_difference(pairs, weights: np.ndarray, groups: dict) -> dict[str, float | None]:
    per_pair = [_differences(a, b, weights, groups) for a, b in pairs]
    return {k: _mean([d[k] for d in per_pair]) for k in per_pair[0]}


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return math.fsum(present) / len(present) if present and len(present) == len(values) else None


def mcnemar(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> dict:
    r"""McNemar's exact test of equal top-1 accuracy on the same images.

    With :math:`b` images only A gets right and :math:`c` only B gets right, under the null hypothesis
    each of the :math:`n = b + c` discordant images is A's with probability 1/2, so the two-sided p-value is

    .. math:: p = \min\Bigl(1,\; 2 \sum_{k=0}^{\min(b, c)} \binom{n}{k} 2^{-n}\Bigr)

    computed with exact integers. Returns ``{"a_only": b, "b_only": c, "p_value": p}``.

    Example:
        >>> mcnemar([1, 1, 1, 1, 1, 0], [0, 0, 0, 0, 0, 0])["p_value"]  # 2 / 2**5
        0.0625
    """
    a, b = np.asarray(correct_a).astype(np.bool_), np.asarray(correct_b).astype(np.bool_)
    if a.shape != b.shape:
        raise ConfigError(f"Expected two correctness vectors of one length but got {a.shape} and {b.shape}")
    a_only, b_only = int(np.sum(a & ~b)), int(np.sum(~a & b))
    n = a_only + b_only
    tail = sum(math.comb(n, k) for k in range(min(a_only, b_only) + 1))
    return {"a_only": a_only, "b_only": b_only, "p_value": min(1.0, 2 * tail / 2**n)}


#: Student-t quantiles t_{0.975, df} for df = 1..30 (two-sided 95%); beyond 30 the normal 1.960.
_T_975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
_Z_975 = 1.960


def seed_interval(values: Sequence[float | None], level: float = DEFAULT_LEVEL) -> list[float] | None:
    r"""``[low, high]``: the t-interval of the mean over seeds (``None`` and NaN ignored); ``None`` below two values.

    With :math:`n` values of mean :math:`\bar{x}` and sample standard deviation :math:`s` (ddof=1),

    .. math:: \bar{x} \pm t_{0.975,\,n-1}\, s / \sqrt{n}

    (Student, Biometrika 1908): where the mean of another set of seeds like these would fall, assuming
    the seeds' results are normal. Unlike :func:`bootstrap_intervals` it says nothing about the test
    images. The quantiles come from a table for :math:`n - 1 \le 30` and the normal 1.960 beyond (which
    is up to 4% narrower than t at 31 degrees of freedom); only ``level=0.95`` is supported, since
    another level would need another table (no scipy here).

    Example:
        >>> [round(v, 3) for v in seed_interval([80.0, 81.0, 82.0])]  # 81 ± 4.303 · 1 / sqrt(3)
        [78.516, 83.484]
    """
    if level != DEFAULT_LEVEL:
        raise ConfigError(f"Expected the seed interval's level 0.95 (the one tabulated) but got {level!r}")
    present = [float(v) for v in values if v is not None and not math.isnan(v)]
    n = len(present)
    if n < 2:
        return None
    mean = math.fsum(present) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in present) / (n - 1))
    half = (_T_975[n - 2] if n - 1 <= len(_T_975) else _Z_975) * std / math.sqrt(n)
    return [mean - half, mean + half]
