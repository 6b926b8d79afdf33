import torch

from fbl.data import SHOT_THRESHOLDS, long_tail_counts, shot_groups


def test_boundaries():
    # many: n > 100, medium: 20 <= n <= 100, few: n < 20
    groups = shot_groups([101, 100, 20, 19, 5000, 1])
    assert groups == {"many": [0, 4], "medium": [1, 2], "few": [3, 5]}
    assert SHOT_THRESHOLDS == (20, 100)


def test_empty_groups_are_present():
    assert shot_groups([500, 400]) == {"many": [0, 1], "medium": [], "few": []}


def test_tensor_counts():
    assert shot_groups(torch.tensor([150, 50, 5])) == {"many": [0], "medium": [1], "few": [2]}


def test_cifar100_lt_if100_is_35_35_30():
    # The split every CIFAR-100-LT (imbalance 100) paper reports.
    groups = shot_groups(long_tail_counts(500, 100, "exp", 0.01))
    assert groups["many"] == list(range(0, 35))
    assert groups["medium"] == list(range(35, 70))
    assert groups["few"] == list(range(70, 100))


def test_cifar10_lt_if100():
    groups = shot_groups(long_tail_counts(5000, 10, "exp", 0.01))
    assert groups == {"many": list(range(8)), "medium": [8, 9], "few": []}
