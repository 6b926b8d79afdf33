import pytest
import torch

from fbl.errors import ConfigError
from fbl.models import create_model, list_models, register_model

EXPECTED_NAMES = [
    "digits-cnn",
    "digits-experts",
    "resnet110",
    "resnet152",
    "resnet152_p",
    "resnet20",
    "resnet32",
    "resnet32-experts",
    "resnet32-ride",
    "resnet44",
    "resnet50",
    "resnet56",
]


def test_list_models():
    assert list_models() == EXPECTED_NAMES
    assert list_models("resnet1*") == ["resnet110", "resnet152", "resnet152_p"]


def test_lookup_is_case_insensitive():
    model = create_model("ResNet20", num_classes=4)
    assert model.get_classifier().out_features == 4


def test_unknown_name_lists_the_valid_names():
    with pytest.raises(ConfigError) as info:
        create_model("resnet33", num_classes=10)
    message = str(info.value)
    assert "\n" not in message and "'resnet33'" in message
    for name in EXPECTED_NAMES:
        assert name in message


@pytest.mark.parametrize("num_classes", [0, -3, True, 2.0, "10"])
def test_bad_num_classes(num_classes):
    with pytest.raises(ConfigError, match="num_classes"):
        create_model("resnet20", num_classes=num_classes)


def test_unknown_option_is_a_config_error_naming_the_options():
    with pytest.raises(ConfigError, match="does not take option\\(s\\) depth; it takes: pretrained"):
        create_model("resnet32", num_classes=10, depth=20)


def test_duplicate_registration_raises():
    with pytest.raises(ValueError, match="registered twice"):
        register_model("resnet32")(lambda num_classes: torch.nn.Linear(1, num_classes))
    with pytest.raises(ValueError, match="registered twice"):
        register_model("RESNET32")(lambda num_classes: torch.nn.Linear(1, num_classes))
    assert list_models() == EXPECTED_NAMES


def test_config_error_is_a_value_error():
    with pytest.raises(ValueError):
        create_model("nope", num_classes=10)
