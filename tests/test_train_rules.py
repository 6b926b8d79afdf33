"""Train rules: each name maps to the sampler / loss weights written out longhand here."""

from __future__ import annotations

import math

import pytest
import torch

from fbl.errors import ConfigError
from fbl.samplers import ClassAwareSampler, ClassWeightedSampler
from fbl.train_rules import (
    ResolvedRule,
    TrainRule,
    check_weighting,
    get_train_rule,
    list_train_rules,
    register_train_rule,
    resolve_train_rule,
)

COUNTS = [100, 40, 10, 4]
BETA = 0.999
LABELS = torch.repeat_interleave(torch.arange(len(COUNTS)), torch.tensor(COUNTS))


def _normalised(raw):
    return torch.tensor([w / sum(raw) * len(raw) for w in raw], dtype=torch.float64)


INVERSE = _normalised([1 / n for n in COUNTS])
SQRT = _normalised([1 / math.sqrt(n) for n in COUNTS])
EFFECTIVE = _normalised([(1 - BETA) / (1 - BETA**n) for n in COUNTS])


def _resolve(name, **kwargs):
    kwargs.setdefault("total_epochs", 200)
    kwargs.setdefault("beta", BETA)
    return resolve_train_rule(name, COUNTS, LABELS, **kwargs)


def test_list_train_rules():
    assert list_train_rules() == sorted(
        [
            "none",
            "balanced-rs",
            "effective-number-rs",
            "class-aware",
            "sqrt-rs",
            "balanced-rw",
            "effective-number-rw",
            "drw",
        ]
    )


@pytest.mark.parametrize(
    "alias, canonical",
    [
        ("None", "none"),
        (None, "none"),
        ("BalancedRS", "balanced-rs"),
        ("EffectNumRS", "effective-number-rs"),
        ("ClassAware", "class-aware"),
        ("SquareRootRS", "sqrt-rs"),
        ("sqrt", "sqrt-rs"),
        ("BalancedRW", "balanced-rw"),
        ("EffectNumRW", "effective-number-rw"),
        ("DRW", "drw"),
        ("BALANCED-RS", "balanced-rs"),
        ("balancedrs", "balanced-rs"),
        ("class_aware", "class-aware"),
        (" Effective-Number-RW ", "effective-number-rw"),
    ],
)
def test_names_and_seed_aliases(alias, canonical):
    assert get_train_rule(alias).name == canonical
    assert _resolve(alias).name == canonical


def test_none_is_plain_shuffle_and_unweighted():
    rule = _resolve("none")
    assert rule.sampler is None and rule.class_weight is None and rule.drw_epoch is None
    assert rule.weight_at(0) is None and rule.weight_at(199) is None


@pytest.mark.parametrize(
    "name, expected",
    [("balanced-rs", INVERSE), ("sqrt-rs", SQRT), ("effective-number-rs", EFFECTIVE)],
)
def test_resampling_rules_build_a_class_weighted_sampler(name, expected):
    rule = _resolve(name, seed=5)
    assert isinstance(rule.sampler, ClassWeightedSampler)
    torch.testing.assert_close(rule.sampler.class_weights, expected, rtol=1e-12, atol=0)
    assert rule.sampler.seed == 5 and len(rule.sampler) == len(LABELS)
    assert rule.class_weight is None and rule.drw_epoch is None
    assert rule.weight_at(199) is None


def test_class_aware_rule_builds_class_aware_sampler():
    rule = _resolve("ClassAware", samples_per_class=3, seed=2)
    assert isinstance(rule.sampler, ClassAwareSampler)
    assert rule.sampler.samples_per_class == 3 and rule.sampler.seed == 2
    assert rule.class_weight is None and rule.drw_epoch is None


def test_sampler_seed_reaches_the_draws():
    a, b = _resolve("balanced-rs", seed=9).sampler, _resolve("balanced-rs", seed=9).sampler
    assert list(a) == list(b)
    assert list(a) != list(_resolve("balanced-rs", seed=10).sampler)


@pytest.mark.parametrize("name, expected", [("balanced-rw", INVERSE), ("effective-number-rw", EFFECTIVE)])
def test_reweighting_rules_weight_the_loss_from_the_start(name, expected):
    rule = _resolve(name)
    assert rule.sampler is None and rule.drw_epoch is None
    torch.testing.assert_close(rule.class_weight, expected, rtol=1e-12, atol=0)
    assert rule.class_weight.dtype == torch.float64
    assert rule.class_weight.sum().item() == pytest.approx(len(COUNTS))
    assert rule.weight_at(0) is rule.class_weight


