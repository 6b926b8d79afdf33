"""Bootstrap intervals and paired tests on cases whose answer is known."""

import math

import numpy as np
import pytest

from fbl.errors import ConfigError
from fbl.predictions import Predictions
from fbl.statistics import bootstrap_intervals, mcnemar, paired_bootstrap, percentile_interval, seed_interval

COUNTS_2 = [200, 10]  # class 0 many-shot, class 1 few-shot


def _predictions(labels, correct, num_classes=2):
    labels = np.asarray(labels)
    wrong = (labels + 1) % num_classes
    return Predictions(np.arange(len(labels)), labels, np.where(np.asarray(correct, bool), labels, wrong), num_classes)


def test_all_correct_gives_the_interval_100_100():
    labels = np.arange(60) % 2
    intervals = bootstrap_intervals(_predictions(labels, np.ones(60)), COUNTS_2, resamples=200)
    for name in ("top1", "many", "few", "worst", "hmean", "gmean", "macro_f1"):
        assert intervals[name] == pytest.approx([100.0, 100.0], abs=1e-9), name
    assert intervals["top1"] == [100.0, 100.0]


def test_large_sample_top1_interval_matches_the_normal_approximation():
    # 20,000 images, exactly 80% right: the 95% interval is 80 +- 1.96 sqrt(0.8 * 0.2 / N) (in percent)
    n = 20_000
    labels = np.arange(n) % 2
    correct = (np.arange(n) // 2) % 10 < 8
    low, high = bootstrap_intervals(_predictions(labels, correct), COUNTS_2, resamples=1000, metrics=["top1"])["top1"]
    half = 100 * 1.959964 * math.sqrt(0.8 * 0.2 / n)  # 0.554 points
    assert low == pytest.approx(80 - half, abs=0.1)
    assert high == pytest.approx(80 + half, abs=0.1)


def test_same_seed_same_interval():
    labels = np.arange(100) % 2
    p = _predictions(labels, np.arange(100) % 3 > 0)
    assert bootstrap_intervals(p, COUNTS_2, resamples=50, seed=4) == bootstrap_intervals(
        p, COUNTS_2, resamples=50, seed=4
    )


def test_percentile_interval_longhand():
    assert percentile_interval(list(range(101)), 0.9) == pytest.approx([5.0, 95.0])
    assert percentile_interval([None, 3.0, None], 0.95) == [3.0, 3.0]
    assert percentile_interval([None]) is None
    with pytest.raises(ConfigError, match="level"):
        percentile_interval([1.0], 95)


def test_mcnemar_longhand():
    # 3 images only A gets right, 1 only B: p = 2 * (C(4,0) + C(4,1)) / 2^4 = 10/16
    a = [1, 1, 1, 0, 1, 0]
    b = [0, 0, 0, 1, 1, 0]
    assert mcnemar(a, b) == {"a_only": 3, "b_only": 1, "p_value": pytest.approx(0.625)}
    assert mcnemar(a, a)["p_value"] == 1.0  # no discordant image
    assert mcnemar([1] * 20, [0] * 20)["p_value"] == pytest.approx(2 / 2**20)


def test_identical_models_differ_by_exactly_zero():
    labels = np.arange(80) % 2
    p = _predictions(labels, np.arange(80) % 5 > 1)
    result = paired_bootstrap([(p, p)], COUNTS_2, resamples=100)
    assert result["top1"] == {"difference": 0.0, "interval": [0.0, 0.0], "per_pair": [0.0]}


def test_paired_difference_on_a_constructed_case():
    # 200 images; A is right on the first 120, B on the first 100: A - B = 10 points on top-1, every
    # image where they differ favours A, so no resample can make the difference negative.
    labels = np.arange(200) % 2
    a = _predictions(labels, np.arange(200) < 120)
    b = _predictions(labels, np.arange(200) < 100)
    result = paired_bootstrap([(a, b)], COUNTS_2, resamples=1000)
    assert result["top1"]["difference"] == pytest.approx(10.0)
    low, high = result["top1"]["interval"]
    assert 0 < low < 10 < high
    # per image the difference is 1 on 20 images and 0 on 180: normal approximation of its mean
    half = 100 * 1.959964 * math.sqrt(0.1 * 0.9 / 200)
    assert low == pytest.approx(10 - half, abs=1.0) and high == pytest.approx(10 + half, abs=1.0)


def test_two_seed_pairs_average_their_differences():
    labels = np.arange(100) % 2
    a1, b1 = _predictions(labels, np.arange(100) < 60), _predictions(labels, np.arange(100) < 50)
    a2, b2 = _predictions(labels, np.arange(100) < 70), _predictions(labels, np.arange(100) < 50)
    result = paired_bootstrap([(a1, b1), (a2, b2)], COUNTS_2, resamples=100)
    assert result["top1"]["per_pair"] == pytest.approx([10.0, 20.0])
    assert result["top1"]["difference"] == pytest.approx(15.0)


def test_runs_on_different_images_are_not_paired():
    labels = np.arange(10) % 2
    a = _predictions(labels, np.ones(10))
    shuffled = Predictions(a.index[::-1].copy(), a.label[::-1].copy(), a.prediction[::-1].copy(), 2)
    with pytest.raises(ConfigError, match="same images"):
        paired_bootstrap([(a, shuffled)], COUNTS_2)
    relabelled = Predictions(a.index, 1 - a.label, a.prediction, 2)
    with pytest.raises(ConfigError, match="different labels"):
        paired_bootstrap([(a, relabelled)], COUNTS_2)


def test_seed_interval_of_three_values_longhand():
    # mean 81, s = 1, t_{0.975, 2} = 4.303
    half = 4.303 * 1.0 / math.sqrt(3)
    assert seed_interval([80.0, 81.0, 82.0]) == pytest.approx([81 - half, 81 + half])


def test_seed_interval_of_five_values_longhand():
    # mean 74, s = sqrt((16 + 4 + 0 + 4 + 16) / 4) = sqrt(10), t_{0.975, 4} = 2.776
    half = 2.776 * math.sqrt(10) / math.sqrt(5)
    assert seed_interval([70.0, 72.0, 74.0, 76.0, 78.0]) == pytest.approx([74 - half, 74 + half])


def test_seed_interval_uses_t_up_to_30_degrees_of_freedom_then_the_normal():
    # 0 and 2 alternating: mean 1, s = sqrt(n / (n - 1))
    for n, quantile in ((31, 2.042), (32, 1.960)):
        values = [0.0, 2.0] * (n // 2) + [1.0] * (n % 2)
        mean = math.fsum(values) / n
        s = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
        half = quantile * s / math.sqrt(n)
        assert seed_interval(values) == pytest.approx([mean - half, mean + half]), n


def test_seed_interval_needs_two_values_and_the_tabulated_level():
    assert seed_interval([]) is None
    assert seed_interval([80.0]) is None
    assert seed_interval([80.0, None, float("nan")]) is None  # None and NaN are not values
    assert seed_interval([80.0, None, 82.0]) == pytest.approx([81 - 12.706, 81 + 12.706])  # s = sqrt(2), n = 2
    with pytest.raises(ConfigError, match="0.95"):
        seed_interval([80.0, 81.0], level=0.9)
