"""RIDE, SADE, BalPoE and FBL-experts losses against longhand formulas (values and gradients)."""

import math

import pytest
import torch

from fbl.losses import BalPoELoss, FBLExpertsLoss, RIDELoss, SADELoss, build_loss
from fbl.losses.ensemble_functional import inverse_prior
from fbl.models.multi_expert_resnet import ExpertOutputs

COUNTS = [100, 30, 10, 3]
N, K, C, D = 6, 3, 4, 5
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-12}


def _inputs(dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.rand(N, K, C, generator=g, dtype=dtype) * 2 - 1  # cosine logits in [-1, 1]
    features = torch.rand(N, K, D, generator=g, dtype=dtype) + 0.1
    target = torch.tensor([0, 1, 2, 3, 0, 3])
    return logits, features, target


def _ce(z, y, weight=None):
    """Longhand cross-entropy of one row: -z_y + log sum_j exp z_j, weighted mean over rows."""
    rows = [-z[i, y[i]] + torch.log(torch.exp(z[i]).sum()) for i in range(len(y))]
    w = [1.0 if weight is None else weight[y[i]] for i in range(len(y))]
    return sum(wi * r for wi, r in zip(w, rows, strict=True)) / sum(w)


def _log_prior(dtype):
    total = sum(COUNTS)
    return torch.tensor([math.log(n / total) for n in COUNTS], dtype=dtype)


def _call(loss, logits, features, target):
    aggregate = logits.mean(dim=1)
    return loss(aggregate, target, features=features.flatten(1), experts=ExpertOutputs(logits, features))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sade_is_softmax_balanced_and_inverse_softmax(dtype):
    logits, features, target = _inputs(dtype)
    log_prior, s, tau = _log_prior(dtype), 30.0, 2.0
    inverse = torch.tensor([3 / 143, 10 / 143, 30 / 143, 100 / 143], dtype=dtype)  # the prior, class order reversed
    expected = (
        _ce(s * logits[:, 0], target)
        + _ce(s * logits[:, 1] + log_prior, target)
        + _ce(s * logits[:, 2] + log_prior - tau * inverse.log(), target)
    )
    got = _call(SADELoss(COUNTS, s=s, tau=tau), logits, features, target)
    assert torch.allclose(got, expected, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype])


def test_inverse_prior_reverses_the_rank_of_unsorted_counts():
    # counts 10, 100, 3, 30: the largest class (1) gets the smallest prior, and so on.
    got = inverse_prior(torch.tensor([10.0, 100.0, 3.0, 30.0], dtype=torch.float64))
    assert torch.allclose(got, torch.tensor([30.0, 3.0, 100.0, 10.0], dtype=torch.float64) / 143)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_balpoe_averages_logit_adjusted_losses(dtype):
    logits, features, target = _inputs(dtype)
    log_prior, s, taus = _log_prior(dtype), 30.0, (0.0, 1.0, 2.0)
    expected = sum(_ce(s * logits[:, k] + taus[k] * log_prior, target) for k in range(K)) / K
    got = _call(BalPoELoss(COUNTS, taus=taus, s=s), logits, features, target)
    assert torch.allclose(got, expected, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fbl_experts_average_fbl_at_each_strength(dtype):
    logits, features, target = _inputs(dtype)
    lambdas, alpha = (15.0, 30.0, 60.0), 0.5
    logs = [math.log(n) for n in COUNTS]
    stimulus = torch.tensor([(max(logs) - v) / (max(logs) - min(logs)) for v in logs], dtype=dtype)
    expected = 0
    for k in range(K):
        norms = features[:, k].pow(2).sum(dim=1).sqrt()[:, None]
        expected = expected + _ce(logits[:, k] - alpha * lambdas[k] * stimulus / norms, target) / K
    loss = FBLExpertsLoss(COUNTS, expert_lambdas=lambdas, total_epochs=4)
    loss.alpha = alpha
    got = _call(loss, logits, features, target)
    assert torch.allclose(got, expected, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype])


def _ride_longhand(logits, target, s, max_m, factor, weight=None, temperature=None):
    dtype = logits.dtype
    raw = [n**-0.25 for n in COUNTS]
    margins = torch.tensor([r * max_m / max(raw) for r in raw], dtype=dtype)
    t = torch.ones(C, dtype=dtype) if temperature is None else temperature
    mean_z = (s * logits).mean(dim=1).detach()
    total = 0
    for k in range(K):
        shifted = s * logits[:, k] - s * margins[target][:, None] * torch.nn.functional.one_hot(target, C).to(dtype)
        total = total + _ce(shifted, target, weight)
        p = torch.exp(mean_z / t) / torch.exp(mean_z / t).sum(dim=1, keepdim=True)
        q = torch.exp(s * logits[:, k] / t) / torch.exp(s * logits[:, k] / t).sum(dim=1, keepdim=True)
        kl = (p * (p.log() - q.log())).sum() / N
        total = total + factor * t.mean() ** 2 * kl
    return total


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ride_is_ldam_plus_the_diversity_term(dtype):
    logits, features, target = _inputs(dtype)
    expected = _ride_longhand(logits, target, 30.0, 0.5, -0.45)
    got = _call(RIDELoss(COUNTS, diversity_factor=-0.45), logits, features, target)
    assert torch.allclose(got, expected, rtol=TOLERANCE[dtype] * 10, atol=TOLERANCE[dtype] * 10)


