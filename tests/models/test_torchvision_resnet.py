import os
import urllib.error

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.resnet import Bottleneck

from fbl.errors import ConfigError
from fbl.models import create_model
from fbl.models.torchvision_resnet import require_pretrained_source

TRAINED_PREFIXES = ("layer4.2.", "fc.")


def count_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # The inputs here are tiny: splitting each convolution over threads costs more than it saves, and
    # on a busy machine the waiting threads slow these forward passes down tenfold.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def resnet152_p():
    torch.manual_seed(0)
    return create_model("resnet152_p", num_classes=7)  # random weights: nothing is downloaded


@pytest.fixture(scope="module")
def r152_file(tmp_path_factory):
    """A torchvision ResNet-152 state dict (random weights) saved as a local weights file."""
    torch.manual_seed(3)
    path = tmp_path_factory.mktemp("weights") / "resnet152.pth"
    torch.save(torchvision.models.resnet152().state_dict(), path)
    return path


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


def test_resnet152_p_trains_only_the_new_block_and_head(resnet152_p):
    model = resnet152_p
    for name, param in model.named_parameters():
        assert param.requires_grad == name.startswith(TRAINED_PREFIXES), name
    block = model.layer4[2]
    assert isinstance(block, Bottleneck) and block.downsample is None
    assert (block.conv1.in_channels, block.conv2.out_channels, block.conv3.out_channels) == (2048, 512, 2048)
    # Bottleneck(2048, 512): 1x1 2048->512, 3x3 512->512, 1x1 512->2048, three BatchNorms; head 2048->7.
    block_params = 2048 * 512 + 2 * 512 + 9 * 512 * 512 + 2 * 512 + 512 * 2048 + 2 * 2048
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == block_params + 2048 * 7 + 7
    assert count_params(model) == 60_192_808 - (2048 * 1000 + 1000) + (2048 * 7 + 7)  # same shape as torchvision's


def test_resnet152_p_keeps_frozen_modules_in_eval_mode(resnet152_p):
    model = resnet152_p.train()
    assert model.training and model.fc.training
    assert all(m.training for m in model.layer4[2].modules())
    for name in ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4.0", "layer4.1"):
        module = model.get_submodule(name)
        assert all(not m.training for m in module.modules()), name
    model.eval()
    assert not any(m.training for m in model.modules())
    model.train()
    assert model.layer4[2].bn3.training and not model.layer4[1].bn3.training


def test_resnet152_p_features_and_head(resnet152_p):
    model = resnet152_p.eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        features = model.forward_features(x)
        h = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        h = model.layer4(model.layer3(model.layer2(model.layer1(h))))
        expected = h.mean(dim=(2, 3))
        logits = model(x)
    assert features.shape == (2, 2048) and model.num_features == 2048
    torch.testing.assert_close(features, expected)
    assert torch.equal(logits, model.forward_head(features)) and logits.shape == (2, 7)
    assert torch.equal(model.forward_head(features, pre_logits=True), features)
    assert model.get_classifier() is model.fc


def test_resnet152_p_train_step_leaves_frozen_bn_statistics_and_weights_alone(resnet152_p):
    model = resnet152_p.train()
    frozen_bns = [model.bn1, model.layer1[0].bn1, model.layer3[35].bn3, model.layer4[1].bn3]
    trained_bn = model.layer4[2].bn1
    before = [(bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone()) for bn in frozen_bns]
    trained_before = trained_bn.running_mean.clone()
    torch.manual_seed(1)
    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 7)
    logits.sum().backward()
    for bn, (mean, var, tracked) in zip(frozen_bns, before, strict=False):
        assert torch.equal(bn.running_mean, mean) and torch.equal(bn.running_var, var)
        assert torch.equal(bn.num_batches_tracked, tracked)
    assert not torch.equal(trained_bn.running_mean, trained_before)  # the check above can fail
    with_grad = {name for name, p in model.named_parameters() if p.grad is not None}
    assert with_grad == {name for name, p in model.named_parameters() if name.startswith(TRAINED_PREFIXES)}
    model.zero_grad(set_to_none=True)


def test_resnet152_p_loads_a_local_torchvision_state_dict(r152_file):
    model = create_model("resnet152_p", num_classes=5, pretrained_weights=str(r152_file))
    source = torch.load(r152_file, map_location="cpu", weights_only=True, mmap=True)
    loaded = model.state_dict()
    frozen = [name for name in source if not name.startswith(TRAINED_PREFIXES)]
    assert len(frozen) == len(source) - 2 - len([n for n in source if n.startswith("layer4.2.")])
    for name in frozen:
        assert torch.equal(loaded[name], source[name]), name
    # The third block of layer4 and the head are new, not the file's.
    for name in ("layer4.2.conv1.weight", "layer4.2.conv3.weight"):
        assert loaded[name].shape == source[name].shape and not torch.equal(loaded[name], source[name])
    assert model.fc.out_features == 5
    assert not any(p.requires_grad for n, p in model.named_parameters() if not n.startswith(TRAINED_PREFIXES))


def test_resnet152_p_pretrained_from_the_cache_replaces_block_and_head(r152_file, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / _weights_file(torchvision.models.ResNet152_Weights.IMAGENET1K_V1)).symlink_to(r152_file)
    model = create_model("resnet152_p", num_classes=1000, pretrained=True)
    source = torch.load(r152_file, map_location="cpu", weights_only=True, mmap=True)
    assert torch.equal(model.layer4[1].bn3.running_var, source["layer4.1.bn3.running_var"])
    assert torch.equal(model.conv1.weight, source["conv1.weight"])
    assert not torch.equal(model.layer4[2].conv2.weight, source["layer4.2.conv2.weight"])
    assert not torch.equal(model.fc.weight, source["fc.weight"])  # 1000 classes, yet the ImageNet head is not kept


