"""Test priors of SADE's protocol, accuracy under them, SADE's subsampled test sets, and the prior correction."""

import math

import numpy as np
import pytest
import torch

from fbl import label_shift
from fbl.balanced_estimate import balanced_estimate
from fbl.errors import ConfigError
from fbl.label_shift import (
    LabelPrior,
    prior_weighted_accuracy,
    prior_weighted_standard_error,
    subsample_counts,
    subsample_indices,
)
from fbl.metrics import ClassMetrics


def test_sade_priors_are_the_eleven_of_the_papers_in_order():
    names = [prior.name for prior in label_shift.SADE_PRIORS]
    assert names == [
        "forward-50", "forward-25", "forward-10", "forward-5", "forward-2", "uniform",
        "backward-2", "backward-5", "backward-10", "backward-25", "backward-50",
    ]  # fmt: skip


def test_forward_backward_and_uniform_weights_longhand():
    counts = [400, 200, 100, 50, 25]  # sorted: rank = class index
    rho, last = 10.0, 4
    forward = [rho ** (-c / last) for c in range(5)]
    backward = [rho ** (-(last - c) / last) for c in range(5)]
    assert LabelPrior("forward", 10).weights(counts) == pytest.approx([p / sum(forward) for p in forward])
    assert LabelPrior("backward", 10).weights(counts) == pytest.approx([p / sum(backward) for p in backward])
    assert LabelPrior("uniform").weights(counts) == pytest.approx([0.2] * 5)
    # the imbalance is the ratio of the largest to the smallest class probability
    weights = LabelPrior("forward", 10).weights(counts)
    assert max(weights) / min(weights) == pytest.approx(10.0)


def test_classes_are_ranked_by_training_count_not_by_index():
    # class 2 is the most frequent, then 0, then 1: forward puts the most weight on class 2
    weights = LabelPrior("forward", 4).weights([20, 10, 40])
    assert weights == pytest.approx([2 / 7, 1 / 7, 4 / 7])  # 4^0, 4^(-1/2), 4^(-1) = 1, 1/2, 1/4 over 7/4


def test_bad_prior_is_a_config_error():
    with pytest.raises(ConfigError, match="direction"):
        LabelPrior("sideways", 2)
    with pytest.raises(ConfigError, match="imbalance"):
        LabelPrior("forward", 0.5)


def test_prior_weighted_accuracy_longhand_and_missing_class_renormalised():
    assert prior_weighted_accuracy([80.0, 50.0, 20.0], [0.5, 0.3, 0.2]) == pytest.approx(40 + 15 + 4)
    # class 1 has no test images: weights 0.5 and 0.2 renormalised over 0.7
    assert prior_weighted_accuracy([80.0, None, 20.0], [0.5, 0.3, 0.2]) == pytest.approx((40 + 4) / 0.7)
    assert prior_weighted_accuracy([None, None], [0.5, 0.5]) is None


def _divisible_test_set():
    """20 test images per class, classes interleaved; the correct ones repeat with a period that divides
    the number SADE keeps of that class (20, 10, 5 for forward rho=4), so the kept images are exactly
    as accurate as the whole class: 15/20, 3/10 and 2/5 right."""
    patterns = {0: [1] * 15 + [0] * 5, 1: ([1] * 3 + [0] * 7) * 2, 2: ([1] * 2 + [0] * 3) * 4}
    labels, correct = [], []
    for k in range(20):
        for cls in range(3):
            labels.append(cls)
            correct.append(patterns[cls][k])
    labels = np.array(labels)
    predictions = np.where(np.array(correct) == 1, labels, (labels + 1) % 3)
    return labels, predictions


def test_prior_weighted_accuracy_equals_the_subsampled_test_set_when_exactly_divisible():
    counts, prior = [40, 20, 10], LabelPrior("forward", 4)
    labels, predictions = _divisible_test_set()
    weights = prior.weights(counts)  # 4/7, 2/7, 1/7
    assert subsample_counts(weights, 20) == [20, 10, 5]
    per_class = [75.0, 30.0, 40.0]
    expected = 4 / 7 * 75 + 2 / 7 * 30 + 1 / 7 * 40  # = 400/7 = 100 * 20/35
    assert prior_weighted_accuracy(per_class, weights) == pytest.approx(expected, rel=1e-12)
    subsampled = label_shift.subsampled_accuracy(labels, predictions, prior, counts, seed=None)
    assert subsampled == pytest.approx(100 * 20 / 35, rel=1e-12)
    assert subsampled == pytest.approx(expected, rel=1e-12)