def test_ride_weights_ldam_and_uses_per_class_temperatures_once_reweighted():
    logits, features, target = _inputs(torch.float64)
    weight = torch.tensor([0.25, 0.5, 1.0, 2.25], dtype=torch.float64)  # exact in float32, as weights are held
    total = sum(COUNTS)
    d = [len(COUNTS) * (n / total) * 0.05 + 0.95 for n in COUNTS]
    temperature = torch.tensor([v / max(d) for v in d], dtype=torch.float64)
    expected = _ride_longhand(logits, target, 30.0, 0.5, -0.2, weight=weight, temperature=temperature)
    loss = RIDELoss(COUNTS).double()
    loss.set_weight(weight)
    got = _call(loss, logits, features, target)
    assert torch.allclose(got, expected, rtol=1e-10), (got - expected).item()


@pytest.mark.parametrize("name", ["ride", "sade", "balpoe", "fbl-experts"])
def test_gradients_match_the_longhand_formula_and_gradcheck(name):
    logits, features, target = _inputs(torch.float64, seed=3)
    loss = build_loss(name, COUNTS).double()
    loss.alpha = 0.7 if name == "fbl-experts" else loss.alpha

    def f(z, feats):
        return _call(loss, z, feats, target)

    z, feats = logits.clone().requires_grad_(), features.clone().requires_grad_()
    assert torch.autograd.gradcheck(f, (z, feats))
    longhand = {
        "sade": lambda z, _: (
            _ce(30 * z[:, 0], target)
            + _ce(30 * z[:, 1] + _log_prior(z.dtype), target)
            + _ce(
                30 * z[:, 2] + _log_prior(z.dtype) - 2 * inverse_prior(torch.tensor(COUNTS, dtype=z.dtype)).log(),
                target,
            )
        ),
        "balpoe": lambda z, _: sum(_ce(30 * z[:, k] + k * _log_prior(z.dtype), target) for k in range(K)) / K,
        "ride": lambda z, _: _ride_longhand(z, target, 30.0, 0.5, -0.2),
    }
    if name in longhand:
        (mine,) = torch.autograd.grad(f(z, feats), z)
        (reference,) = torch.autograd.grad(longhand[name](z, feats), z)
        assert torch.allclose(mine, reference, rtol=1e-9, atol=1e-12)


def test_an_ensemble_loss_refuses_a_single_model_and_a_wrong_expert_count():
    logits, features, target = _inputs(torch.float32)
    with pytest.raises(ValueError, match="multi-expert model"):
        SADELoss(COUNTS)(logits.mean(dim=1), target, features=features.flatten(1))
    two = ExpertOutputs(logits[:, :2], features[:, :2])
    with pytest.raises(ValueError, match="Expected 3 experts"):
        SADELoss(COUNTS)(logits.mean(dim=1), target, experts=two)
    with pytest.raises(ValueError, match="Expected 2 experts"):
        BalPoELoss(COUNTS, taus=[0.5, 1.5])(logits.mean(dim=1), target, experts=ExpertOutputs(logits, features))


def test_the_ensemble_losses_declare_that_they_need_the_experts():
    assert all(build_loss(name, COUNTS).needs_experts for name in ("ride", "sade", "balpoe", "fbl-experts"))
    assert not build_loss("fbl", COUNTS).needs_experts and not build_loss("ldam", COUNTS).needs_experts
    assert RIDELoss(COUNTS).logit_scale == 30.0 and FBLExpertsLoss(COUNTS).logit_scale == 1.0
    assert build_loss("fbl-experts", COUNTS, settings={"expert_lambdas": [10.0, 20.0]}).expert_lambdas == (10.0, 20.0)


@pytest.mark.parametrize("name", ["ride", "sade", "balpoe", "fbl-experts"])
def test_every_ensemble_loss_follows_the_loss_contract(name):
    logits, features, target = _inputs(torch.float32)
    crit = build_loss(name, COUNTS, settings={"total_epochs": 10})
    for epoch in (0, 3, 9):
        crit.set_epoch(epoch)
        assert _call(crit, logits, features, target).shape == ()
    per_sample = build_loss(name, COUNTS, options={"reduction": "none"}, settings={"total_epochs": 10})
    assert _call(per_sample, logits, features, target).shape == (N,) and not list(crit.parameters())
    before = _call(crit, logits, features, target)
    crit.set_weight([0.25, 0.5, 1.0, 2.25])
    weighted = _call(crit, logits, features, target)
    assert not torch.allclose(before, weighted)
    as_double = crit.to(torch.float64)
    out = _call(as_double, logits.double(), features.double(), target)
    assert out.dtype == torch.float64 and torch.allclose(out.float(), weighted, rtol=1e-4, atol=1e-5)
