"""Long-tail profile and subsampling against the CIFAR-LT reference procedure written out longhand."""

import math

import numpy as np
import pytest
import torch

from fbl.data import long_tail_counts, long_tail_indices
from fbl.errors import ConfigError

from ._reference import reference_indices


def reference_counts(n_max, num_classes, imb_type, imb_factor):
    """The reference's loop: img_max is a float (len(data) / C) and every count is truncated by int()."""
    img_max = float(n_max)
    counts = []
    if imb_type == "exp":
        for cls_idx in range(num_classes):
            counts.append(int(img_max * (imb_factor ** (cls_idx / (num_classes - 1.0)))))
    else:
        for cls_idx in range(num_classes):
            counts.append(int(img_max) if cls_idx < num_classes // 2 else int(img_max * imb_factor))
    return counts


# Published CIFAR-10-LT profiles (n_max 5000); the totals are the well-known train sizes.
CIFAR10_IF100 = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
CIFAR10_IF50 = [5000, 3237, 2096, 1357, 878, 568, 368, 238, 154, 100]
CIFAR10_IF10 = [5000, 3871, 2997, 2320, 1796, 1391, 1077, 834, 645, 500]


@pytest.mark.parametrize(
    "imb_factor, expected, total",
    [(0.01, CIFAR10_IF100, 12406), (0.02, CIFAR10_IF50, 13996), (0.1, CIFAR10_IF10, 20431)],
)
def test_cifar10_exp_counts(imb_factor, expected, total):
    counts = long_tail_counts(5000, 10, "exp", imb_factor)
    assert counts == expected == reference_counts(5000, 10, "exp", imb_factor)
    assert sum(counts) == total
    # Longhand from the closed form, independently of the reference loop's spelling.
    assert counts == [math.floor(5000 * imb_factor ** (c / 9)) for c in range(10)]


@pytest.mark.parametrize("imb_factor, total", [(0.01, 10847), (0.02, 12608), (0.1, 19573)])
def test_cifar100_exp_counts(imb_factor, total):
    counts = long_tail_counts(500, 100, "exp", imb_factor)
    assert counts == reference_counts(500, 100, "exp", imb_factor)
    assert counts[0] == 500 and counts[-1] == int(500 * imb_factor)
    assert sum(counts) == total


@pytest.mark.parametrize("num_classes", [10, 100, 7])
@pytest.mark.parametrize("imb_factor", [0.01, 0.1, 1.0])
def test_step_counts(num_classes, imb_factor):
    counts = long_tail_counts(500, num_classes, "step", imb_factor)
    head = num_classes // 2
    assert counts == [500] * head + [int(500 * imb_factor)] * (num_classes - head)
    assert len(counts) == num_classes


def test_step_cifar10_if100():
    assert long_tail_counts(5000, 10, "step", 0.01) == [5000] * 5 + [50] * 5


def test_imb_factor_one_is_balanced():
    assert long_tail_counts(5000, 10, "exp", 1.0) == [5000] * 10
    assert long_tail_counts(5000, 10, "step", 1) == [5000] * 10


def test_single_class_keeps_n_max():
    assert long_tail_counts(42, 1, "exp", 0.01) == [42]


def test_unknown_imb_type_lists_valid_names():
    with pytest.raises(ConfigError, match="exp, step"):
        long_tail_counts(5000, 10, "linear", 0.01)


@pytest.mark.parametrize("imb_factor", [0.0, -0.01, 1.5, 100])
def test_imb_factor_outside_unit_interval(imb_factor):
    with pytest.raises(ConfigError, match=r"imb_factor in \(0, 1\]"):
        long_tail_counts(5000, 10, "exp", imb_factor)


def test_profile_that_empties_a_class_is_rejected():
    # int(30 * 0.01 ** (74 / 99)) = int(0.96) = 0: class 74 is the first left without an image.
    with pytest.raises(ConfigError, match="leaves class 74 with 0 training images"):
        long_tail_counts(30, 100, "exp", 0.01)


@pytest.mark.parametrize("n_max, num_classes", [(0, 10), (5000, 0), (2.5, 10)])
def test_bad_sizes(n_max, num_classes):
    with pytest.raises(ConfigError):
        long_tail_counts(n_max, num_classes, "exp", 0.1)


def _shuffled_targets(per_class, num_classes, seed=123):
    rng = np.random.RandomState(seed)
    return rng.permutation(np.repeat(np.arange(num_classes), per_class))


@pytest.mark.parametrize("seed", [0, 1, 2022])
def test_indices_match_reference(seed):
    targets = _shuffled_targets(200, 10)
    counts = reference_counts(200, 10, "exp", 0.05)
    got = long_tail_indices(targets, counts, seed)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, reference_indices(targets, counts, seed))
    # Class by class, each with its count, and no position twice.
    np.testing.assert_array_equal(targets[got], np.repeat(np.arange(10), counts))
    assert len(np.unique(got)) == len(got)


def test_indices_leave_the_global_rng_alone():
    targets = _shuffled_targets(50, 5)
    counts = [50, 30, 20, 10, 5]
    np.random.seed(99)
    expected = np.random.random_sample(3)
    np.random.seed(99)
    long_tail_indices(targets, counts, 7)
    np.testing.assert_array_equal(np.random.random_sample(3), expected)


def test_indices_accept_lists_and_tensors():
    targets = _shuffled_targets(40, 4)
    counts = [40, 20, 10, 5]
    expected = reference_indices(targets, counts, 0)
    np.testing.assert_array_equal(long_tail_indices(targets.tolist(), counts, 0), expected)
    np.testing.assert_array_equal(long_tail_indices(torch.from_numpy(targets), counts, 0), expected)


def test_indices_depend_on_seed():
    targets = _shuffled_targets(100, 3)
    a = long_tail_indices(targets, [50, 20, 5], 0)
    b = long_tail_indices(targets, [50, 20, 5], 1)
    assert not np.array_equal(a, b)


def test_class_too_small_for_profile():
    targets = np.array([0] * 10 + [1] * 3)
    with pytest.raises(ConfigError, match="Class 1 has 3 training samples but the long-tail profile asks for 5"):
        long_tail_indices(targets, [10, 5], 0)
