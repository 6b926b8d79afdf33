import pytest

import fbl.data
from fbl.data import build_dataset, list_datasets
from fbl.data.registry import register_dataset, resolve_dataset_name
from fbl.errors import ConfigError


def test_list_and_aliases():
    assert list_datasets() == ["cifar10", "cifar100", "digits-lt", "folder", "imagenet", "inat", "place365", "shards"]
    assert resolve_dataset_name("CIFAR10-LT") == "cifar10"
    assert resolve_dataset_name(" Cifar100-lt ") == "cifar100"
    assert resolve_dataset_name("Digits-LT") == "digits-lt"
    assert resolve_dataset_name("digits_lt") == "digits-lt"
    assert resolve_dataset_name("iNat2018") == "inat" and resolve_dataset_name("Places_LT") == "place365"


@pytest.mark.parametrize("name", ["imagenet", "inat", "place365"])
def test_split_list_datasets_name_the_missing_list(name, tmp_path):
    with pytest.raises(ConfigError, match=r"_(train|val)\.txt"):
        build_dataset(name, data_dir=str(tmp_path), img_path=str(tmp_path))


def test_rotation_reaches_the_in_memory_datasets_and_is_refused_by_the_others(tmp_path):
    assert build_dataset("digits-lt").augment.rotation == 0.0
    assert build_dataset("digits-lt", rotate=15).augment.rotation == 15.0
    for name in ("imagenet", "folder", "shards"):
        with pytest.raises(ConfigError, match=f"--rotate applies to the datasets held in memory .* not '{name}'"):
            build_dataset(name, data_dir=str(tmp_path), rotate=15)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ConfigError, match="Unknown dataset 'mnist'.*; choose one of: cifar10, cifar100, digits-lt"):
        build_dataset("mnist")


def test_duplicate_registration_is_a_bug():
    with pytest.raises(ValueError, match="registered twice"):
        register_dataset("cifar10")(lambda **kw: None)
    with pytest.raises(ValueError, match="registered twice"):
        register_dataset("new-name", "places-lt")(lambda **kw: None)
    assert list_datasets() == ["cifar10", "cifar100", "digits-lt", "folder", "imagenet", "inat", "place365", "shards"]


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
        "LongTailDataset",
        "BatchLoader",
        "AugmentSpec",
        "TensorBatchLoader",
        "shot_groups",
        "long_tail_counts",
        "long_tail_indices",
    ]:
        assert name in fbl.data.__all__ and hasattr(fbl.data, name)
