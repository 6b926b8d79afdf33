import math

import pytest
import torch

from fbl.label_shift import LabelPrior
from fbl.metrics import ClassMetrics


def test_per_class_group_accuracy_and_feature_norm_longhand():
    # 3 classes; train counts put class 0 in many (>100), class 1 in medium (20-100), class 2 in few (<20).
    counts = [500, 50, 5]
    logits = torch.tensor(
        [
            [5.0, 1.0, 0.0],  # y=0, correct
            [0.0, 5.0, 1.0],  # y=0, wrong (pred 1)
            [0.0, 5.0, 1.0],  # y=1, correct
            [1.0, 0.0, 5.0],  # y=2, correct
            [5.0, 0.0, 1.0],  # y=2, wrong (pred 0)
            [5.0, 0.0, 1.0],  # y=2, wrong
        ]
    )
    target = torch.tensor([0, 0, 1, 2, 2, 2])
    feats = torch.tensor([[3.0, 4.0], [0.0, 1.0], [6.0, 8.0], [1.0, 0.0], [0.0, 2.0], [0.0, 3.0]])
    m = ClassMetrics(3)
    m.update(logits[:4], target[:4], feats[:4])  # batching must not matter
    m.update(logits[4:], target[4:], feats[4:])
    r = m.compute(counts)
    assert r["top1"] == pytest.approx(100 * 3 / 6)
    assert r["per_class_acc"] == pytest.approx([50.0, 100.0, 100 / 3])
    assert r["many"] == pytest.approx(50.0)
    assert r["medium"] == pytest.approx(100.0)
    assert r["few"] == pytest.approx(100 / 3)
    assert r["per_class_feature_norm"] == pytest.approx([(5 + 1) / 2, 10.0, (1 + 2 + 3) / 3])
    # top-5 with 3 classes is top-3: always a hit.
    assert r["top5"] == pytest.approx(100.0)


def test_top5_counts_hits_in_first_five():
    logits = torch.arange(10.0).repeat(2, 1)  # ranking 9,8,7,6,5,...
    m = ClassMetrics(10)
    m.update(logits, torch.tensor([5, 4]))
    r = m.compute([200] * 10)
    assert r["top5"] == pytest.approx(50.0)
    assert r["top1"] == pytest.approx(0.0)


def test_empty_group_and_missing_class_are_none():
    m = ClassMetrics(2)
    m.update(torch.tensor([[1.0, 0.0]]), torch.tensor([0]))
    r = m.compute([1000, 500])
    assert r["medium"] is None and r["few"] is None
    assert r["per_class_acc"][1] is None
    assert not math.isnan(r["many"])


def test_expected_calibration_error_longhand():
    # Two samples: confidences p1 = softmax([2, 0])[0], p2 = softmax([0, 1])[1]; one right, one wrong.
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    target = torch.tensor([0, 0])
    p1 = math.exp(2) / (math.exp(2) + 1)  # ~0.881, bin 13 of 15 (0.8667, 0.9333]
    p2 = math.exp(1) / (math.exp(1) + 1)  # ~0.731, bin 10 of 15 (0.6667, 0.7333]
    expected = 100 * (0.5 * abs(1 - p1) + 0.5 * abs(0 - p2))
    m = ClassMetrics(2)
    m.update(logits[:1], target[:1])
    m.update(logits[1:], target[1:])
    assert m.compute([200, 200])["ece"] == pytest.approx(expected)


def test_ece_pools_samples_of_one_bin_before_taking_the_gap():
    # Same confidence, one right and one wrong: the bin's accuracy 0.5 is compared with p, not each sample.
    logits = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    m = ClassMetrics(2)
    m.update(logits, torch.tensor([0, 1]))
    p = math.e / (math.e + 1)
    assert m.compute([200, 200])["ece"] == pytest.approx(100 * abs(0.5 - p))


def test_state_tensor_round_trip_sums_like_an_all_reduce():
    a, b = ClassMetrics(3), ClassMetrics(3)
    a.update(torch.randn(5, 3), torch.tensor([0, 1, 2, 0, 1]), torch.randn(5, 4))
    b.update(torch.randn(4, 3), torch.tensor([2, 2, 1, 0]), torch.randn(4, 4))
    merged = ClassMetrics(3)
    merged.load_state_tensor(a.state_tensor() + b.state_tensor())
    assert merged.samples.tolist() == [2 + 1, 2 + 1, 1 + 2]
    assert merged.compute([200, 50, 5])["ece"] is not None


