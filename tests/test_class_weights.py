import pytest
import torch

from fbl.class_weights import (
    effective_number_weights,
    inverse_frequency_weights,
    resolve_class_weight,
    uniform_weights,
    weights_for,
)
from fbl.errors import ConfigError

COUNTS = [5000, 1200, 300, 40, 7, 1]


def effective_number_longhand(counts, beta):
    raw = [(1.0 - beta) / (1.0 - beta**n) for n in counts]
    return [w * len(counts) / sum(raw) for w in raw]


def inverse_frequency_longhand(counts, power):
    raw = [n ** (-power) for n in counts]
    return [w * len(counts) / sum(raw) for w in raw]


@pytest.mark.parametrize("beta", [0.9, 0.99, 0.999, 0.9999])
def test_effective_number_weights(beta):
    got = effective_number_weights(COUNTS, beta=beta)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, torch.tensor(effective_number_longhand(COUNTS, beta), dtype=torch.float64))
    assert got.sum().item() == pytest.approx(len(COUNTS))


def test_effective_number_default_beta_and_tensor_counts():
    want = torch.tensor(effective_number_longhand(COUNTS, 0.9999), dtype=torch.float64)
    torch.testing.assert_close(effective_number_weights(torch.tensor(COUNTS)), want)


@pytest.mark.parametrize("power", [0.0, 0.5, 1.0, 2.0])
def test_inverse_frequency_weights(power):
    got = inverse_frequency_weights(COUNTS, power=power)
    torch.testing.assert_close(got, torch.tensor(inverse_frequency_longhand(COUNTS, power), dtype=torch.float64))


def test_uniform_weights():
    assert torch.equal(uniform_weights(COUNTS), torch.ones(len(COUNTS), dtype=torch.float64))


def test_balanced_counts_give_uniform_weights():
    for weights in (effective_number_weights([9, 9, 9]), inverse_frequency_weights([9, 9, 9])):
        torch.testing.assert_close(weights, torch.ones(3, dtype=torch.float64))


@pytest.mark.parametrize("beta", [0.0, 1.0, -0.5, 1.5])
def test_beta_outside_the_open_unit_interval_is_refused(beta):
    with pytest.raises(ConfigError, match=r"Expected beta in the open interval \(0, 1\)"):
        effective_number_weights(COUNTS, beta=beta)


def test_negative_power_is_refused():
    with pytest.raises(ConfigError, match="Expected power >= 0 but got -1"):
        inverse_frequency_weights(COUNTS, power=-1)


@pytest.mark.parametrize("fn", [effective_number_weights, inverse_frequency_weights, uniform_weights])
def test_bad_counts_name_the_class(fn):
    with pytest.raises(ConfigError, match="positive count for class 1"):
        fn([4, 0, 2])


@pytest.mark.parametrize(
    "weighting, longhand",
    [
        ("effective-number", effective_number_longhand(COUNTS, 0.999)),
        ("inverse-frequency", inverse_frequency_longhand(COUNTS, 1.0)),
        ("square-root", inverse_frequency_longhand(COUNTS, 0.5)),
    ],
)
def test_named_weightings(weighting, longhand):
    torch.testing.assert_close(weights_for(weighting, COUNTS, beta=0.999), torch.tensor(longhand, dtype=torch.float64))


def test_unknown_weighting_lists_the_names():
    with pytest.raises(ConfigError, match="Unknown weighting 'cb'; choose one of: effective-number, inverse-freq"):
        weights_for("cb", COUNTS)


@pytest.mark.parametrize("source", ["rule_weighting", "loss_weighting"])
def test_resolve_class_weight_takes_the_rule_or_the_loss_weighting(source):
    got = resolve_class_weight(COUNTS, beta=0.99, **{source: "effective-number"})
    torch.testing.assert_close(got, torch.tensor(effective_number_longhand(COUNTS, 0.99), dtype=torch.float64))


def test_resolve_class_weight_without_a_weighting_is_none():
    assert resolve_class_weight(COUNTS, rule="balanced-rs") is None


def test_resolve_class_weight_refuses_two_sources_in_one_line():
    with pytest.raises(ConfigError) as info:
        resolve_class_weight(
            COUNTS, rule="balanced-rw", rule_weighting="inverse-frequency", loss_weighting="effective-number"
        )
    assert str(info.value) == (
        "Train rule 'balanced-rw' re-weights the loss by inverse-frequency and the loss is already weighted by "
        "effective-number: use one of them, not both"
    )
