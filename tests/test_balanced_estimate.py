"""Balanced top-1 and its binomial standard error from per-class accuracies on samples of different sizes."""

import math

import numpy as np
import pytest

from fbl.balanced_estimate import balanced_estimate, balanced_estimate_of, paired_balanced_difference
from fbl.errors import ConfigError
from fbl.predictions import Predictions

# Training counts 500 / 50 / 10: class 0 many-shot, class 1 medium, class 2 few.
COUNTS = [500, 50, 10]


def test_mean_of_classes_and_standard_error_longhand():
    result = balanced_estimate([80.0, 50.0, 100.0], [100, 400, 25], COUNTS)
    assert result["top1"] == pytest.approx((80 + 50 + 100) / 3)
    # SE = (1/C) sqrt(sum_c p_c (1 - p_c) / n_c), in percent.
    expected_se = 100 / 3 * math.sqrt(0.8 * 0.2 / 100 + 0.5 * 0.5 / 400 + 1.0 * 0.0 / 25)
    assert result["se"] == pytest.approx(expected_se, rel=1e-12)
    assert result["se"] == pytest.approx(1.5723301, rel=1e-6)
    assert (result["many"], result["medium"], result["few"]) == (80.0, 50.0, 100.0)
    assert result["many_se"] == pytest.approx(100 * math.sqrt(0.8 * 0.2 / 100))  # 4.0
    assert result["medium_se"] == pytest.approx(100 * math.sqrt(0.5 * 0.5 / 400))  # 2.5
    assert result["few_se"] == 0.0
    assert result["per_class_acc"] == [80.0, 50.0, 100.0] and result["per_class_n"] == [100, 400, 25]
    assert result["missing_classes"] == [] and result["partial"] is False


def test_a_class_without_images_is_left_out_and_the_estimate_says_it_is_partial():
    result = balanced_estimate([None, 60.0, 30.0], [0, 50, 200], COUNTS)
    assert result["top1"] == pytest.approx(45.0)
    assert result["se"] == pytest.approx(100 / 2 * math.sqrt(0.6 * 0.4 / 50 + 0.3 * 0.7 / 200))
    assert result["many"] is None and result["many_se"] is None
    assert result["missing_classes"] == [0] and result["partial"] is True


def test_the_standard_error_is_the_spread_of_the_estimate_over_resampled_test_sets():
    # Per-class accuracies p and sizes n like CIFAR-10-LT's estimate split (103 head images).
    p = np.array([0.95, 0.9, 0.85, 0.75, 0.8, 0.7, 0.75, 0.7, 0.6, 0.55])
    n = np.array([103, 2003, 3204, 3923, 4355, 4613, 4768, 4861, 4917, 4950])
    draws = np.random.RandomState(0).binomial(n, p, size=(20000, 10)) / n
    spread = 100 * draws.mean(axis=1).std()
    formula = balanced_estimate((100 * p).tolist(), n.tolist(), [5000] + [100] * 9)["se"]
    assert formula == pytest.approx(spread, rel=0.03)
    assert 0.2 < formula < 0.5  # against about 1.3 points on the 1,000 lossless test images


@pytest.mark.parametrize(
    "acc, n, counts, message",
    [
        ([80.0, 50.0], [100, 400], COUNTS, "one accuracy, size and training count per class"),
        ([None, 50.0, 10.0], [3, 400, 5], COUNTS, "class 0 to have an accuracy"),
        ([80.0, 50.0, 10.0], [100, 0, 5], COUNTS, "class 1 to have an accuracy"),
        ([80.0, 150.0, 10.0], [100, 4, 5], COUNTS, "class 1 to have an accuracy"),
    ],
)
def test_inconsistent_inputs_are_refused(acc, n, counts, message):
    with pytest.raises(ValueError, match=message):
        balanced_estimate(acc, n, counts)


def test_from_an_evaluation_result_the_sizes_are_the_images_evaluated():
    # Class 0: 4 of 5 right; class 1: 1 of 2; class 2: not reached (e.g. limit_batches).
    confusion = [[4, 1, 0], [1, 1, 0], [0, 0, 0]]
    metrics = {"top1": 5 / 7 * 100, "per_class_acc": [80.0, 50.0, None], "confusion": confusion}
    result = balanced_estimate_of(metrics, COUNTS)
    assert result["per_class_n"] == [5, 2, 0] and result["top1"] == pytest.approx(65.0)
    assert result["se"] == pytest.approx(100 / 2 * math.sqrt(0.8 * 0.2 / 5 + 0.5 * 0.5 / 2))
    assert result["missing_classes"] == [2] and result["partial"] is True
    assert balanced_estimate_of({**metrics, "per_class_n": [5, 2, 0]}, COUNTS) == result
    with pytest.raises(ValueError, match="'per_class_n' or 'confusion'"):
        balanced_estimate_of({"per_class_acc": [80.0, 50.0, None]}, COUNTS)


# The paired difference on the same images, against loops written out per class and per image.


