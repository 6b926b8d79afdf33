"""Device resolution: names map to torch devices; a GPU that is not there is one clear line."""

import pytest
import torch

from fbl.engine.device import resolve_device
from fbl.errors import ConfigError


@pytest.mark.parametrize("spec", ["cpu", "CPU", " cpu "])
def test_cpu(spec):
    assert resolve_device(spec) == torch.device("cpu")


def test_auto_picks_cuda_only_when_present():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cuda:3"])
def test_missing_gpu_is_a_user_error(spec):
    with pytest.raises(ConfigError, match=r"has 0 CUDA device\(s\); use --device cpu") as info:
        resolve_device(spec)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("spec", ["gpu", "tpu:0", "cuda:x"])
def test_unknown_device_names_the_choices(spec):
    with pytest.raises(ConfigError, match="use cpu, cuda, cuda:N or auto"):
        resolve_device(spec)


def test_other_backends_are_refused():
    with pytest.raises(ConfigError, match="Unsupported device 'meta'"):
        resolve_device("meta")
