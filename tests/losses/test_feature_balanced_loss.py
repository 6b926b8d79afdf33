import math

import pytest
import torch

from fbl.errors import ConfigError
from fbl.losses import FeatureBalancedLoss, create_loss
from fbl.losses.functional import class_stimulus, feature_balanced_loss
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

EPS = 1e-12  # added to ||f|| by the loss


def stimulus_longhand(counts):
    """lambda~_j = (log n_max - log n_j) / (log n_max - log n_min); zeros when all counts are equal."""
    logs = [math.log(n) for n in counts]
    hi, lo = max(logs), min(logs)
    if hi == lo:
        return [0.0] * len(counts)
    return [(hi - v) / (hi - lo) for v in logs]


def fbl_longhand(z, y, f, counts, lambda_, alpha, weight=None, reduction="mean"):
    """CE of z_ij - alpha * A * lambda~_j / (||f_i|| + eps) for EVERY class j, with loops over scalars."""
    lam = stimulus_longhand(counts)
    n, c = z.shape
    losses, ws = [], []
    for i in range(n):
        norm = torch.sqrt(sum(f[i, d] ** 2 for d in range(f.shape[1])))
        shifted = [z[i, j] - alpha * lambda_ * lam[j] / (norm + EPS) for j in range(c)]
        losses.append(-log_softmax_longhand(shifted)[int(y[i])])
        ws.append(1.0 if weight is None else float(weight[int(y[i])]))
    return reduce_longhand(losses, ws, reduction)


def reference(z, y, f, counts, lambda_, alpha, weight, reduction, upstream):
    return value_and_grads(
        lambda a, b: fbl_longhand(a, y, b, counts, lambda_, alpha, weight, reduction), [z, f], upstream
    )


# --- class stimulus ----------------------------------------------------------------------------


@pytest.mark.parametrize("counts", [COUNTS, [100, 10, 1], [7, 300, 300, 2], [5, 5, 5], [42]])
def test_class_stimulus_matches_longhand(counts):
    got = class_stimulus(torch.tensor(counts, dtype=torch.float64))
    torch.testing.assert_close(got, torch.tensor(stimulus_longhand(counts), dtype=torch.float64))


def test_class_stimulus_is_zero_for_balanced_counts():
    assert torch.equal(class_stimulus(torch.full((4,), 9.0)), torch.zeros(4))


# --- values and gradients ---------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_longhand_values_and_grads(device, dtype, reduction, weighted):
    z, y, f = batch()
    weight = EXPLICIT_WEIGHT if weighted else None
    lambda_, epoch = 6.0, 120
    alpha = (epoch / (200 - 10)) ** 2
    up = upstream_for(reduction, len(y))
    want, (want_dz, want_df) = reference(z, y, f, COUNTS, lambda_, alpha, weight, reduction, up)

    crit = FeatureBalancedLoss(COUNTS, lambda_=lambda_, total_epochs=200, weight=weight, reduction=reduction).to(device)
    crit.set_epoch(epoch)
    yd = y.to(device)
    got, (got_dz, got_df) = value_and_grads(
        lambda a, b: crit(a, yd, features=b), [z.to(device, dtype), f.to(device, dtype)], up
    )
    assert got.dtype == dtype and got.device.type == device
    assert_close(got, want, dtype)
    assert_close(got_dz, want_dz, dtype)
    assert_close(got_df, want_df, dtype)

    twin = lambda a, b: feature_balanced_loss(a, yd, b, COUNTS, lambda_, alpha, weight=weight, reduction=reduction)  # noqa: E731
    got_fn, (got_fn_dz, got_fn_df) = value_and_grads(twin, [z.to(device, dtype), f.to(device, dtype)], up)
    assert_close(got_fn, want, dtype)
    assert_close(got_fn_dz, want_dz, dtype)
    assert_close(got_fn_df, want_df, dtype)


@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck(device):
    z, y, f = batch()
    crit = FeatureBalancedLoss(COUNTS, lambda_=6.0, schedule="constant", weight=EXPLICIT_WEIGHT).to(device)
    crit.set_epoch(0)
    yd = y.to(device)
    inputs = (z.to(device).requires_grad_(), f.to(device).requires_grad_())
    assert torch.autograd.gradcheck(lambda a, b: crit(a, yd, features=b), inputs)


