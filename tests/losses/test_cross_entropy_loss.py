import math

import pytest
import torch

from fbl.errors import ConfigError
from fbl.losses import CrossEntropyLoss, create_loss
from fbl.losses.functional import cross_entropy
from fbl.train_rules import resolve_train_rule

from ._helpers import (
    COUNTS,
    DEVICES,
    DTYPES,
    EXPLICIT_WEIGHT,
    assert_close,
    batch,
    effective_number_longhand,
    inverse_frequency_longhand,
    upstream_for,
    value_and_grads,
)


def ce_longhand(z, y, weight=None, reduction="mean"):
    """Value and analytic d(loss)/dz of weighted softmax cross-entropy, with plain loops and floats."""
    n, c = z.shape
    z = z.tolist()
    losses, grads, ws = [], [], []
    for i in range(n):
        t = int(y[i])
        exps = [math.exp(v) for v in z[i]]
        total = sum(exps)
        p = [e / total for e in exps]
        w = 1.0 if weight is None else float(weight[t])
        losses.append(-w * math.log(p[t]))
        grads.append([w * (p[j] - (1.0 if j == t else 0.0)) for j in range(c)])
        ws.append(w)
    losses, grads = torch.tensor(losses, dtype=torch.float64), torch.tensor(grads, dtype=torch.float64)
    if reduction == "none":
        return losses, grads  # row i is d loss_i / d z_i
    if reduction == "sum":
        return losses.sum(), grads
    return losses.sum() / sum(ws), grads / sum(ws)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_longhand_values_and_grads(device, dtype, reduction, weighted):
    z, y, f = batch()
    weight = EXPLICIT_WEIGHT if weighted else None
    up = upstream_for(reduction, len(y))
    want, want_dz = ce_longhand(z, y, weight, reduction)
    want_dz = want_dz * (up.unsqueeze(1) if reduction == "none" else up)

    crit = CrossEntropyLoss(COUNTS, weight=weight, reduction=reduction).to(device)
    yd = y.to(device)
    got, (got_dz, got_df) = value_and_grads(
        lambda a, b: crit(a, yd, features=b), [z.to(device, dtype), f.to(device, dtype)], up
    )
    assert got.dtype == dtype and got.device.type == device
    assert_close(got, want, dtype)
    assert_close(got_dz, want_dz, dtype)
    assert torch.count_nonzero(got_df) == 0  # features are accepted and ignored

    got_fn, (got_fn_dz,) = value_and_grads(
        lambda a: cross_entropy(a, yd, weight=weight, reduction=reduction), [z.to(device, dtype)], up
    )
    assert_close(got_fn, want, dtype)
    assert_close(got_fn_dz, want_dz, dtype)


@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck(device):
    z, y, _ = batch()
    crit = CrossEntropyLoss(COUNTS, weight=EXPLICIT_WEIGHT).to(device)
    assert torch.autograd.gradcheck(lambda a: crit(a, y.to(device)), (z.to(device).requires_grad_(),))


def test_class_balanced_variant_uses_effective_number_weights():
    z, y, _ = batch()
    crit = create_loss("cb-ce", COUNTS)
    assert type(crit) is CrossEntropyLoss
    want_w = effective_number_longhand(COUNTS, 0.9999)
    torch.testing.assert_close(crit.weight.double(), torch.tensor(want_w, dtype=torch.float64), rtol=1e-6, atol=0)
    want, _ = ce_longhand(z, y, want_w)
    torch.testing.assert_close(crit(z.float(), y).double(), want, rtol=1e-5, atol=1e-6)


def test_inverse_frequency_weight_from_the_balanced_rw_rule():
    z, y, _ = batch()
    crit = CrossEntropyLoss(COUNTS)
    crit.set_weight(resolve_train_rule("balanced-rw", COUNTS, total_epochs=10).weight_at(0))
    want_w = inverse_frequency_longhand(COUNTS)
    torch.testing.assert_close(crit.weight.double(), torch.tensor(want_w, dtype=torch.float64), rtol=1e-6, atol=0)
    want, _ = ce_longhand(z, y, want_w)
    torch.testing.assert_close(crit(z.float(), y).double(), want, rtol=1e-5, atol=1e-6)


def test_weight_switched_on_and_off():
    z, y, _ = batch()
    crit = CrossEntropyLoss(COUNTS).to(torch.float64)
    unweighted, _ = ce_longhand(z, y)
    weighted, _ = ce_longhand(z, y, EXPLICIT_WEIGHT)
    assert_close(crit(z, y), unweighted, torch.float64)
    crit.set_weight(EXPLICIT_WEIGHT)
    assert_close(crit(z, y), weighted, torch.float64)
    crit.set_weight(None)
    assert_close(crit(z, y), unweighted, torch.float64)


@pytest.mark.parametrize("name", ["ce", "CE", "cross-entropy", "CrossEntropy", "cross_entropy"])
def test_registry_names(name):
    assert type(create_loss(name, COUNTS)) is CrossEntropyLoss


def test_rejects_explicit_weight_for_the_cb_variant():
    with pytest.raises(ConfigError, match="give no weight"):
        create_loss("cb-ce", COUNTS, weight=EXPLICIT_WEIGHT)


def test_rejects_wrong_number_of_classes():
    z, y, _ = batch()
    with pytest.raises(ValueError, match="Expected logits with 6 classes"):
        CrossEntropyLoss(COUNTS + [1])(z, y)
