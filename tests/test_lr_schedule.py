import math

import pytest

from fbl.lr_schedule import cosine_lr_with_warmup, lr_at, step_lr_with_warmup


def reference_lr(epoch, base):
    # The paper's CIFAR schedule written out for 200 epochs (epoch is 0-based, the rule uses epoch + 1).
    e = epoch + 1
    if e <= 5:
        return base * e / 5
    if e > 180:
        return base * 0.0001
    if e > 160:
        return base * 0.01
    return base


@pytest.mark.parametrize("epoch", list(range(200)))
def test_matches_reference_schedule_for_200_epochs(epoch):
    assert step_lr_with_warmup(epoch, 0.1, 200) == pytest.approx(reference_lr(epoch, 0.1), rel=1e-12)


def test_milestones_scale_with_run_length():
    # 100 epochs: decays after epochs 80 and 90 (0.8 and 0.9 of the run).
    assert step_lr_with_warmup(79, 0.1, 100) == pytest.approx(0.1)
    assert step_lr_with_warmup(80, 0.1, 100) == pytest.approx(0.001)
    assert step_lr_with_warmup(90, 0.1, 100) == pytest.approx(0.00001)


def test_no_warmup():
    assert step_lr_with_warmup(0, 0.2, 10, warmup_epochs=0) == pytest.approx(0.2)


def test_cosine_is_cosine_annealing_stepped_per_epoch():
    # RIDE's router stage: CosineAnnealingLR(T_max=5, eta_min=0) from 0.01, stepped after each of 5 epochs.
    expected = [0.01 * (1 + math.cos(math.pi * e / 5)) / 2 for e in range(5)]
    assert [cosine_lr_with_warmup(e, 0.01, 5) for e in range(5)] == pytest.approx(expected, rel=1e-12)
    assert lr_at("cosine", 3, 0.01, 5, 0, [0.8], [0.1]) == pytest.approx(expected[3], rel=1e-12)


def test_cosine_after_a_warm_up_anneals_over_the_remaining_epochs():
    assert [cosine_lr_with_warmup(e, 0.1, 12, 2) for e in range(2)] == pytest.approx([0.05, 0.1])
    assert cosine_lr_with_warmup(2, 0.1, 12, 2) == pytest.approx(0.1)
    assert cosine_lr_with_warmup(7, 0.1, 12, 2) == pytest.approx(0.05)  # half-way through the 10 cosine epochs


def test_step_is_the_default_schedule():
    assert lr_at("step", 170, 0.1, 200, 5, [0.8, 0.9], [0.01, 0.0001]) == pytest.approx(0.001)
