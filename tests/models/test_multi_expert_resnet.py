"""The multi-expert ResNets: shapes, parameter counts of the configurations, aggregation, cRT and LWS on top."""

import pytest
import torch
from torch import nn

from fbl.models import ClassifierRetraining, create_model
from fbl.models.multi_expert_resnet import ExpertHeads
from fbl.models.normed_linear import NormedLinear
from fbl.posthoc import LearnableWeightScaling


def _conv(i, o):  # 3x3, no bias
    return 9 * i * o


def _block(i, o):  # two convs, two BatchNorms (weight and bias); option-A shortcut has no parameters
    return _conv(i, o) + _conv(o, o) + 2 * 2 * o


def _stage(i, o, n):
    return _block(i, o) + (n - 1) * _block(o, o)


def _expected_parameters(widths, experts, classes, normed, blocks=5, in_chans=3):
    trunk = _conv(in_chans, widths[0]) + 2 * widths[0] + _stage(widths[0], widths[0], blocks)
    head = widths[2] * classes + (0 if normed else classes)
    return trunk + experts * (_stage(widths[0], widths[1], blocks) + _stage(widths[1], widths[2], blocks) + head)


@pytest.mark.parametrize(
    "arch, widths",
    [("resnet32-ride", (16, 24, 48)), ("resnet32-sade", (16, 24, 48)), ("resnet32-experts", (16, 32, 64))],
)
@pytest.mark.parametrize("classifier", ["linear", "normed"])
def test_shapes_and_parameter_counts_follow_the_configuration(arch, widths, classifier):
    model = create_model(arch, num_classes=100, classifier=classifier)
    expected = _expected_parameters(widths, 3, 100, classifier == "normed")
    assert sum(p.numel() for p in model.parameters()) == expected
    logits, features, experts = model(torch.randn(2, 3, 32, 32), return_features=True, return_experts=True)
    assert logits.shape == (2, 100) and features.shape == (2, 3 * widths[2])
    assert experts.logits.shape == (2, 3, 100) and experts.features.shape == (2, 3, widths[2])
    head_type = NormedLinear if classifier == "normed" else nn.Linear
    assert all(type(head) is head_type for head in model.get_classifier().heads)


def test_ride_resnet32_with_ten_classes_has_the_longhand_count():
    # shared: stem 432 + BN 32 + stage 1 (5 blocks of 16) 23,360; each expert: 24-ch stage 2, 48-ch stage 3, 48x10 head
    model = create_model("resnet32-ride", num_classes=10)
    per_expert = (9 * 16 * 24 + 9 * 24 * 24 + 4 * 24) + 4 * (2 * 9 * 24 * 24 + 4 * 24)
    per_expert += (9 * 24 * 48 + 9 * 48 * 48 + 4 * 48) + 4 * (2 * 9 * 48 * 48 + 4 * 48) + 48 * 10 + 10
    shared = 9 * 3 * 16 + 2 * 16 + 5 * (2 * 9 * 16 * 16 + 4 * 16)
    assert sum(p.numel() for p in model.parameters()) == shared + 3 * per_expert


def test_num_experts_and_the_digits_model():
    model = create_model("digits-experts", num_classes=10, num_experts=4)
    assert sum(p.numel() for p in model.parameters()) == _expected_parameters((8, 12, 16), 4, 10, False, 1, 1)
    _, _, experts = model(torch.randn(3, 1, 8, 8), return_features=True, return_experts=True)
    assert experts.logits.shape == (3, 4, 10)


def test_the_aggregate_is_the_weighted_sum_of_the_experts_and_follows_the_model_contract():
    torch.manual_seed(0)
    model = create_model("digits-experts", num_classes=5).eval()
    x = torch.randn(4, 1, 8, 8)
    logits, features, experts = model(x, return_features=True, return_experts=True)
    z = experts.logits
    assert torch.allclose(logits, (z[:, 0] + z[:, 1] + z[:, 2]) / 3, atol=1e-6)
    assert torch.allclose(model.forward_head(model.forward_features(x)), logits, atol=1e-6)
    assert torch.equal(features, torch.cat([experts.features[:, k] for k in range(3)], dim=1))
    model.set_expert_weights([0.5, 0.3, 0.2])
    assert torch.allclose(model(x), 0.5 * z[:, 0] + 0.3 * z[:, 1] + 0.2 * z[:, 2], atol=1e-6)
    for bad in ([0.5, 0.5], [0.7, 0.7, -0.4], [0.5, 0.3, 0.3]):
        with pytest.raises(Exception, match="expert weights"):
            model.set_expert_weights(bad)


def test_crt_and_lws_on_a_multi_expert_backbone():
    torch.manual_seed(0)
    model = create_model("digits-experts", num_classes=5)
    x = torch.randn(4, 1, 8, 8)
    before = model.eval()(x)
    lws = ClassifierRetraining(model, 5, method="lws").eval()
    assert [n for n, p in lws.named_parameters() if p.requires_grad] == ["model.fc.scales"]
    assert torch.allclose(lws(x), before, atol=1e-6)  # the scales start at 1
    crt = ClassifierRetraining(create_model("digits-experts", num_classes=5), 5)
    assert isinstance(crt.get_classifier(), ExpertHeads)
    assert all(p.requires_grad == n.startswith("model.fc.") for n, p in crt.named_parameters())


def test_lws_scales_each_class_weight_and_keeps_the_bias():
    layer = nn.Linear(3, 2)
    lws = LearnableWeightScaling(layer)
    with torch.no_grad():
        lws.scales.copy_(torch.tensor([2.0, 0.5]))
    x = torch.tensor([[1.0, -2.0, 0.5]])
    w, b = layer.weight.detach(), layer.bias.detach()
    expected = torch.stack([2.0 * (w[0] @ x[0]) + b[0], 0.5 * (w[1] @ x[0]) + b[1]])
    assert torch.allclose(lws(x)[0], expected, atol=1e-6)
    assert not layer.weight.requires_grad and lws.scales.requires_grad


def test_lws_through_stage_2_of_a_single_model():
    model = create_model("resnet20", num_classes=10)
    retrained = ClassifierRetraining(model, 10, method="lws")
    assert [n for n, p in retrained.named_parameters() if p.requires_grad] == ["model.fc.scales"]
    with pytest.raises(Exception, match="decoupled method"):
        ClassifierRetraining(create_model("resnet20", num_classes=10), 10, method="tau")


def test_the_listed_multi_expert_names_are_the_registered_ones():
    from fbl.models import MODELS
    from fbl.models.multi_expert_resnet import MULTI_EXPERT_ARCHS, MultiExpertResNet

    built = {name for name in MODELS.names() if isinstance(create_model(name, num_classes=3), MultiExpertResNet)}
    assert built == set(MULTI_EXPERT_ARCHS)
