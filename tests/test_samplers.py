"""Samplers: draw frequencies against longhand expectations, determinism, argument checks.

Frequencies are checked with Pearson's chi-square goodness-of-fit test over 100k draws at a fixed
seed. A draw passes when p > 1e-3; each test also checks that a plausible wrong answer is rejected
(p < 1e-3), so the test has the power to catch a sampler that ignores or misapplies the weights.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from fbl.class_weights import effective_number_weights, inverse_frequency_weights, uniform_weights
from fbl.errors import ConfigError
from fbl.samplers import ClassAwareSampler, ClassWeightedSampler

COUNTS = [500, 200, 80, 30, 10]
DRAWS = 100_000
P_MIN = 1e-3


def _labels(counts=COUNTS, seed=0):
    # Shuffled so a sampler that indexed weights by position instead of by label would fail.
    ordered = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    return ordered[torch.randperm(len(ordered), generator=torch.Generator().manual_seed(seed))]


def _chi2_p(observed, expected_prob) -> float:
    """Pearson chi-square p-value, written out: p = Q(df/2, X^2/2) with Q the upper regularised gamma."""
    observed = torch.as_tensor(observed, dtype=torch.float64)
    expected = torch.as_tensor(expected_prob, dtype=torch.float64) * observed.sum()
    stat = ((observed - expected) ** 2 / expected).sum()
    df = torch.tensor((observed.numel() - 1) / 2, dtype=torch.float64)
    return float(torch.special.gammaincc(df, stat / 2))


def _class_freq(sampler, labels):
    return torch.bincount(labels[sampler.indices()], minlength=len(COUNTS))


def test_chi2_helper_matches_known_quantile():
    # chi-square with 4 degrees of freedom: the 0.95 quantile is 9.4877.
    stat_target = 9.4877
    expected = torch.full((5,), 0.2, dtype=torch.float64)
    # Build observations with X^2 = stat_target for N = 1000 by putting all deviation in two cells.
    n = 1000.0
    d = math.sqrt(stat_target * 200 / 2)
    observed = torch.tensor([200 + d, 200 - d, 200, 200, 200], dtype=torch.float64)
    assert observed.sum() == pytest.approx(n)
    assert _chi2_p(observed, expected) == pytest.approx(0.05, abs=1e-4)


def test_class_balanced_weights_give_uniform_class_frequencies():
    labels = _labels()
    sampler = ClassWeightedSampler(labels, inverse_frequency_weights(COUNTS, power=1.0), num_samples=DRAWS, seed=1)
    freq = _class_freq(sampler, labels)
    uniform = [1 / len(COUNTS)] * len(COUNTS)
    assert _chi2_p(freq, uniform) > P_MIN
    assert (freq.double() / DRAWS - 0.2).abs().max() < 0.01  # also: every class within 1 point of 20%
    instance = [n / sum(COUNTS) for n in COUNTS]
    assert _chi2_p(freq, instance) < P_MIN


def test_square_root_weights_give_sqrt_class_frequencies():
    labels = _labels()
    sampler = ClassWeightedSampler(labels, inverse_frequency_weights(COUNTS, power=0.5), num_samples=DRAWS, seed=2)
    freq = _class_freq(sampler, labels)
    sqrt_total = sum(math.sqrt(n) for n in COUNTS)
    expected = [math.sqrt(n) / sqrt_total for n in COUNTS]
    assert _chi2_p(freq, expected) > P_MIN
    assert _chi2_p(freq, [0.2] * 5) < P_MIN
    assert _chi2_p(freq, [n / sum(COUNTS) for n in COUNTS]) < P_MIN


def test_effective_number_weights_give_n_times_w_frequencies():
    beta = 0.99  # small enough that the result is neither uniform nor proportional to n
    labels = _labels()
    sampler = ClassWeightedSampler(labels, effective_number_weights(COUNTS, beta), num_samples=DRAWS, seed=3)
    freq = _class_freq(sampler, labels)
    mass = [n * (1 - beta) / (1 - beta**n) for n in COUNTS]
    expected = [m / sum(mass) for m in mass]
    assert _chi2_p(freq, expected) > P_MIN
    assert _chi2_p(freq, [0.2] * 5) < P_MIN


def test_uniform_weights_give_instance_frequencies():
    labels = _labels()
    sampler = ClassWeightedSampler(labels, uniform_weights(COUNTS), num_samples=DRAWS, seed=4)
    freq = _class_freq(sampler, labels)
    assert _chi2_p(freq, [n / sum(COUNTS) for n in COUNTS]) > P_MIN
    assert _chi2_p(freq, [0.2] * 5) < P_MIN


def test_samples_within_a_class_are_drawn_uniformly():
    labels = _labels()
    sampler = ClassWeightedSampler(labels, inverse_frequency_weights(COUNTS), num_samples=DRAWS, seed=5)
    drawn = sampler.indices()
    tail = torch.nonzero(labels == 4).flatten()  # the 10 samples of the smallest class
    per_sample = torch.stack([(drawn == i).sum() for i in tail])
    assert per_sample.sum() > 15_000
    assert _chi2_p(per_sample, [0.1] * 10) > P_MIN


def test_zero_weight_class_is_never_drawn():
    labels = _labels()
    sampler = ClassWeightedSampler(labels, [1.0, 1.0, 0.0, 1.0, 1.0], num_samples=5_000)
    assert not (labels[sampler.indices()] == 2).any()


def test_weighted_sampler_is_deterministic_per_seed_and_epoch():
    labels = _labels()
    weights = inverse_frequency_weights(COUNTS)
    a = ClassWeightedSampler(labels, weights, seed=7)
    b = ClassWeightedSampler(labels, weights, seed=7)
    assert list(a) == list(b)
    assert list(a) == list(a)  # iterating again without set_epoch repeats the epoch
    epoch0 = list(a)
    a.set_epoch(3)
    b.set_epoch(3)
    assert list(a) == list(b)
    assert list(a) != epoch0
    a.set_epoch(0)
    assert list(a) == epoch0  # resuming at an epoch reproduces it
    assert list(ClassWeightedSampler(labels, weights, seed=8)) != epoch0


def test_adjacent_seed_and_epoch_do_not_alias():
    labels = _labels()
    weights = inverse_frequency_weights(COUNTS)
    s0 = ClassWeightedSampler(labels, weights, seed=0)
    s0.set_epoch(1)
    s1 = ClassWeightedSampler(labels, weights, seed=1)
    assert list(s0) != list(s1)


def test_weighted_sampler_yields_ints_and_has_length():
    labels = _labels()
    sampler = ClassWeightedSampler(labels, uniform_weights(COUNTS))
    drawn = list(sampler)
    assert len(sampler) == len(labels) == len(drawn)
    assert all(type(i) is int for i in drawn)
    assert 0 <= min(drawn) and max(drawn) < len(labels)
    assert len(ClassWeightedSampler(labels, uniform_weights(COUNTS), num_samples=37)) == 37


def test_accepts_list_and_numpy_labels():
    labels = _labels()
    weights = inverse_frequency_weights(COUNTS)
    reference = list(ClassWeightedSampler(labels, weights))
    assert list(ClassWeightedSampler(labels.tolist(), weights)) == reference
    assert list(ClassWeightedSampler(labels.numpy(), weights.tolist())) == reference


def test_weighted_sampler_drives_a_dataloader():
    labels = _labels()
    dataset = TensorDataset(torch.arange(len(labels)), labels)
    sampler = ClassWeightedSampler(labels, inverse_frequency_weights(COUNTS), num_samples=64)
    batches = list(DataLoader(dataset, batch_size=16, sampler=sampler))
    assert len(batches) == 4
    index = torch.cat([b[0] for b in batches])
    assert torch.equal(index, sampler.indices())
    assert torch.equal(torch.cat([b[1] for b in batches]), labels[index])


@pytest.mark.parametrize(
    "labels, weights, kwargs, match",
    [
        ([], [1.0], {}, "empty"),
        ([0, 1, 1], [1.0, 1.0], {"num_samples": 0}, "num_samples"),
        ([0, 1, 1], [1.0, 1.0], {"num_samples": -3}, "num_samples"),
        ([0, 1, 1], [1.0, 1.0, 1.0], {}, "one weight per class"),
        ([0, 1, 2], [1.0, 1.0], {}, "one weight per class"),
        ([0, 1, 1], [1.0, -0.5], {}, "non-negative"),
        ([0, 1, 1], [1.0, float("nan")], {}, "non-negative"),
        ([0, 1, 1], [0.0, 0.0], {}, "positive weight"),
        ([0, -1, 1], [1.0, 1.0], {}, ">= 0"),
        ([0.5, 1.0], [1.0, 1.0], {}, "integer"),
        ([[0, 1]], [1.0, 1.0], {}, "1-D"),
        ([0, 1, 1], [1.0, 1.0], {"seed": -1}, "seed"),
    ],
)
def test_weighted_sampler_rejects_bad_arguments(labels, weights, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        ClassWeightedSampler(labels, weights, **kwargs)


def test_set_epoch_rejects_negative_epoch():
    with pytest.raises(ConfigError, match="epoch"):
        ClassWeightedSampler([0, 1], [1.0, 1.0]).set_epoch(-1)


# Class-aware sampling -------------------------------------------------------------------------

AWARE_COUNTS = [7, 3, 1, 5]  # class 2 has fewer samples than k, so it must repeat within a run


def _runs(seq, k):
    return [seq[i : i + k] for i in range(0, len(seq), k)]


@pytest.mark.parametrize("k", [1, 2, 4])
def test_class_aware_rounds_are_exactly_balanced_in_runs_of_k(k):
    labels = _labels(AWARE_COUNTS)
    num_classes = len(AWARE_COUNTS)
    rounds = 25
    sampler = ClassAwareSampler(labels, samples_per_class=k, num_samples=rounds * num_classes * k, seed=3)
    drawn_classes = labels[sampler.indices()].tolist()
    assert len(drawn_classes) == rounds * num_classes * k
    for run in _runs(drawn_classes, k):
        assert len(set(run)) == 1, run  # k consecutive draws from one class
    for r in range(rounds):
        block = drawn_classes[r * num_classes * k : (r + 1) * num_classes * k]
        assert sorted(block) == sorted(list(range(num_classes)) * k)  # every class exactly k times
    orders = {
        tuple(run[0] for run in _runs(drawn_classes[r * num_classes * k : (r + 1) * num_classes * k], k))
        for r in range(rounds)
    }
    assert len(orders) > 1  # the class order is reshuffled per round


def test_class_aware_uses_each_sample_once_before_repeating():
    # A class's draws, cut into blocks of its size, are each a permutation of the class's samples.
    labels = _labels(AWARE_COUNTS)
    sampler = ClassAwareSampler(labels, samples_per_class=4, num_samples=4 * 4 * 35, seed=11)
    drawn = sampler.indices().tolist()
    for c, n in enumerate(AWARE_COUNTS):
        members = sorted(torch.nonzero(labels == c).flatten().tolist())
        of_class = [i for i in drawn if labels[i] == c]
        assert len(of_class) == 4 * 35
        full = len(of_class) // n * n
        for start in range(0, full, n):
            assert sorted(of_class[start : start + n]) == members
        if n > 2:
            assert of_class[:n] != of_class[n : 2 * n]  # and reshuffled, not replayed


def test_class_aware_default_length_truncation_and_ints():
    labels = _labels(AWARE_COUNTS)
    sampler = ClassAwareSampler(labels)
    drawn = list(sampler)
    assert len(sampler) == len(drawn) == sum(AWARE_COUNTS)
    assert all(type(i) is int for i in drawn)
    short = ClassAwareSampler(labels, samples_per_class=4, num_samples=10)
    assert len(list(short)) == 10
    classes = labels[short.indices()].tolist()
    assert len(set(classes[:4])) == 1 and len(set(classes[4:8])) == 1 and len(set(classes[8:])) == 1


def test_class_aware_uses_only_present_classes():
    labels = torch.tensor([0, 0, 0, 2, 2, 5])
    sampler = ClassAwareSampler(labels, samples_per_class=1, num_samples=30, seed=0)
    assert sorted(labels[sampler.indices()].tolist()) == [0] * 10 + [2] * 10 + [5] * 10


def test_class_aware_is_deterministic_per_seed_and_epoch():
    labels = _labels(AWARE_COUNTS)
    a = ClassAwareSampler(labels, seed=4)
    b = ClassAwareSampler(labels, seed=4)
    epoch0 = list(a)
    assert epoch0 == list(b) == list(a)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b) != epoch0
    a.set_epoch(0)
    assert list(a) == epoch0
    assert list(ClassAwareSampler(labels, seed=5)) != epoch0


@pytest.mark.parametrize(
    "labels, kwargs, match",
    [
        ([], {}, "empty"),
        ([0, 1], {"samples_per_class": 0}, "samples_per_class"),
        ([0, 1], {"samples_per_class": 1.5}, "samples_per_class"),
        ([0, 1], {"num_samples": 0}, "num_samples"),
        (np.array([0, -2]), {}, ">= 0"),
    ],
)
def test_class_aware_rejects_bad_arguments(labels, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        ClassAwareSampler(labels, **kwargs)