class NotATensor:
    pass


class RunsCode:
    """Unpickling this would call ``open(marker, "w")``: weights-only loading must refuse it first."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _write_weights(path, kind):
    """A weights file of each kind that is not a usable state dict."""
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("101 this is a text file\n")
    elif kind == "garbage":
        path.write_bytes(b"this is not a checkpoint")
    elif kind == "truncated":
        torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, path)
        path.write_bytes(path.read_bytes()[:200])
    elif kind == "pickled-object":
        torch.save({"conv1.weight": NotATensor()}, path)
    elif kind == "runs-code":
        torch.save({"conv1.weight": RunsCode(path.parent / "marker")}, path)
    elif kind == "not-a-dict":
        torch.save([torch.zeros(1)], path)
    elif kind == "training-checkpoint":
        torch.save({"model": {"conv1.weight": torch.zeros(1)}, "epoch": 3}, path)
    elif kind == "wrong-keys":
        torch.save({"conv1.weight": torch.zeros(1), "head.weight": torch.zeros(1)}, path)
    elif kind == "folder":
        path.mkdir()


# Our one line for each kind of bad file (torch's own text is pages long and suggests weights_only=False).
BAD_WEIGHTS = {
    "missing": "Pretrained weights file {path} not found",
    "folder": "Pretrained weights file {path} not a regular file",
    "empty": "Pretrained weights file {path} is empty (0 bytes); expected a state dict saved by torch.save(",
    "text": "Pretrained weights file {path} is not a torch file (text or another format)",
    "garbage": "Pretrained weights file {path} is not a torch file (text or another format)",
    "truncated": "Pretrained weights file {path} is a damaged torch file (truncated or corrupt)",
    "pickled-object": "Pretrained weights file {path} holds objects other than tensors, refused because loading",
    "runs-code": "Pretrained weights file {path} holds objects other than tensors, refused because loading",
    "not-a-dict": "{path} does not hold a state dict (a dict of tensors) but a list",
    "training-checkpoint": "{path} does not hold a state dict (a dict of tensors): entry 'model' is a dict; it "
    "looks like a training checkpoint: save its 'model' entry alone",
    "wrong-keys": "{path} is not a torchvision ResNet-152 state dict: ",
}


@pytest.mark.parametrize("kind", list(BAD_WEIGHTS))
def test_resnet152_p_bad_weights_files_are_one_line_errors(tmp_path, kind):
    path = tmp_path / f"{kind}.pth"
    _write_weights(path, kind)
    with pytest.raises(ConfigError) as info:
        create_model("resnet152_p", num_classes=3, pretrained_weights=str(path))
    message = str(info.value)
    assert message.startswith(BAD_WEIGHTS[kind].format(path=path)), message
    assert "\n" not in message and "weights_only" not in message, message
    assert not (tmp_path / "marker").exists()  # the pickled call never ran


@pytest.mark.parametrize(
    "arch, other, other_name", [("resnet50", "resnet152", "ResNet-152"), ("resnet152", "resnet50", "ResNet-50")]
)
def test_every_torchvision_resnet_loads_a_weights_file(tmp_path, arch, other, other_name):
    torch.manual_seed(7)
    source = getattr(torchvision.models, arch)().state_dict()
    path = tmp_path / f"{arch}.pth"
    torch.save(source, path)
    same_classes = create_model(arch, num_classes=1000, pretrained_weights=str(path))
    for name, value in same_classes.state_dict().items():
        assert torch.equal(value, source[name]), name  # the ImageNet head too: it has 1000 outputs
    other_classes = create_model(arch, num_classes=10, pretrained_weights=str(path))
    assert torch.equal(other_classes.layer4[2].conv3.weight, source["layer4.2.conv3.weight"])
    assert other_classes.fc.out_features == 10  # a fresh head for a different label set
    with pytest.raises(ConfigError, match=f"is not a torchvision {other_name} state dict: "):
        create_model(other, num_classes=10, pretrained_weights=str(path))


def test_resnet152_p_weights_of_the_wrong_shape(resnet152_p, tmp_path):
    state = dict(resnet152_p.state_dict())
    state["layer2.0.conv1.weight"] = torch.zeros(3, 3, 1, 1)
    path = tmp_path / "shape.pth"
    torch.save(state, path)
    with pytest.raises(
        ConfigError, match=r"layer2\.0\.conv1\.weight has shape \(3, 3, 1, 1\), expected \(128, 256, 1, 1\)"
    ):
        create_model("resnet152_p", num_classes=3, pretrained_weights=str(path))


def test_resnet152_p_refuses_two_weight_sources(tmp_path):
    with pytest.raises(ConfigError, match="either pretrained"):
        create_model("resnet152_p", num_classes=3, pretrained=True, pretrained_weights=str(tmp_path / "w.pth"))


def test_require_pretrained_source():
    with pytest.raises(ConfigError) as info:
        require_pretrained_source("resnet152_p", pretrained=False, pretrained_weights=None)
    assert str(info.value) == (
        "resnet152_p needs ImageNet weights: pass --pretrained (torchvision cache) or --pretrained-weights PATH"
    )
    require_pretrained_source("resnet152_p", pretrained=True, pretrained_weights=None)
    require_pretrained_source("ResNet152_P", pretrained=False, pretrained_weights="w.pth")
    require_pretrained_source("resnet50", pretrained=False, pretrained_weights=None)


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
