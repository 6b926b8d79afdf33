import os
import urllib.error

import pytest
import torch
import torchvision
from torch import nn

from fbl.errors import ConfigError
from fbl.models import create_model

FROZEN_PREFIXES = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.")


def count_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def resnet152_p():
    torch.manual_seed(0)
    return create_model("resnet152_p", num_classes=7)


def test_resnet50_contract_matches_torchvision_forward():
    torch.manual_seed(0)
    model = create_model("resnet50", num_classes=5).eval()
    # torchvision's published size of resnet50 is 25,557,032 with the 2048 -> 1000 head.
    assert count_params(model) == 25_557_032 - (2048 * 1000 + 1000) + (2048 * 5 + 5)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = model.forward_features(x)
        h = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        h = model.layer4(model.layer3(model.layer2(model.layer1(h))))
        expected = h.mean(dim=(2, 3))
        logits = model(x)
        reference = torchvision.models.ResNet.forward(model, x)  # torchvision's own forward path
    assert features.shape == (2, 2048) and model.num_features == 2048
    torch.testing.assert_close(features, expected)
    assert torch.equal(logits, model.forward_head(features))
    assert torch.equal(model.forward_head(features, pre_logits=True), features)
    torch.testing.assert_close(logits, reference)
    assert logits.shape == (2, 5)
    assert model.get_classifier() is model.fc and model.fc.out_features == 5


def test_resnet152_size_and_trains_everything_by_default():
    model = create_model("resnet152", num_classes=1000)
    assert count_params(model) == 60_192_808  # torchvision's published size
    assert all(p.requires_grad for p in model.parameters())
    assert all(m.training for m in model.modules())


def test_resnet152_p_freezes_all_but_layer4_and_fc(resnet152_p):
    model = resnet152_p
    for name, param in model.named_parameters():
        assert param.requires_grad == (not name.startswith(FROZEN_PREFIXES)), name
    trainable = {name.split(".")[0] for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"layer4", "fc"}


def test_resnet152_p_keeps_frozen_modules_in_eval_mode(resnet152_p):
    model = resnet152_p.train()
    assert model.training and model.layer4.training and model.layer4[0].bn1.training
    for name in ("conv1", "bn1", "layer1", "layer2", "layer3"):
        module = getattr(model, name)
        assert all(not m.training for m in module.modules()), name
    model.eval()
    assert not any(m.training for m in model.modules())
    model.train()
    assert model.layer4[2].bn3.training and not model.layer3[35].bn3.training


def test_resnet152_p_train_step_leaves_frozen_bn_statistics_and_weights_alone(resnet152_p):
    model = resnet152_p.train()
    frozen_bns = [model.bn1, model.layer1[0].bn1, model.layer3[35].bn3]
    trained_bn = model.layer4[0].bn1
    before = [(bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone()) for bn in frozen_bns]
    trained_before = trained_bn.running_mean.clone()
    torch.manual_seed(1)
    logits = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 7)
    logits.sum().backward()
    for bn, (mean, var, tracked) in zip(frozen_bns, before):
        assert torch.equal(bn.running_mean, mean) and torch.equal(bn.running_var, var)
        assert torch.equal(bn.num_batches_tracked, tracked)
    assert not torch.equal(trained_bn.running_mean, trained_before)  # the check above can fail
    assert model.conv1.weight.grad is None and model.layer3[0].conv1.weight.grad is None
    assert model.layer4[0].conv1.weight.grad is not None and model.fc.weight.grad is not None
    model.zero_grad(set_to_none=True)


def test_frozen_stages_option_and_its_validation():
    model = create_model("resnet50", num_classes=3, frozen_stages=0)
    frozen = {name.split(".")[0] for name, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"conv1", "bn1"}
    with pytest.raises(ConfigError, match="frozen_stages"):
        create_model("resnet50", num_classes=3, frozen_stages=5)


def test_reset_classifier_follows_dtype():
    model = create_model("resnet50", num_classes=3)
    model.fc.double()  # as if the model had been cast; the new head must follow
    model.reset_classifier(11)
    head = model.get_classifier()
    assert isinstance(head, nn.Linear) and (head.in_features, head.out_features) == (2048, 11)
    assert head.weight.dtype == torch.float64


def _weights_file(weights):
    return os.path.basename(weights.url)


def test_pretrained_without_network_is_a_one_line_config_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(url, dst, *args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(ConfigError) as info:
        create_model("resnet50", num_classes=10, pretrained=True)
    message = str(info.value)
    assert "\n" not in message
    assert "Could not download" in message and "TORCH_HOME" in message
    assert str(tmp_path / "hub" / "checkpoints") in message
    assert _weights_file(torchvision.models.ResNet50_Weights.IMAGENET1K_V1) in message


def test_pretrained_loads_torchvision_weights_from_the_cache(tmp_path, monkeypatch):
    # A stand-in checkpoint placed where torchvision's weights API looks, so no network is needed.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(5)
    source = torchvision.models.resnet50()
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(source.state_dict(), cache / _weights_file(torchvision.models.ResNet50_Weights.IMAGENET1K_V1))

    model = create_model("resnet50", num_classes=10, pretrained=True)
    assert torch.equal(model.conv1.weight, source.conv1.weight)
    assert torch.equal(model.layer4[2].bn3.running_var, source.layer4[2].bn3.running_var)
    assert model.fc.out_features == 10  # fresh head for a different label set

    same_classes = create_model("resnet50", num_classes=1000, pretrained=True)
    assert torch.equal(same_classes.fc.weight, source.fc.weight)  # ImageNet head kept