def _six_images():
    """Labels [0, 0, 1, 2, 2, 2], top-1 predictions [0, 1, 1, 2, 0, 0]."""
    logits = torch.tensor([[5.0, 1, 0], [0, 5, 1], [0, 5, 1], [1, 0, 5], [5, 0, 1], [5, 0, 1]])
    return logits, torch.tensor([0, 0, 1, 2, 2, 2])


def test_worst_harmonic_geometric_and_macro_f1_longhand():
    logits, target = _six_images()
    m = ClassMetrics(3)
    m.update(logits, target)
    r = m.compute([500, 50, 5])
    # per-class accuracy 50, 100, 100/3
    assert r["worst"] == pytest.approx(100 / 3)
    assert r["hmean"] == pytest.approx(3 / (1 / 50 + 1 / 100 + 3 / 100))  # = 50
    assert r["gmean"] == pytest.approx((50 * 100 * (100 / 3)) ** (1 / 3))
    # F1_c = 2 TP / (2 TP + FP + FN): class 0 TP 1 FP 2 FN 1; class 1 TP 1 FP 1 FN 0; class 2 TP 1 FP 0 FN 2
    f1 = [2 / (2 + 2 + 1), 2 / (2 + 1 + 0), 2 / (2 + 0 + 2)]
    assert r["macro_f1"] == pytest.approx(100 * sum(f1) / 3)


def test_a_class_scoring_zero_makes_harmonic_and_geometric_mean_zero():
    m = ClassMetrics(2)
    m.update(torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.tensor([0, 1]))
    r = m.compute([200, 200])
    assert r["worst"] == 0.0 and r["hmean"] == 0.0 and r["gmean"] == 0.0
    # class 0: F1 = 2*1 / (2*1 + 1 + 0); class 1: never predicted, F1 = 0
    assert r["macro_f1"] == pytest.approx(100 * (2 / 3 + 0) / 2)


def test_prior_corrected_hits_longhand():
    # Training counts 90/10; corrected for the uniform test prior, logits move by log(0.5/0.9), log(0.5/0.1).
    logits = torch.tensor([[3.0, 0.0], [0.5, 0.0], [1.0, 0.0]])
    target = torch.tensor([0, 0, 1])
    m = ClassMetrics(2, class_counts=[90, 10], priors=[LabelPrior("uniform")])
    m.update(logits, target)
    r = m.compute([90, 10])
    # uncorrected: every image predicted 0 -> class 0 2/2, class 1 0/1 -> uniform accuracy 50
    # corrected: [3-0.59, 1.61] -> 0 (right), [0.5-0.59, 1.61] -> 1 (wrong), [1-0.59, 1.61] -> 1 (right)
    assert r["test_priors"]["uniform"] == {"uncorrected": pytest.approx(50.0), "corrected": pytest.approx(75.0)}


def test_corrections_start_from_the_logits_given_as_correct_from():
    logits, target = torch.tensor([[1.0, 0.0]]), torch.tensor([1])
    m = ClassMetrics(2, class_counts=[90, 10], priors=[LabelPrior("uniform")])
    m.update(torch.tensor([[0.0, 9.0]]), target, correct_from=logits)  # top-1 from the first, correction from z
    r = m.compute([90, 10])
    assert r["top1"] == 100.0
    assert r["test_priors"]["uniform"]["corrected"] == pytest.approx(100.0)  # 1 - 0.59 < 0 + 1.61


def test_new_sums_add_up_like_an_all_reduce():
    logits, target = _six_images()
    a = ClassMetrics(3, class_counts=[500, 50, 5])
    b = ClassMetrics(3, class_counts=[500, 50, 5])
    whole = ClassMetrics(3, class_counts=[500, 50, 5])
    a.update(logits[:2], target[:2])
    b.update(logits[2:], target[2:])
    whole.update(logits, target)
    merged = ClassMetrics(3, class_counts=[500, 50, 5])
    merged.load_state_tensor(a.state_tensor() + b.state_tensor())
    assert merged.predicted.tolist() == [3, 2, 1]
    assert merged.compute([500, 50, 5]) == whole.compute([500, 50, 5])
