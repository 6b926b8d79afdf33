import doctest
import math

import pytest
import torch
from torch import nn

from fbl import posthoc
from fbl.errors import ConfigError
from fbl.posthoc import logit_adjust, tau_normalize, tau_normalized_classifier

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float64: dict(rtol=1e-12, atol=1e-12)}
COUNTS = [500, 120, 30, 6, 2]


def logit_adjust_longhand(z, counts, tau):
    total = sum(counts)
    return [[z[i][j] - tau * math.log(counts[j] / total) for j in range(len(counts))] for i in range(len(z))]


def tau_normalize_longhand(w, p):
    out = []
    for row in w:
        norm = math.sqrt(sum(v * v for v in row))
        out.append([v / norm**p if norm > 0 else v for v in row])
    return out


def test_doctests():
    result = doctest.testmod(posthoc, verbose=False)
    assert result.attempted >= 2 and result.failed == 0


# --- logit adjustment --------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tau", [-2.5, 0.0, 1.0, 1.7])
def test_logit_adjust_matches_longhand(device, dtype, tau):
    z = torch.randn(6, len(COUNTS), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    want = torch.tensor(logit_adjust_longhand(z.tolist(), COUNTS, tau), dtype=torch.float64)
    original = z.to(device, dtype)
    kept = original.clone()
    got = logit_adjust(original, COUNTS, tau)
    assert got.dtype == dtype and got.device.type == device
    torch.testing.assert_close(got.cpu().double(), want, **TOL[dtype])
    assert torch.equal(original, kept)  # not in place


def test_logit_adjust_favours_rare_classes_and_accepts_extra_dims():
    z = torch.zeros(2, 3, len(COUNTS))
    got = logit_adjust(z, torch.tensor(COUNTS), tau=1.0)
    assert got.shape == z.shape
    assert (got.argmax(dim=-1) == len(COUNTS) - 1).all()
    assert torch.equal(logit_adjust(z, COUNTS, tau=0.0), z)
    assert (logit_adjust(z, COUNTS, tau=-1.0).argmax(dim=-1) == 0).all()  # towards the most frequent class


@pytest.mark.parametrize(
    "args, message",
    [
        ((torch.zeros(2, 5), COUNTS, float("nan")), r"tau \(adjustment strength\) to be a finite number but got nan"),
        ((torch.zeros(2, 5), COUNTS, "strong"), r"tau \(adjustment strength\) to be a finite number but got 'strong'"),
        ((torch.zeros(2, 4), COUNTS, 1.0), r"Expected logits with 5 classes .* but got shape \(2, 4\)"),
        ((torch.zeros(2, 5), [5, 4, 0, 2, 1], 1.0), "positive count for class 2"),
    ],
)
def test_logit_adjust_rejects_bad_arguments(args, message):
    with pytest.raises(ConfigError, match=message):
        logit_adjust(*args)


# --- tau-normalisation -------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.0, 0.5, 1.0, 1.8])
def test_tau_normalize_matches_longhand(device, dtype, p):
    w = torch.randn(len(COUNTS), 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    w[0] *= 10.0  # a head class with a large norm
    w[3] = 0.0  # a dead class stays at zero
    want = torch.tensor(tau_normalize_longhand(w.tolist(), p), dtype=torch.float64)
    original = w.to(device, dtype)
    kept = original.clone()
    got = tau_normalize(original, p)
    assert got.dtype == dtype and got.device.type == device
    torch.testing.assert_close(got.cpu().double(), want, **TOL[dtype])
    assert torch.equal(original, kept)


def test_tau_normalize_with_p_one_gives_unit_rows():
    w = torch.randn(4, 3, dtype=torch.float64) * torch.tensor([[5.0], [1.0], [0.1], [2.0]], dtype=torch.float64)
    torch.testing.assert_close(tau_normalize(w, 1.0).norm(dim=1), torch.ones(4, dtype=torch.float64))


@pytest.mark.parametrize(
    "weight, p, message",
    [
        (torch.ones(3, 2), -0.5, r"Expected p \(tau-normalisation power\) >= 0 but got -0.5"),
        (
            torch.ones(3),
            1.0,
            r"Expected a floating-point classifier weight of shape \(C, D\) but got torch.float32 of shape \(3,\)",
        ),
        (torch.ones(3, 2, dtype=torch.long), 1.0, "Expected a floating-point classifier weight"),
        ([[1.0, 2.0]], 1.0, "Expected a floating-point classifier weight of shape \\(C, D\\) but got list"),
    ],
)
def test_tau_normalize_rejects_bad_arguments(weight, p, message):
    with pytest.raises(ConfigError, match=message):
        tau_normalize(weight, p)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_tau_normalized_classifier_drops_the_bias_by_default(device, dtype):
    torch.manual_seed(3)
    linear = nn.Linear(4, len(COUNTS)).to(device, dtype)
    before = {k: v.clone() for k, v in linear.state_dict().items()}
    x = torch.randn(6, 4, device=device, dtype=dtype)
    p = 0.7

    copy = tau_normalized_classifier(linear, p)
    assert copy is not linear and copy.bias is None
    assert copy.weight.dtype == dtype and copy.weight.device.type == device
    w = tau_normalize_longhand(linear.weight.double().cpu().tolist(), p)
    want = [[sum(x[i, d].item() * w[j][d] for d in range(4)) for j in range(len(COUNTS))] for i in range(6)]
    torch.testing.assert_close(copy(x).cpu().double(), torch.tensor(want, dtype=torch.float64), **TOL[dtype])

    kept = tau_normalized_classifier(linear, p, keep_bias=True)
    torch.testing.assert_close(kept(x), copy(x) + linear.bias)
    kept.bias.data.add_(1.0)
    kept.weight.data.mul_(2.0)
    for k, v in linear.state_dict().items():
        assert torch.equal(v, before[k])  # the trained classifier is untouched


def test_tau_normalized_classifier_of_a_bias_free_layer():
    linear = nn.Linear(3, 2, bias=False)
    assert tau_normalized_classifier(linear, 1.0, keep_bias=True).bias is None


def test_tau_normalized_classifier_rejects_other_modules():
    with pytest.raises(ConfigError, match="Expected an nn.Linear classifier but got Conv2d"):
        tau_normalized_classifier(nn.Conv2d(3, 3, 1), 1.0)
