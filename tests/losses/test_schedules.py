import math

import pytest

from fbl.errors import ConfigError
from fbl.losses import FeatureBalancedLoss, alpha_at, list_schedules


def ramp(total):
    """The reference divides by E - 10; runs of ten epochs or fewer ramp over E - 1 (at least 1)."""
    return total - 10 if total > 10 else max(total - 1, 1)


LONGHAND = {
    "parabolic": lambda e, E: (e / (0.95 * E)) ** 2,
    "parabolic-literal": lambda e, E: (e / ramp(E)) ** 2,
    "parabolic-clamped": lambda e, E: min(1.0, (e / ramp(E)) ** 2),
    "linear": lambda e, E: e / E,
    "linear-decreasing": lambda e, E: (E - e) / E,
    "cosine": lambda e, E: 1.0 - math.cos(math.pi * e / (2 * E)),
    "sine": lambda e, E: math.sin(math.pi * e / (2 * E)),
    "parabolic-decreasing": lambda e, E: 1.0 - (e / E) ** 2,
    "constant": lambda e, E: 1.0,
}


def test_every_schedule_has_a_longhand_here():
    assert sorted(LONGHAND) == list_schedules()


@pytest.mark.parametrize("name", sorted(LONGHAND))
@pytest.mark.parametrize("total", [200, 90, 11, 10, 3, 1])
def test_schedule_values(name, total):
    crit = FeatureBalancedLoss([30, 3], schedule=name, total_epochs=total)
    for epoch in sorted({0, 1, total // 2, max(total - 10, 0), total - 1}):
        want = LONGHAND[name](epoch, total)
        assert alpha_at(name, epoch, total) == pytest.approx(want, rel=1e-12, abs=1e-15)
        crit.set_epoch(epoch)
        assert crit.alpha == pytest.approx(want, rel=1e-12, abs=1e-15)


def test_paper_values_of_the_default_curriculum():
    assert alpha_at("parabolic", 0, 200) == 0.0
    assert alpha_at("parabolic", 190, 200) == 1.0
    assert alpha_at("parabolic", 199, 200) == pytest.approx((199 / 190) ** 2)
    assert alpha_at("parabolic-clamped", 199, 200) == 1.0


def test_at_200_epochs_the_default_is_the_papers_curve_to_the_last_bit():
    for epoch in range(200):
        assert alpha_at("parabolic", epoch, 200) == (epoch / (200 - 10)) ** 2


def test_the_literal_curve_overshoots_short_runs_and_the_default_does_not():
    assert alpha_at("parabolic-literal", 11, 12) == pytest.approx(30.25)
    assert alpha_at("parabolic", 11, 12) == pytest.approx((11 / 11.4) ** 2)


@pytest.mark.parametrize("alias", ["parabolic-proportional", "parabolic_scaled"])
def test_old_and_descriptive_names_of_the_default(alias):
    assert alpha_at(alias, 57, 60) == alpha_at("parabolic", 57, 60)


def test_names_are_case_insensitive():
    assert alpha_at("Parabolic", 95, 200) == pytest.approx(0.25)


def test_bad_arguments():
    with pytest.raises(ConfigError, match="Unknown alpha schedule 'exp'.*; choose one of: constant, cosine"):
        alpha_at("exp", 0, 10)
    with pytest.raises(ConfigError, match="Expected total_epochs >= 1 but got 0"):
        alpha_at("linear", 0, 0)
    with pytest.raises(ConfigError, match="Expected a 0-based epoch >= 0 but got -2"):
        alpha_at("linear", -2, 10)