def test_reweighting_rules_do_not_need_labels():
    rule = resolve_train_rule("balanced-rw", COUNTS, total_epochs=10)
    torch.testing.assert_close(rule.class_weight, INVERSE, rtol=1e-12, atol=0)


def test_drw_defers_effective_number_weights_to_epoch_160_of_200():
    rule = _resolve("DRW")
    assert rule.sampler is None and rule.drw_epoch == 160
    torch.testing.assert_close(rule.class_weight, EFFECTIVE, rtol=1e-12, atol=0)
    assert rule.weight_at(0) is None and rule.weight_at(159) is None
    torch.testing.assert_close(rule.weight_at(160), EFFECTIVE, rtol=1e-12, atol=0)
    torch.testing.assert_close(rule.weight_at(199), EFFECTIVE, rtol=1e-12, atol=0)


@pytest.mark.parametrize("total_epochs, expected", [(200, 160), (90, 72), (100, 80), (13, 10), (1, 0), (2, 1)])
def test_drw_default_epoch_scales_with_run_length(total_epochs, expected):
    # round(0.8 * E): 72 = round(72.0), 10 = round(10.4); capped at E - 1 for tiny smoke runs.
    assert _resolve("drw", total_epochs=total_epochs).drw_epoch == expected


def test_explicit_drw_epoch_overrides_default():
    assert _resolve("drw", drw_epoch=5).drw_epoch == 5
    assert _resolve("drw", total_epochs=90, drw_epoch=0).drw_epoch == 0


def test_drw_epoch_defers_the_weights_of_any_other_rule():
    rule = _resolve("balanced-rw", drw_epoch=10)
    assert rule.drw_epoch == 10 and rule.weighting == "inverse-frequency"
    assert rule.weight_at(9) is None
    torch.testing.assert_close(rule.weight_at(10), INVERSE, rtol=1e-12, atol=0)
    with pytest.raises(ConfigError, match="never switch on"):
        _resolve("none", drw_epoch=10_000)


