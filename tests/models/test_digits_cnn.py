import pytest
import torch
import torch.nn.functional as F

from fbl.errors import ConfigError
from fbl.models import create_model


def test_parameter_count():
    # convs without bias + affine BN, then a biased 64 -> 10 linear layer
    expected = (1 * 16 * 9 + 2 * 16) + (16 * 32 * 9 + 2 * 32) + (32 * 64 * 9 + 2 * 64) + (64 * 10 + 10)
    assert expected == 24_058
    model = create_model("digits-cnn", num_classes=10)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_shapes_and_pooled_features():
    torch.manual_seed(0)
    model = create_model("digits-cnn", num_classes=10).eval()
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        features = model.forward_features(x)
        h = F.relu(model.bn1(model.conv1(x)))
        h = F.max_pool2d(h, 2)
        h = F.relu(model.bn2(model.conv2(h)))
        h = F.relu(model.bn3(model.conv3(h)))
        expected = h.mean(dim=(2, 3))
        logits = model(x)
    assert features.shape == (5, 64) and model.num_features == 64
    torch.testing.assert_close(features, expected)
    assert logits.shape == (5, 10)
    assert torch.equal(logits, model.forward_head(features))
    assert torch.equal(model.forward_head(features, pre_logits=True), features)


def test_in_chans_and_reset_classifier():
    model = create_model("digits-cnn", num_classes=4, in_chans=3)
    assert model.conv1.in_channels == 3
    model.reset_classifier(6)
    assert model.get_classifier().out_features == 6
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 6)


def test_float64_and_determinism():
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    outs = []
    for _ in range(2):
        torch.manual_seed(7)
        model = create_model("digits-cnn", num_classes=10).double()
        outs.append(model(x))
    assert outs[0].dtype == torch.float64
    assert torch.equal(outs[0], outs[1])


def test_bad_in_chans_is_a_config_error():
    with pytest.raises(ConfigError, match="in_chans"):
        create_model("digits-cnn", num_classes=10, in_chans=0)
