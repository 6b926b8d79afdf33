import math

import pytest
import torch

from fbl.errors import ConfigError
from fbl.losses import LogitAdjustedLoss, create_loss
from fbl.losses.functional import logit_adjusted_loss

from ._helpers import (
    COUNTS,
    DEVICES,
    DTYPES,
    EXPLICIT_WEIGHT,
    assert_close,
    batch,
    effective_number_longhand,
    log_softmax_longhand,
    reduce_longhand,
    upstream_for,
    value_and_grads,
)


def logit_adjusted_longhand(z, y, counts, tau=1.0, weight=None, reduction="mean"):
    """CE(z_j + tau * log pi_j, y) with pi_j = n_j / sum_k n_k."""
    total = sum(counts)
    losses, ws = [], []
    for i in range(z.shape[0]):
        t = int(y[i])
        row = [z[i, j] + tau * math.log(counts[j] / total) for j in range(z.shape[1])]
        losses.append(-log_softmax_longhand(row)[t])
        ws.append(1.0 if weight is None else float(weight[t]))
    return reduce_longhand(losses, ws, reduction)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("tau", [1.0, 1.5])
def test_matches_longhand_values_and_grads(device, dtype, reduction, weighted, tau):
    z, y, f = batch()
    weight = EXPLICIT_WEIGHT if weighted else None
    up = upstream_for(reduction, len(y))
    want, (want_dz,) = value_and_grads(lambda a: logit_adjusted_longhand(a, y, COUNTS, tau, weight, reduction), [z], up)

    crit = LogitAdjustedLoss(COUNTS, tau=tau, weight=weight, reduction=reduction).to(device)
    yd = y.to(device)
    got, (got_dz, got_df) = value_and_grads(
        lambda a, b: crit(a, yd, features=b), [z.to(device, dtype), f.to(device, dtype)], up
    )
    assert got.dtype == dtype and got.device.type == device
    assert_close(got, want, dtype)
    assert_close(got_dz, want_dz, dtype)
    assert torch.count_nonzero(got_df) == 0

    twin = lambda a: logit_adjusted_loss(a, yd, COUNTS, tau=tau, weight=weight, reduction=reduction)  # noqa: E731
    got_fn, (got_fn_dz,) = value_and_grads(twin, [z.to(device, dtype)], up)
    assert_close(got_fn, want, dtype)
    assert_close(got_fn_dz, want_dz, dtype)


@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck(device):
    z, y, _ = batch()
    crit = LogitAdjustedLoss(COUNTS, tau=1.5, weight=EXPLICIT_WEIGHT).to(device)
    assert torch.autograd.gradcheck(lambda a: crit(a, y.to(device)), (z.to(device).requires_grad_(),))


def test_tau_zero_is_cross_entropy_and_default_tau_is_one():
    z, y, _ = batch()
    assert LogitAdjustedLoss(COUNTS).tau == 1.0
    got = LogitAdjustedLoss(COUNTS, tau=0.0).to(torch.float64)(z, y)
    assert_close(got, torch.nn.functional.cross_entropy(z, y), torch.float64)


def test_weight_switched_on():
    z, y, _ = batch()
    crit = LogitAdjustedLoss(COUNTS).to(torch.float64)
    assert_close(crit(z, y), logit_adjusted_longhand(z, y, COUNTS), torch.float64)
    crit.set_weight(effective_number_longhand(COUNTS, 0.99))
    assert_close(crit(z, y), logit_adjusted_longhand(z, y, COUNTS, weight=crit.weight.tolist()), torch.float64)


@pytest.mark.parametrize("tau", [-1.0, float("nan")])
def test_rejects_bad_tau(tau):
    with pytest.raises(ConfigError, match=r"Expected tau \(adjustment strength\) >= 0 but got"):
        LogitAdjustedLoss(COUNTS, tau=tau)
    z, y, _ = batch()
    with pytest.raises(ConfigError, match=r"Expected tau \(adjustment strength\) >= 0 but got"):
        logit_adjusted_loss(z, y, COUNTS, tau=tau)


@pytest.mark.parametrize("name", ["logit-adjusted", "Logit_Adjusted", "logit-adjustment"])
def test_registry_names(name):
    assert type(create_loss(name, COUNTS, tau=2.0)) is LogitAdjustedLoss