def test_every_class_is_shifted_not_only_the_target():
    """All targets are the head class (lambda~ = 0): only the non-target penalties can change the loss."""
    z, _, f = batch()
    y = torch.zeros(len(z), dtype=torch.long)
    lambda_, alpha = 60.0, 1.0
    crit = FeatureBalancedLoss(COUNTS, lambda_=lambda_, schedule="constant").to(torch.float64)
    crit.set_epoch(0)
    got, (got_dz,) = value_and_grads(lambda a: crit(a, y, features=f), [z], torch.tensor(1.0, dtype=torch.float64))

    plain_ce = torch.nn.functional.cross_entropy(z, y)
    assert got < plain_ce  # the tail logits were pushed down, so the head target is easier
    assert_close(got, fbl_longhand(z, y, f, COUNTS, lambda_, alpha), torch.float64)

    # d loss / d z_ij = (softmax(z~_i)_j - [j = y_i]) / N with z~ shifted in every column.
    lam = stimulus_longhand(COUNTS)
    want_dz = torch.zeros_like(z)
    for i in range(len(z)):
        norm = math.sqrt(sum(v * v for v in f[i].tolist()))
        shifted = [z[i, j].item() - alpha * lambda_ * lam[j] / (norm + EPS) for j in range(z.shape[1])]
        total = sum(math.exp(v) for v in shifted)
        for j in range(z.shape[1]):
            want_dz[i, j] = (math.exp(shifted[j]) / total - (1.0 if j == 0 else 0.0)) / len(z)
    assert_close(got_dz, want_dz, torch.float64)
    unshifted_dz = (torch.softmax(z, dim=1) - torch.nn.functional.one_hot(y, z.shape[1])) / len(z)
    assert (got_dz - unshifted_dz).abs().max() > 1e-3


def test_feature_gradient_matches_the_derivative_through_the_norm():
    """dL/df_i = sum_j (p~_ij - [j = y_i]) / N * alpha A lambda~_j / (||f_i|| + eps)^2 * f_i / ||f_i||."""
    z, y, f = batch()
    lambda_, alpha = 6.0, 1.0
    crit = FeatureBalancedLoss(COUNTS, lambda_=lambda_, schedule="constant").to(torch.float64)
    _, (_, got_df) = value_and_grads(
        lambda a, b: crit(a, y, features=b), [z, f], torch.tensor(1.0, dtype=torch.float64)
    )
    assert torch.count_nonzero(got_df) == got_df.numel()

    lam = stimulus_longhand(COUNTS)
    n, c = z.shape
    want_df = torch.zeros_like(f)
    for i in range(n):
        fi = f[i].tolist()
        norm = math.sqrt(sum(v * v for v in fi))
        shifted = [z[i, j].item() - alpha * lambda_ * lam[j] / (norm + EPS) for j in range(c)]
        total = sum(math.exp(v) for v in shifted)
        d_norm = 0.0
        for j in range(c):
            d_shifted = (math.exp(shifted[j]) / total - (1.0 if j == int(y[i]) else 0.0)) / n
            d_norm += d_shifted * alpha * lambda_ * lam[j] / (norm + EPS) ** 2
        for d in range(len(fi)):
            want_df[i, d] = d_norm * fi[d] / norm
    assert_close(got_df, want_df, torch.float64)


def test_alpha_zero_and_balanced_counts_are_cross_entropy():
    z, y, f = batch()
    ce = torch.nn.functional.cross_entropy(z, y)
    at_zero = FeatureBalancedLoss(COUNTS).to(torch.float64)  # parabolic: alpha(0) = 0
    assert at_zero.alpha == 0.0
    assert_close(at_zero(z, y, features=f), ce, torch.float64)
    balanced = FeatureBalancedLoss([10] * len(COUNTS), schedule="constant").to(torch.float64)
    assert_close(balanced(z, y, features=f), ce, torch.float64)


# --- epochs and curricula ----------------------------------------------------------------------


def test_set_epoch_follows_the_parabolic_curriculum():
    crit = FeatureBalancedLoss(COUNTS, total_epochs=200)
    assert crit.alpha == 0.0
    for epoch, want in [(0, 0.0), (95, 0.25), (190, 1.0), (199, (199 / 190) ** 2)]:
        crit.set_epoch(epoch)
        assert crit.epoch == epoch
        assert crit.alpha == pytest.approx(want, rel=1e-12)
    assert crit.alpha > 1.0  # the reference curriculum overshoots 1 in the last nine epochs


