import pytest
import torch

from fbl.errors import ConfigError
from fbl.losses import FocalLoss, create_loss
from fbl.losses.functional import focal_loss

from ._helpers import (
    COUNTS,
    DEVICES,
    DTYPES,
    EXPLICIT_WEIGHT,
    assert_close,
    batch,
    effective_number_longhand,
    reduce_longhand,
    upstream_for,
    value_and_grads,
)


def focal_longhand(z, y, gamma, weight=None, reduction="mean"):
    """-w_y (1 - p_t)^gamma log p_t per sample, p_t = exp(z_t) / sum_k exp(z_k); weighted mean divides by sum w_y."""
    losses, ws = [], []
    for i in range(z.shape[0]):
        t = int(y[i])
        p_t = torch.exp(z[i, t]) / sum(torch.exp(z[i, k]) for k in range(z.shape[1]))
        losses.append(-((1.0 - p_t) ** gamma) * torch.log(p_t))
        ws.append(1.0 if weight is None else float(weight[t]))
    return reduce_longhand(losses, ws, reduction)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("gamma", [1.0, 2.0, 0.5])
def test_matches_longhand_values_and_grads(device, dtype, reduction, weighted, gamma):
    z, y, f = batch()
    weight = EXPLICIT_WEIGHT if weighted else None
    up = upstream_for(reduction, len(y))
    want, (want_dz,) = value_and_grads(lambda a: focal_longhand(a, y, gamma, weight, reduction), [z], up)

    crit = FocalLoss(COUNTS, gamma=gamma, weight=weight, reduction=reduction).to(device)
    yd = y.to(device)
    got, (got_dz, got_df) = value_and_grads(
        lambda a, b: crit(a, yd, features=b), [z.to(device, dtype), f.to(device, dtype)], up
    )
    assert got.dtype == dtype and got.device.type == device
    assert_close(got, want, dtype)
    assert_close(got_dz, want_dz, dtype)
    assert torch.count_nonzero(got_df) == 0

    twin = lambda a: focal_loss(a, yd, gamma=gamma, weight=weight, reduction=reduction)  # noqa: E731
    got_fn, (got_fn_dz,) = value_and_grads(twin, [z.to(device, dtype)], up)
    assert_close(got_fn, want, dtype)
    assert_close(got_fn_dz, want_dz, dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("gamma", [1.0, 2.0])
def test_gradcheck(device, gamma):
    z, y, _ = batch()
    crit = FocalLoss(COUNTS, gamma=gamma, weight=EXPLICIT_WEIGHT).to(device)
    assert torch.autograd.gradcheck(lambda a: crit(a, y.to(device)), (z.to(device).requires_grad_(),))


def test_default_gamma_is_one():
    assert FocalLoss(COUNTS).gamma == 1.0
    assert create_loss("Focal", COUNTS).gamma == 1.0


@pytest.mark.parametrize("weighted", [False, True])
def test_gamma_zero_is_cross_entropy_with_the_same_weighted_mean(weighted):
    z, y, _ = batch()
    weight = torch.tensor(EXPLICIT_WEIGHT, dtype=torch.float64) if weighted else None
    got = FocalLoss(COUNTS, gamma=0.0, weight=weight).to(torch.float64)(z, y)
    assert_close(got, torch.nn.functional.cross_entropy(z, y, weight=weight), torch.float64)


def test_confident_samples_are_down_weighted():
    z = torch.tensor([[8.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([0, 1])
    per_sample = FocalLoss([5, 5], gamma=2.0, reduction="none").to(torch.float64)(z, y)
    ce = torch.nn.functional.cross_entropy(z, y, reduction="none")
    ratio = per_sample / ce
    assert ratio[0] < 1e-6 and ratio[1] == pytest.approx(0.25)


def test_weight_switched_on():
    z, y, _ = batch()
    crit = FocalLoss(COUNTS, gamma=2.0).to(torch.float64)
    assert_close(crit(z, y), focal_longhand(z, y, 2.0), torch.float64)
    crit.set_weight(EXPLICIT_WEIGHT)
    assert_close(crit(z, y), focal_longhand(z, y, 2.0, weight=EXPLICIT_WEIGHT), torch.float64)


def test_class_balanced_variant():
    z, y, _ = batch()
    crit = create_loss("cb-focal", COUNTS, gamma=2.0, beta=0.999)
    assert type(crit) is FocalLoss and crit.gamma == 2.0
    w = effective_number_longhand(COUNTS, 0.999)
    torch.testing.assert_close(crit.weight.double(), torch.tensor(w, dtype=torch.float64), rtol=1e-6, atol=0)
    torch.testing.assert_close(crit(z.float(), y).double(), focal_longhand(z, y, 2.0, w), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("gamma", [-0.5, float("nan"), "two"])
def test_rejects_bad_gamma(gamma):
    with pytest.raises(ConfigError, match=r"Expected gamma \(focusing parameter\) >= 0 but got"):
        FocalLoss(COUNTS, gamma=gamma)
    z, y, _ = batch()
    with pytest.raises(ConfigError, match=r"Expected gamma \(focusing parameter\) >= 0 but got"):
        focal_loss(z, y, gamma=gamma)
