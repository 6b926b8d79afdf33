"""Input mixup: the lambda distribution, the mixing formula, determinism and the mixed loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fbl.errors import ConfigError
from fbl.mixup import mixup_batch, mixup_loss

TOL = {torch.float32: dict(rtol=1e-6, atol=1e-6), torch.float64: dict(rtol=1e-12, atol=1e-12)}


def _ce(logits, target, *, features=None):
    return F.cross_entropy(logits, target)


@pytest.mark.parametrize("alpha", [0.2, 1.0, 4.0])
def test_lambda_follows_beta_alpha_alpha(alpha):
    # Beta(a, a): mean 1/2, variance 1/(4(2a+1)). Over 20k draws the standard error of the mean is at
    # most 0.003 (a = 0.2) and that of the sample variance at most 0.9% of it (a = 4), so the bounds
    # below are >= 3 standard errors for the mean and >= 5 for the variance. A uniform lambda
    # (variance 1/12) fails both a = 0.2 and a = 4.
    draws = 20_000
    generator = torch.Generator().manual_seed(0)
    x, y = torch.zeros(2, 1), torch.arange(2)
    lams = torch.tensor([mixup_batch(x, y, alpha, generator)[3] for _ in range(draws)], dtype=torch.float64)
    assert ((lams >= 0) & (lams <= 1)).all()
    assert lams.mean().item() == pytest.approx(0.5, abs=0.01)
    assert lams.var().item() == pytest.approx(1 / (4 * (2 * alpha + 1)), rel=0.05)


def test_small_alpha_gives_lambdas_near_zero_or_one():
    generator = torch.Generator().manual_seed(1)
    x, y = torch.zeros(2, 1), torch.arange(2)
    lams = torch.tensor([mixup_batch(x, y, 0.1, generator)[3] for _ in range(2_000)])
    # Beta(0.1, 0.1) puts ~76% of its mass outside [0.05, 0.95]; a uniform lambda would put 10% there.
    assert ((lams < 0.05) | (lams > 0.95)).float().mean() > 0.6


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mixed_batch_matches_longhand_formula(dtype):
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(8, 3, 4, 4, dtype=dtype, generator=torch.Generator().manual_seed(3))
    x_before = x.clone()
    y = torch.arange(8)  # identity targets reveal the permutation through y_b
    mixed, y_a, y_b, lam = mixup_batch(x, y, 1.0, generator)
    assert isinstance(lam, float) and 0.0 <= lam <= 1.0
    assert torch.equal(y_a, y)
    assert sorted(y_b.tolist()) == list(range(8))
    expected = torch.empty_like(x)
    for i in range(8):
        expected[i] = lam * x[i] + (1 - lam) * x[int(y_b[i])]
    assert mixed.dtype == dtype
    torch.testing.assert_close(mixed, expected, **TOL[dtype])
    assert torch.equal(x, x_before)


def test_targets_follow_the_same_permutation_as_inputs():
    generator = torch.Generator().manual_seed(4)
    x = torch.arange(6, dtype=torch.float64).reshape(6, 1) * 10
    y = torch.tensor([5, 4, 3, 2, 1, 0])
    mixed, _, y_b, lam = mixup_batch(x, y, 1.0, generator)
    # x[i] = 10 i and y[i] = 5 - i, so the partner of row i is row 5 - y_b[i].
    partner = 5 - y_b
    torch.testing.assert_close(mixed[:, 0], lam * x[:, 0] + (1 - lam) * 10 * partner.double())


def test_same_seed_same_mix_and_generator_advances():
    x = torch.randn(16, 5, generator=torch.Generator().manual_seed(0))
    y = torch.arange(16)
    first = mixup_batch(x, y, 0.4, torch.Generator().manual_seed(123))
    second = mixup_batch(x, y, 0.4, torch.Generator().manual_seed(123))
    assert first[3] == second[3]
    assert torch.equal(first[0], second[0]) and torch.equal(first[2], second[2])
    generator = torch.Generator().manual_seed(123)
    a = mixup_batch(x, y, 0.4, generator)
    b = mixup_batch(x, y, 0.4, generator)
    assert a[3] == first[3]
    assert b[3] != a[3] or not torch.equal(b[2], a[2])


@pytest.mark.parametrize("alpha", [0.0, -1.0, float("nan"), float("inf"), "one"])
def test_non_positive_alpha_is_rejected(alpha):
    with pytest.raises(ConfigError, match="alpha"):
        mixup_batch(torch.zeros(2, 1), torch.arange(2), alpha, torch.Generator())


def test_mismatched_batch_is_a_bug():
    with pytest.raises(ValueError, match="shape"):
        mixup_batch(torch.zeros(3, 1), torch.arange(2), 1.0, torch.Generator())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mixup_loss_matches_longhand(dtype):
    logits = torch.randn(6, 4, dtype=dtype, generator=torch.Generator().manual_seed(5), requires_grad=True)
    y_a = torch.tensor([0, 1, 2, 3, 0, 1])
    y_b = torch.tensor([3, 3, 0, 1, 2, 2])
    lam = 0.3
    loss = mixup_loss(_ce, logits, y_a, y_b, lam)
    log_p = logits.log_softmax(dim=1)
    ce_a = -sum(log_p[i, y_a[i]] for i in range(6)) / 6
    ce_b = -sum(log_p[i, y_b[i]] for i in range(6)) / 6
    torch.testing.assert_close(loss, lam * ce_a + (1 - lam) * ce_b, **TOL[dtype])
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


def test_mixup_loss_passes_features_to_both_terms():
    seen = []

    def criterion(logits, target, *, features=None):
        seen.append(features)
        # A loss that depends on the features, so dropping them would change the value.
        return F.cross_entropy(logits, target) + features.norm(dim=1).mean() * target.double().mean()

    logits = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    features = torch.randn(4, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    y_a, y_b, lam = torch.tensor([0, 1, 2, 0]), torch.tensor([2, 2, 1, 0]), 0.75
    loss = mixup_loss(criterion, logits, y_a, y_b, lam, features=features)
    assert len(seen) == 2 and all(f is features for f in seen)
    norm = features.norm(dim=1).mean()
    term_a = F.cross_entropy(logits, y_a) + norm * 0.75  # mean of y_a = 0.75
    term_b = F.cross_entropy(logits, y_b) + norm * 1.25  # mean of y_b = 1.25
    expected = lam * term_a + (1 - lam) * term_b
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)


def test_lam_one_reduces_to_plain_loss():
    logits = torch.randn(5, 3, generator=torch.Generator().manual_seed(8))
    y_a, y_b = torch.tensor([0, 1, 2, 0, 1]), torch.tensor([2, 2, 2, 2, 2])
    torch.testing.assert_close(mixup_loss(_ce, logits, y_a, y_b, 1.0), F.cross_entropy(logits, y_a))
    assert math.isfinite(mixup_loss(_ce, logits, y_a, y_b, 0.0).item())