@pytest.mark.parametrize("total_epochs", range(1, 11))
def test_short_runs_of_the_literal_curve_ramp_to_one_without_dividing_by_zero(total_epochs):
    crit = FeatureBalancedLoss(COUNTS, total_epochs=total_epochs, schedule="parabolic-literal")
    alphas = []
    for epoch in range(total_epochs):
        crit.set_epoch(epoch)
        alphas.append(crit.alpha)
    assert all(math.isfinite(a) for a in alphas)
    assert alphas[0] == 0.0
    assert alphas == sorted(alphas)
    if total_epochs > 1:  # a single epoch cannot both start at 0 and end at 1; it stays at 0
        assert alphas[-1] == pytest.approx(1.0)


def test_set_epoch_rejects_negative_epochs():
    with pytest.raises(ConfigError, match="0-based epoch"):
        FeatureBalancedLoss(COUNTS).set_epoch(-1)


# --- weighting ---------------------------------------------------------------------------------


def test_under_the_drw_rule_the_weight_switches_on_at_drw_epoch():
    z, y, f = batch()
    lambda_ = 6.0
    crit = FeatureBalancedLoss(COUNTS, lambda_=lambda_, schedule="constant", total_epochs=10).to(torch.float64)
    rule = resolve_train_rule("drw", COUNTS, total_epochs=10, drw_epoch=4)
    cb = effective_number_longhand(COUNTS, 0.9999)
    crit.set_epoch(3)
    crit.set_weight(rule.weight_at(3))
    assert crit.weight is None
    assert_close(crit(z, y, features=f), fbl_longhand(z, y, f, COUNTS, lambda_, 1.0), torch.float64)
    crit.set_epoch(4)
    crit.set_weight(rule.weight_at(4))
    torch.testing.assert_close(crit.weight, torch.tensor(cb, dtype=torch.float64), rtol=1e-6, atol=0)
    want = fbl_longhand(z, y, f, COUNTS, lambda_, 1.0, weight=crit.weight.tolist())
    assert_close(crit(z, y, features=f), want, torch.float64)


def test_class_balanced_variant():
    crit = create_loss("cb-fbl", COUNTS, lambda_=60.0, total_epochs=200)
    assert type(crit) is FeatureBalancedLoss
    want = torch.tensor(effective_number_longhand(COUNTS, 0.9999), dtype=torch.float64)
    torch.testing.assert_close(crit.weight.double(), want, rtol=1e-6, atol=0)


# --- arguments ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["FeaBal", "fbl", "FBL", "feature-balanced", "feature_balanced"])
def test_registry_names(name):
    crit = create_loss(name, COUNTS, lambda_=150.0, total_epochs=90)
    assert type(crit) is FeatureBalancedLoss
    assert crit.lambda_ == 150.0 and crit.total_epochs == 90


def test_missing_features_is_an_error_that_says_so():
    z, y, _ = batch()
    with pytest.raises(ValueError, match="features"):
        FeatureBalancedLoss(COUNTS)(z, y)
    with pytest.raises(ValueError, match="features"):
        feature_balanced_loss(z, y, None, COUNTS, 60.0, 1.0)


@pytest.mark.parametrize(
    "counts, message",
    [
        ([10, 0, 5], "positive count for class 1"),
        ([10, 4, -3], "positive count for class 2"),
        ([2.5, 4, 3], "integer count for class 0"),
        ([10, float("nan"), 5], "integer count for class 1"),
    ],
)
def test_bad_class_counts_name_the_class(counts, message):
    z, y, f = batch(num_classes=3)
    with pytest.raises(ValueError, match=message):
        FeatureBalancedLoss(counts)
    with pytest.raises(ValueError, match=message):
        feature_balanced_loss(z, y, f, counts, 60.0, 1.0)
    with pytest.raises(ValueError, match=message):
        feature_balanced_loss(z, y, f, torch.tensor(counts, dtype=torch.float64), 60.0, 1.0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(lambda_=-1.0), r"Expected lambda_ \(stimulus strength A\) >= 0 but got -1.0"),
        (dict(total_epochs=0), "Expected total_epochs >= 1 but got 0"),
        (dict(schedule="quadratic"), "Unknown alpha schedule 'quadratic'; choose one of: "),
        (dict(reduction="avg"), "Expected reduction in"),
    ],
)
def test_bad_hyper_parameters(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        FeatureBalancedLoss(COUNTS, **kwargs)


def test_wrong_feature_shape():
    z, y, f = batch()
    with pytest.raises(ValueError, match=r"Expected features of shape \(7, D\)"):
        FeatureBalancedLoss(COUNTS)(z, y, features=f[:3])
