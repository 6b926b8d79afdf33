import math

import pytest
import torch

from fbl.losses import BalancedSoftmaxLoss, create_loss
from fbl.losses.functional import balanced_softmax_loss

from ._helpers import (
    COUNTS,
    DEVICES,
    DTYPES,
    EXPLICIT_WEIGHT,
    assert_close,
    batch,
    log_softmax_longhand,
    reduce_longhand,
    upstream_for,
    value_and_grads,
)


def balanced_softmax_longhand(z, y, counts, weight=None, reduction="mean"):
    """CE(z_j + log n_j, y)."""
    losses, ws = [], []
    for i in range(z.shape[0]):
        t = int(y[i])
        row = [z[i, j] + math.log(counts[j]) for j in range(z.shape[1])]
        losses.append(-log_softmax_longhand(row)[t])
        ws.append(1.0 if weight is None else float(weight[t]))
    return reduce_longhand(losses, ws, reduction)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_longhand_values_and_grads(device, dtype, reduction, weighted):
    z, y, f = batch()
    weight = EXPLICIT_WEIGHT if weighted else None
    up = upstream_for(reduction, len(y))
    want, (want_dz,) = value_and_grads(lambda a: balanced_softmax_longhand(a, y, COUNTS, weight, reduction), [z], up)

    crit = BalancedSoftmaxLoss(COUNTS, weight=weight, reduction=reduction).to(device)
    yd = y.to(device)
    got, (got_dz, got_df) = value_and_grads(
        lambda a, b: crit(a, yd, features=b), [z.to(device, dtype), f.to(device, dtype)], up
    )
    assert got.dtype == dtype and got.device.type == device
    assert_close(got, want, dtype)
    assert_close(got_dz, want_dz, dtype)
    assert torch.count_nonzero(got_df) == 0

    twin = lambda a: balanced_softmax_loss(a, yd, COUNTS, weight=weight, reduction=reduction)  # noqa: E731
    got_fn, (got_fn_dz,) = value_and_grads(twin, [z.to(device, dtype)], up)
    assert_close(got_fn, want, dtype)
    assert_close(got_fn_dz, want_dz, dtype)


@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck(device):
    z, y, _ = batch()
    crit = BalancedSoftmaxLoss(COUNTS, weight=EXPLICIT_WEIGHT).to(device)
    assert torch.autograd.gradcheck(lambda a: crit(a, y.to(device)), (z.to(device).requires_grad_(),))


def test_balanced_counts_give_cross_entropy():
    z, y, _ = batch()
    got = BalancedSoftmaxLoss([40] * len(COUNTS)).to(torch.float64)(z, y)
    assert_close(got, torch.nn.functional.cross_entropy(z, y), torch.float64)


def test_weight_switched_on():
    z, y, _ = batch()
    crit = BalancedSoftmaxLoss(COUNTS).to(torch.float64)
    assert_close(crit(z, y), balanced_softmax_longhand(z, y, COUNTS), torch.float64)
    crit.set_weight(EXPLICIT_WEIGHT)
    assert_close(crit(z, y), balanced_softmax_longhand(z, y, COUNTS, EXPLICIT_WEIGHT), torch.float64)


@pytest.mark.parametrize("name", ["balanced-softmax", "Balanced_Softmax", "BALANCED-SOFTMAX"])
def test_registry_names(name):
    assert type(create_loss(name, COUNTS)) is BalancedSoftmaxLoss
