import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fbl.errors import ConfigError
from fbl.models import CifarResNet, create_model
from fbl.models.cifar_resnet import ShortcutA


def count_params(model):
    return sum(p.numel() for p in model.parameters())


# Option-A ResNets with bias-free convs, affine BN and a biased 10-way linear layer; the standard
# table (He et al. 2016, Table 6: 0.27M, 0.46M, 0.66M, 0.85M, 1.7M). For resnet32 by hand:
# stem 3*16*9 + 2*16 = 464; stage 1: 5 * (2*16*16*9 + 4*16) = 23,360;
# stage 2: (16*32*9 + 32*32*9 + 4*32) + 4 * (2*32*32*9 + 4*32) = 88,192;
# stage 3: (32*64*9 + 64*64*9 + 4*64) + 4 * (2*64*64*9 + 4*64) = 351,488; head 64*10 + 10 = 650.
# Projection (option B: 1x1 conv + BN) shortcuts would add 16*32 + 2*32 + 32*64 + 2*64 = 2,752 to
# every depth (e.g. 272,474 for resnet20 and 855,770 for resnet56); these models must not have them.
@pytest.mark.parametrize(
    "name, expected",
    [
        ("resnet20", 269_722),
        ("resnet32", 464_154),
        ("resnet44", 658_586),
        ("resnet56", 853_018),
        ("resnet110", 1_727_962),
    ],
)
def test_parameter_count_matches_the_option_a_table(name, expected):
    assert count_params(create_model(name, num_classes=10)) == expected


def test_resnet32_block_counts_and_widths():
    model = create_model("resnet32", num_classes=10)
    for layer, width in ((model.layer1, 16), (model.layer2, 32), (model.layer3, 64)):
        assert len(layer) == 5
        assert all(block.conv2.out_channels == width for block in layer)
    assert model.layer1[0].conv1.stride == (1, 1)
    assert model.layer2[0].conv1.stride == (2, 2)
    assert model.layer3[0].conv1.stride == (2, 2)
    assert all(conv.bias is None for conv in model.modules() if isinstance(conv, nn.Conv2d))


def test_shortcut_a_subsamples_and_zero_pads_channels():
    shortcut = ShortcutA(2, 4, stride=2)
    assert list(shortcut.parameters()) == [] and list(shortcut.buffers()) == []
    x = torch.arange(32.0).reshape(1, 2, 4, 4)
    expected = torch.tensor(
        [[[[0.0, 0.0], [0.0, 0.0]], [[0.0, 2.0], [8.0, 10.0]], [[16.0, 18.0], [24.0, 26.0]], [[0.0, 0.0], [0.0, 0.0]]]]
    )
    assert torch.equal(shortcut(x), expected)


def test_downsampling_blocks_use_parameter_free_shortcuts():
    model = create_model("resnet32", num_classes=10)
    for layer, pad in ((model.layer2, 8), (model.layer3, 16)):
        shortcut = layer[0].shortcut
        assert isinstance(shortcut, ShortcutA)
        assert shortcut.pad == pad  # planes // 4 on each side
        assert count_params(shortcut) == 0


def _longhand_features(model, x):
    h = F.relu(model.bn1(model.conv1(x)))
    for layer in (model.layer1, model.layer2, model.layer3):
        for block in layer:
            out = F.relu(block.bn1(block.conv1(h)))
            out = block.bn2(block.conv2(out))
            if block.conv1.stride == (2, 2):
                sub = h[:, :, ::2, ::2]
                zeros = torch.zeros(sub.shape[0], block.conv2.out_channels // 4, *sub.shape[2:], dtype=h.dtype)
                shortcut = torch.cat([zeros, sub, zeros], dim=1)
            else:
                shortcut = h
            h = F.relu(out + shortcut)
    return h.mean(dim=(2, 3))


@pytest.mark.parametrize("train_mode", [False, True])
def test_forward_features_is_the_pooled_penultimate_vector(train_mode):
    torch.manual_seed(0)
    model = create_model("resnet32", num_classes=10).train(train_mode)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        features = model.forward_features(x)
        expected = _longhand_features(model, x)
        logits = model(x)
    assert features.shape == (4, 64) and model.num_features == 64
    torch.testing.assert_close(features, expected)
    assert logits.shape == (4, 10)
    torch.testing.assert_close(logits, features @ model.fc.weight.T + model.fc.bias)


def test_forward_is_head_of_features_and_pre_logits_returns_features():
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=7).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        features = model.forward_features(x)
        assert torch.equal(model(x), model.forward_head(features))
        assert torch.equal(model.forward_head(features, pre_logits=True), features)


def test_kaiming_normal_init_of_conv_and_linear_weights():
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=1000)
    conv = model.layer3[1].conv2  # 64*64*9 = 36,864 weights, fan_in 576
    assert conv.weight.numel() == 36_864
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / 576), rel=0.03)
    assert conv.weight.mean().item() == pytest.approx(0.0, abs=0.002)
    fc = model.get_classifier()  # 64,000 weights, fan_in 64
    assert fc.weight.std().item() == pytest.approx(math.sqrt(2 / 64), rel=0.03)
    # PyTorch's default linear init would give std 1/sqrt(3*64) ~ 0.072, far from 0.177.


def test_get_and_reset_classifier():
    model = create_model("resnet32", num_classes=10).double()
    old = model.get_classifier()
    assert isinstance(old, nn.Linear) and old is model.fc
    model.reset_classifier(3)
    new = model.get_classifier()
    assert new is not old and (new.in_features, new.out_features) == (64, 3)
    assert new.weight.dtype == torch.float64
    assert model(torch.randn(2, 3, 32, 32, dtype=torch.float64)).shape == (2, 3)
    with pytest.raises(ConfigError):
        model.reset_classifier(0)


def test_runs_in_float64():
    model = create_model("resnet20", num_classes=10).double().eval()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    out = model(x)
    assert out.dtype == torch.float64 and out.shape == (2, 10)


def test_deterministic_under_manual_seed():
    x = torch.randn(2, 3, 32, 32)
    outputs = []
    for _ in range(2):
        torch.manual_seed(123)
        model = create_model("resnet20", num_classes=10)
        with torch.no_grad():
            outputs.append(model(x))
    assert torch.equal(outputs[0], outputs[1])


@pytest.mark.parametrize("depth", [0, 21, 33, True, "32"])
def test_bad_depth_is_a_config_error(depth):
    with pytest.raises(ConfigError, match="6n\\+2"):
        CifarResNet(depth, num_classes=10)


def test_pretrained_is_refused():
    with pytest.raises(ConfigError, match="No pretrained weights exist for resnet32"):
        create_model("resnet32", num_classes=10, pretrained=True)