def test_drw_epoch_defers_the_weights_a_cb_loss_names():
    rule = _resolve("none", drw_epoch=3, loss_weighting="effective-number")
    assert rule.drw_epoch == 3 and rule.weighting == "effective-number"
    assert rule.weight_at(2) is None
    torch.testing.assert_close(rule.weight_at(3), EFFECTIVE, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", ["none", "balanced-rs", "class-aware"])
def test_drw_epoch_with_no_loss_weights_to_defer_is_one_line_naming_the_drw_rule(name):
    # Nothing weights the loss: a drw_epoch would have to invent a weighting, so it is refused.
    with pytest.raises(ConfigError) as info:
        _resolve(name, drw_epoch=3)
    message = str(info.value)
    assert message.startswith(f"drw_epoch 3 defers the loss's class weights, but neither train rule {name!r}")
    assert "--train_rule drw" in message and "\n" not in message


def test_unknown_rule_lists_valid_names():
    with pytest.raises(ConfigError, match="Unknown train rule 'focal-rs'") as info:
        _resolve("focal-rs")
    for name in list_train_rules():
        assert name in str(info.value)


@pytest.mark.parametrize("drw_epoch", [200, 250])
def test_drw_epoch_at_or_after_the_end_is_rejected(drw_epoch):
    with pytest.raises(ConfigError, match="DRW would never switch on"):
        _resolve("drw", drw_epoch=drw_epoch)


def test_negative_drw_epoch_is_rejected():
    with pytest.raises(ConfigError, match="drw_epoch"):
        _resolve("drw", drw_epoch=-1)


@pytest.mark.parametrize("beta", [0.0, 1.0, -0.5, 1.5])
@pytest.mark.parametrize("name", ["effective-number-rs", "drw", "none"])
def test_beta_outside_open_unit_interval_is_rejected(name, beta):
    with pytest.raises(ConfigError, match="beta"):
        _resolve(name, beta=beta)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"total_epochs": 0}, "total_epochs"), ({"samples_per_class": 0}, "samples_per_class")],
)
def test_other_bad_options_are_rejected(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        _resolve("class-aware", **kwargs)


def test_bad_class_counts_are_rejected():
    with pytest.raises(ConfigError):
        resolve_train_rule("balanced-rw", [10, 0, 3], total_epochs=10)


def test_resampling_without_labels_or_with_mismatched_labels_is_a_bug():
    with pytest.raises(ValueError, match="labels"):
        resolve_train_rule("balanced-rs", COUNTS, total_epochs=10)
    with pytest.raises(ValueError, match="do not match"):
        resolve_train_rule("class-aware", COUNTS, LABELS[1:], total_epochs=10)


def test_resolved_rule_is_a_plain_record():
    rule = _resolve("drw")
    assert isinstance(rule, ResolvedRule)
    assert "drw" in repr(rule)


@pytest.mark.parametrize(
    "name, sample_weighting, class_aware, loss_weighting, deferred",
    [
        ("none", None, False, None, False),
        ("balanced-rs", "inverse-frequency", False, None, False),
        ("sqrt-rs", "square-root", False, None, False),
        ("effective-number-rs", "effective-number", False, None, False),
        ("class-aware", None, True, None, False),
        ("balanced-rw", None, False, "inverse-frequency", False),
        ("effective-number-rw", None, False, "effective-number", False),
        ("drw", None, False, "effective-number", True),
    ],
)
def test_each_rule_is_data(name, sample_weighting, class_aware, loss_weighting, deferred):
    rule = get_train_rule(name)
    assert issubclass(rule, TrainRule) and rule.name == name and rule.__doc__
    assert (rule.sample_weighting, rule.class_aware, rule.loss_weighting, rule.deferred) == (
        sample_weighting,
        class_aware,
        loss_weighting,
        deferred,
    )


def test_registering_a_rule_refuses_duplicates_and_unknown_weightings():
    class Twice(TrainRule):
        """A second 'DRW'."""

    with pytest.raises(ValueError, match="registered twice"):
        register_train_rule("deferred", "drw")(Twice)

    class Typo(TrainRule):
        """Misspelt weighting."""

        loss_weighting = "effective-numbers"

    with pytest.raises(ValueError, match="unknown weighting 'effective-numbers'"):
        register_train_rule("typo-rw")(Typo)
    assert "deferred" not in list_train_rules() and "typo-rw" not in list_train_rules()


@pytest.mark.parametrize(
    "rule, loss_weighting, drw_epoch, epochs",
    [
        ("none", None, None, 1),
        ("balanced-rs", None, None, 10),
        ("none", "effective-number", 3, 10),
        ("balanced-rw", None, 0, 10),
        ("DRW", None, 9, 10),
        ("drw", None, None, 10),
        ("class-aware", "effective-number", None, 10),
    ],
)
def test_check_weighting_accepts_settings_that_make_sense(rule, loss_weighting, drw_epoch, epochs):
    assert check_weighting(rule, loss_weighting, drw_epoch, epochs) is None


@pytest.mark.parametrize(
    "rule, loss_weighting, drw_epoch, epochs, message",
    [
        (
            "balanced-rw",
            "effective-number",
            None,
            10,
            "Train rule 'balanced-rw' re-weights the loss by inverse-frequency and the loss is already weighted by "
            "effective-number: use one of them, not both",
        ),
        (
            "drw",
            "effective-number",
            5,
            10,
            "Train rule 'drw' re-weights the loss by effective-number and the loss is already weighted by "
            "effective-number: use one of them, not both",
        ),
        ("drw", None, 10, 10, "Expected 0 <= drw_epoch < epochs (10) but got 10: DRW would never switch on"),
        ("drw", None, -1, 10, "Expected drw_epoch to be a 0-based epoch >= 0 but got -1"),
        ("drw", None, 2.5, 10, "Expected drw_epoch to be a 0-based epoch >= 0 but got 2.5"),
        (
            "none",
            None,
            4,
            10,
            "drw_epoch 4 defers the loss's class weights, but neither train rule 'none' nor the loss weights any "
            "class: use --train_rule drw (effective-number weights from drw_epoch on), or drop --drw-epoch",
        ),
        ("DWR", None, None, 10, "Unknown train rule 'DWR' (did you mean 'drw'?)"),
    ],
)
def test_check_weighting_refuses_in_one_line(rule, loss_weighting, drw_epoch, epochs, message):
    with pytest.raises(ConfigError) as info:
        check_weighting(rule, loss_weighting, drw_epoch, epochs)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_a_cb_loss_under_a_reweighting_rule_is_refused_when_resolving_too():
    with pytest.raises(ConfigError, match="not both"):
        _resolve("effective-number-rw", loss_weighting="effective-number")


@pytest.mark.parametrize("name", ["none", "balanced-rs", "class-aware"])
def test_a_cb_loss_is_weighted_from_the_start_under_a_rule_that_does_not_weight(name):
    rule = _resolve(name, loss_weighting="effective-number")
    assert rule.drw_epoch is None and rule.weighting == "effective-number"
    torch.testing.assert_close(rule.weight_at(0), EFFECTIVE, rtol=1e-12, atol=0)