def test_subsampled_accuracies_name_each_prior_and_need_every_class():
    counts, prior = [40, 20, 10], LabelPrior("forward", 4)
    labels, predictions = _divisible_test_set()
    table = label_shift.subsampled_accuracies(
        labels, predictions, counts, priors=(prior, LabelPrior("uniform")), seed=None
    )
    # forward-4 keeps 20/10/5 first images of classes 0/1/2: 20 right of 35; uniform keeps the first 20 of each
    assert table["forward-4"] == pytest.approx(100 * 20 / 35, rel=1e-12)
    assert table["uniform"] == pytest.approx(100 * (15 + 6 + 8) / 60, rel=1e-12)  # every image kept
    assert set(table) == {"forward-4", "uniform"}
    no_class_2 = [label for label in labels if label != 2]
    assert label_shift.subsampled_accuracies(no_class_2, no_class_2, counts) is None


def test_evaluation_sums_give_the_same_number_as_the_subsampled_test_set():
    counts, prior = [40, 20, 10], LabelPrior("forward", 4)
    labels, predictions = _divisible_test_set()
    metric = ClassMetrics(3, priors=(prior,))
    metric.update(torch.nn.functional.one_hot(torch.as_tensor(predictions), 3).double(), torch.as_tensor(labels))
    result = metric.compute(counts)
    assert result["test_priors"] == {"forward-4": {"uncorrected": pytest.approx(400 / 7, rel=1e-12)}}


def test_random_subsample_draws_the_asked_number_of_distinct_images_per_class():
    labels = np.repeat(np.arange(3), 20)
    kept = subsample_indices(labels, [20, 7, 2], seed=3)
    assert len(set(kept.tolist())) == len(kept) == 29
    assert np.bincount(labels[kept], minlength=3).tolist() == [20, 7, 2]
    assert np.array_equal(kept, subsample_indices(labels, [20, 7, 2], seed=3))  # reproducible
    with pytest.raises(ConfigError, match="at least 21"):
        subsample_indices(labels, [21, 1, 1])


def test_prior_shifts_are_log_test_minus_log_source_prior():
    shifts = label_shift.prior_shifts([LabelPrior("uniform"), LabelPrior("forward", 4)], [90, 10])
    assert shifts[0].tolist() == pytest.approx([math.log(0.5 / 0.9), math.log(0.5 / 0.1)])
    assert shifts[1].tolist() == pytest.approx([math.log(0.8 / 0.9), math.log(0.2 / 0.1)])
    uniform_source = label_shift.prior_shifts([LabelPrior("uniform")], [90, 10], source=[1, 1])
    assert uniform_source[0].tolist() == pytest.approx([0.0, 0.0])


def test_accuracy_under_priors_takes_the_corrected_per_class_accuracies_of_each_prior():
    table = label_shift.accuracy_under_priors(
        [100.0, 0.0], [90, 10], corrected={"uniform": [50.0, 100.0]}, priors=[LabelPrior("uniform")]
    )
    assert table == {"uniform": {"uncorrected": pytest.approx(50.0), "corrected": pytest.approx(75.0)}}


def test_prior_weighted_standard_error_longhand_and_missing_class_renormalised():
    se = prior_weighted_standard_error([80.0, 50.0, 20.0], [100, 400, 25], [0.5, 0.3, 0.2])
    assert se == pytest.approx(100 * math.sqrt(0.25 * 0.8 * 0.2 / 100 + 0.09 * 0.25 / 400 + 0.04 * 0.2 * 0.8 / 25))
    # a class without images: weights renormalised over the others (0.5, 0.2 -> 5/7, 2/7)
    se = prior_weighted_standard_error([80.0, None, 20.0], [100, 0, 25], [0.5, 0.3, 0.2])
    assert se == pytest.approx(100 * math.sqrt((5 / 7) ** 2 * 0.16 / 100 + (2 / 7) ** 2 * 0.16 / 25))
    # the uniform prior is the balanced estimate's standard error
    uniform = prior_weighted_standard_error([80.0, 50.0, 20.0], [100, 400, 25], [1, 1, 1])
    assert uniform == pytest.approx(balanced_estimate([80.0, 50.0, 20.0], [100, 400, 25], [500, 50, 10])["se"])
    assert prior_weighted_standard_error([None], [0], [1.0]) is None
