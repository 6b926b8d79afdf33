import pytest

from fbl.engine.lr_schedule import step_lr_with_warmup


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