def _predictions(labels, predicted, num_classes):
    return Predictions(np.arange(len(labels)), np.asarray(labels), np.asarray(predicted), num_classes)


def _longhand_difference(pairs, num_classes):
    """Per class: the mean over images of (A right − B right) averaged over the pairs, and its variance."""
    labels = pairs[0][0].label
    terms, variance_terms = [], []
    for c in range(num_classes):
        members = [i for i in range(len(labels)) if labels[i] == c]
        if not members:
            continue
        d = []
        for i in members:
            per_pair = [int(a.prediction[i] == c) - int(b.prediction[i] == c) for a, b in pairs]
            d.append(sum(per_pair) / len(per_pair))
        mean = sum(d) / len(d)
        terms.append(mean)
        variance_terms.append(sum((x - mean) ** 2 for x in d) / len(d) / len(d))
    count = len(terms)
    return 100 * sum(terms) / count, 100 * math.sqrt(sum(variance_terms)) / count


@pytest.mark.parametrize("num_pairs", [1, 3])
def test_paired_difference_against_the_longhand_per_class_sums(num_pairs):
    rng = np.random.default_rng(num_pairs)
    labels = rng.integers(0, 5, size=300)
    labels[labels == 4] = 3  # a class with no image is left out of the mean
    pairs = [
        (_predictions(labels, rng.integers(0, 5, size=300), 5), _predictions(labels, rng.integers(0, 5, size=300), 5))
        for _ in range(num_pairs)
    ]
    result = paired_balanced_difference(pairs)
    difference, se = _longhand_difference(pairs, 5)
    assert result["difference"] == pytest.approx(difference, abs=1e-9)
    assert result["se"] == pytest.approx(se, abs=1e-9)
    assert result["z"] == pytest.approx(difference / se)
    assert result["interval"] == pytest.approx([difference - 1.959964 * se, difference + 1.959964 * se])
    assert result["per_pair"] == pytest.approx([_longhand_difference([pair], 5)[0] for pair in pairs])
    assert result["images"] == 300


def test_one_pair_se_from_the_discordant_counts():
    # class 0, 10 images: only A right on 3, only B on 1; class 1, 20 images: only A right on 2
    labels = [0] * 10 + [1] * 20
    right_a = [1, 1, 1, 0, 1, 1, 1, 1, 1, 1] + [1, 1] + [0] * 18
    right_b = [0, 0, 0, 1, 1, 1, 1, 1, 1, 1] + [0] * 20

    def predicted(right):  # a wrong prediction is the other class
        return [label if ok else 1 - label for label, ok in zip(labels, right, strict=True)]

    pair = (_predictions(labels, predicted(right_a), 2), _predictions(labels, predicted(right_b), 2))
    result = paired_balanced_difference([pair])
    d0, d1 = (3 - 1) / 10, (2 - 0) / 20
    s0, s1 = (3 + 1) / 10 - d0**2, (2 + 0) / 20 - d1**2
    assert result["difference"] == pytest.approx(100 * (d0 + d1) / 2)
    assert result["se"] == pytest.approx(100 * math.sqrt(s0 / 10 + s1 / 20) / 2)


def test_identical_predictions_differ_by_zero_with_no_z():
    labels = [0, 1, 1, 2]
    a = _predictions(labels, [0, 1, 0, 2], 3)
    result = paired_balanced_difference([(a, a)])
    assert (result["difference"], result["se"], result["z"]) == (0.0, 0.0, None)


def test_pairs_on_other_images_are_refused():
    a = _predictions([0, 1], [0, 1], 2)
    other = Predictions(np.array([0, 2]), np.array([0, 1]), np.array([0, 1]), 2)
    with pytest.raises(ConfigError, match="not evaluated on the same images"):
        paired_balanced_difference([(a, other)])
    with pytest.raises(ConfigError, match="at least one pair"):
        paired_balanced_difference([])


def test_runs_with_image_ids_are_paired_on_the_images_both_hold():
    # A holds pictures 0-299 (its validation split took none), B the even ones in another order, as a
    # run whose validation split took the odd ones: the difference is the longhand one on the even pictures.
    rng = np.random.default_rng(7)
    labels, pred_a, pred_b = rng.integers(0, 3, size=300), rng.integers(0, 3, size=300), rng.integers(0, 3, size=300)
    a = Predictions(np.arange(300), labels, pred_a, 3, image=np.arange(300))
    order = rng.permutation(np.arange(0, 300, 2))
    b = Predictions(np.arange(150), labels[order], pred_b[order], 3, image=order)
    even = np.arange(0, 300, 2)
    longhand = [(_predictions(labels[even], pred_a[even], 3), _predictions(labels[even], pred_b[even], 3))]
    result = paired_balanced_difference([(a, b)])
    difference, se = _longhand_difference(longhand, 3)
    assert result["images"] == 150
    assert result["difference"] == pytest.approx(difference, abs=1e-9) and result["se"] == pytest.approx(se, abs=1e-9)
