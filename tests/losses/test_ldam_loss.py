import pytest
import torch

from fbl.errors import ConfigError
from fbl.losses import LDAMLoss, create_loss
from fbl.losses.functional import ldam_loss, ldam_margins
from fbl.train_rules import resolve_train_rule

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


def margins_longhand(counts, max_m):
    """m_j = C / n_j^(1/4) with C chosen so that the largest margin is max_m."""
    raw = [1.0 / n**0.25 for n in counts]
    scale = max_m / max(raw)
    return [scale * r for r in raw]


def ldam_longhand(z, y, counts, max_m=0.5, s=30.0, weight=None, reduction="mean"):
    """CE(s * (z - m_y * onehot(y)), y): the margin comes off the target logit only."""
    m = margins_longhand(counts, max_m)
    losses, ws = [], []
    for i in range(z.shape[0]):
        t = int(y[i])
        row = [s * (z[i, j] - (m[t] if j == t else 0.0)) for j in range(z.shape[1])]
        losses.append(-log_softmax_longhand(row)[t])
        ws.append(1.0 if weight is None else float(weight[t]))
    return reduce_longhand(losses, ws, reduction)


def test_margins():
    want = margins_longhand(COUNTS, 0.5)
    assert max(want) == pytest.approx(0.5) and want[-1] == pytest.approx(0.5)  # the smallest class
    torch.testing.assert_close(
        ldam_margins(torch.tensor(COUNTS, dtype=torch.float64), 0.5), torch.tensor(want, dtype=torch.float64)
    )
    torch.testing.assert_close(
        LDAMLoss(COUNTS, max_m=0.3).margins.double(), torch.tensor(margins_longhand(COUNTS, 0.3), dtype=torch.float64)
    )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("max_m, s", [(0.5, 30.0), (0.3, 1.0)])
def test_matches_longhand_values_and_grads(device, dtype, reduction, weighted, max_m, s):
    z, y, f = batch()
    z = z / 4  # LDAM sees cosine-like logits of modest size
    weight = EXPLICIT_WEIGHT if weighted else None
    up = upstream_for(reduction, len(y))
    want, (want_dz,) = value_and_grads(lambda a: ldam_longhand(a, y, COUNTS, max_m, s, weight, reduction), [z], up)

    crit = LDAMLoss(COUNTS, max_m=max_m, s=s, weight=weight, reduction=reduction).to(device)
    yd = y.to(device)
    got, (got_dz, got_df) = value_and_grads(
        lambda a, b: crit(a, yd, features=b), [z.to(device, dtype), f.to(device, dtype)], up
    )
    assert got.dtype == dtype and got.device.type == device
    assert_close(got, want, dtype)
    assert_close(got_dz, want_dz, dtype)
    assert torch.count_nonzero(got_df) == 0

    twin = lambda a: ldam_loss(a, yd, COUNTS, max_m=max_m, s=s, weight=weight, reduction=reduction)  # noqa: E731
    got_fn, (got_fn_dz,) = value_and_grads(twin, [z.to(device, dtype)], up)
    assert_close(got_fn, want, dtype)
    assert_close(got_fn_dz, want_dz, dtype)


@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck(device):
    z, y, _ = batch()
    crit = LDAMLoss(COUNTS, s=5.0, weight=EXPLICIT_WEIGHT).to(device)
    assert torch.autograd.gradcheck(lambda a: crit(a / 4, y.to(device)), (z.to(device).requires_grad_(),))


def test_only_the_target_logit_loses_its_margin():
    """Every target is class 0, so only m_0 may matter: the tail margins must not change the loss."""
    z, _, _ = batch()
    y = torch.zeros(len(z), dtype=torch.long)
    got = LDAMLoss(COUNTS, s=2.0).to(torch.float64)(z, y)
    m0 = margins_longhand(COUNTS, 0.5)[0]
    shifted = z.clone()
    shifted[:, 0] -= m0
    assert_close(got, torch.nn.functional.cross_entropy(2.0 * shifted, y), torch.float64)


def test_ldam_drw_defers_class_balanced_weights():
    z, y, _ = batch()
    z = z / 4
    # LDAM-DRW: the drw rule's weights, assigned by the trainer each epoch, switch on at 160 of 200.
    crit = create_loss("LDAM", COUNTS).to(torch.float64)
    rule = resolve_train_rule("drw", COUNTS, total_epochs=200)
    cb = effective_number_longhand(COUNTS, 0.9999)
    crit.set_weight(rule.weight_at(159))
    assert crit.weight is None
    assert_close(crit(z, y), ldam_longhand(z, y, COUNTS), torch.float64)
    crit.set_weight(rule.weight_at(160))
    torch.testing.assert_close(crit.weight, torch.tensor(cb, dtype=torch.float64), rtol=1e-6, atol=0)
    assert_close(crit(z, y), ldam_longhand(z, y, COUNTS, weight=crit.weight.tolist()), torch.float64)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(max_m=0.0), r"Expected max_m \(largest margin\) > 0 but got 0.0"),
        (dict(max_m=-0.5), r"Expected max_m \(largest margin\) > 0 but got -0.5"),
        (dict(s=0), r"Expected s \(logit scale\) > 0 but got 0"),
        (dict(s=float("inf")), r"Expected s \(logit scale\) > 0 but got inf"),
    ],
)
def test_rejects_bad_hyper_parameters(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        LDAMLoss(COUNTS, **kwargs)
    z, y, _ = batch()
    with pytest.raises(ConfigError, match=message):
        ldam_loss(z, y, COUNTS, **kwargs)
