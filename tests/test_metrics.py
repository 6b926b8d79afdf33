import math

import pytest
import torch

from fbl.metrics import ClassMetrics


def test_per_class_group_accuracy_and_feature_norm_longhand():
    # 3 classes; train counts put class 0 in many (>100), class 1 in medium (20-100), class 2 in few (<20).
    counts = [500, 50, 5]
    logits = torch.tensor([
        [5.0, 1.0, 0.0],  # y=0, correct
        [0.0, 5.0, 1.0],  # y=0, wrong (pred 1)
        [0.0, 5.0, 1.0],  # y=1, correct
        [1.0, 0.0, 5.0],  # y=2, correct
        [5.0, 0.0, 1.0],  # y=2, wrong (pred 0)
        [5.0, 0.0, 1.0],  # y=2, wrong
    ])
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
