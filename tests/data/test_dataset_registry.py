import pytest

import fbl.data
from fbl.data import build_dataset, list_datasets
from fbl.data.registry import register_dataset, resolve_dataset_name
from fbl.errors import ConfigError


def test_list_and_aliases():
    assert list_datasets() == ["cifar10", "cifar100", "digits-lt"]
    assert resolve_dataset_name("CIFAR10-LT") == "cifar10"
    assert resolve_dataset_name(" Cifar100-lt ") == "cifar100"
    assert resolve_dataset_name("Digits-LT") == "digits-lt"


@pytest.mark.parametrize("name", ["imagenet", "ImageNet-LT", "inat", "iNat2018", "place365", "Places-LT"])
def test_known_but_not_yet_supported(name):
    with pytest.raises(
        ConfigError, match=f"{name!r} is not yet supported; available now: cifar10, cifar100, digits-lt"
    ):
        build_dataset(name)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ConfigError, match="Unknown dataset 'mnist'; choose one of: cifar10, cifar100, digits-lt"):
        build_dataset("mnist")


def test_duplicate_registration_is_a_bug():
    with pytest.raises(ValueError, match="registered twice"):
        register_dataset("cifar10", lambda **kw: None)
    with pytest.raises(ValueError, match="registered twice"):
        register_dataset("new-name", lambda **kw: None, "places-lt")
    assert list_datasets() == ["cifar10", "cifar100", "digits-lt"]


def test_bad_profile_is_a_config_error():
    with pytest.raises(ConfigError, match="choose one of: exp, step"):
        build_dataset("digits-lt", imb_type="linear")
    with pytest.raises(ConfigError, match="imb_factor"):
        build_dataset("digits-lt", imb_factor=100)


def test_public_api():
    for name in [
        "build_dataset",
        "list_datasets",
        "LongTailData",
        "AugmentSpec",
        "TensorBatchLoader",
        "shot_groups",
        "long_tail_counts",
        "long_tail_indices",
    ]:
        assert name in fbl.data.__all__ and hasattr(fbl.data, name)
