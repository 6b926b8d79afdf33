"""The one Registry class: name normalisation, the decorator, duplicates, and "did you mean"."""

import pytest

from fbl.data import DATASETS
from fbl.errors import ConfigError
from fbl.losses import LOSSES, SCHEDULES
from fbl.models import MODELS
from fbl.registry import Registry, normalize_name
from fbl.train_rules import TRAIN_RULES


@pytest.mark.parametrize(
    "spelling, key",
    [(" Parabolic_Clamped ", "parabolic-clamped"), ("digits cnn", "digits-cnn"), ("CIFAR10-LT", "cifar10-lt")],
)
def test_normalize_name(spelling, key):
    assert normalize_name(spelling) == key


def test_the_decorator_registers_under_the_name_and_aliases_and_returns_the_item():
    things = Registry("thing")

    @things.decorator("Big_One", "large")
    def big():
        return 1

    assert big() == 1 and things.get("big-one") is big and things.get("LARGE") is big
    assert things.canonical("big one") == "Big_One" and things.names() == ["Big_One"]  # aliases not listed
    assert "large" in things and "small" not in things


def test_a_name_or_alias_registered_twice_is_a_bug_and_changes_nothing():
    things = Registry("thing")
    things.decorator("one", "uno")(object())
    for name, aliases in [("One", ()), ("two", ("UNO",))]:
        with pytest.raises(ValueError, match="registered twice"):
            things.decorator(name, *aliases)(object())
    assert things.names() == ["one"] and "two" not in things


def test_an_unknown_name_is_one_line_with_the_closest_and_the_valid_names():
    things = Registry("thing")
    for name in ("parabolic", "linear"):
        things.decorator(name)(object())
    with pytest.raises(ConfigError) as info:
        things.canonical("parabolc")
    assert str(info.value) == "Unknown thing 'parabolc' (did you mean 'parabolic'?); choose one of: linear, parabolic"
    with pytest.raises(ConfigError, match=r"^Unknown thing 'zzz'; choose one of: linear, parabolic$"):
        things.get("zzz")


@pytest.mark.parametrize("registry", [DATASETS, LOSSES, SCHEDULES, MODELS, TRAIN_RULES])
def test_every_plug_in_kind_uses_the_one_registry_class(registry):
    assert type(registry) is Registry and registry.names()
