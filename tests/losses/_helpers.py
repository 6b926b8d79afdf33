"""Shared test harness for the loss tests: devices, dtypes and tolerances, a fixed small batch,
and a helper that returns a function's value and gradients. The longhand references themselves
live in each test file, written out with loops and never calling ``fbl.losses.functional``.
"""

from __future__ import annotations

import torch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
DTYPES = [torch.float32, torch.float64]

# Package results in ``dtype`` are compared with a float64 longhand reference.
TOL = {
    torch.float32: dict(rtol=5e-5, atol=5e-5),
    torch.float64: dict(rtol=1e-10, atol=1e-11),
}

COUNTS = [50, 20, 8, 3, 1]
# Exactly representable in float32, so buffers stored in float32 lose nothing.
EXPLICIT_WEIGHT = [0.5, 1.0, 2.0, 4.0, 0.25]


def batch(seed: int = 0, n: int = 7, num_classes: int = len(COUNTS), dim: int = 3):
    """float64 logits (N, C), int64 targets covering every class, float64 features (N, D) on the CPU."""
    gen = torch.Generator().manual_seed(seed)
    logits = 2.0 * torch.randn(n, num_classes, generator=gen, dtype=torch.float64)
    target = torch.arange(n) % num_classes
    features = torch.randn(n, dim, generator=gen, dtype=torch.float64) + 0.5
    return logits, target, features


def upstream_for(reduction: str, n: int) -> torch.Tensor:
    """Gradient fed into ``backward``: distinct per sample for ``"none"`` so each sample is checked."""
    if reduction == "none":
        return torch.linspace(0.5, 2.0, n, dtype=torch.float64)
    return torch.tensor(1.0, dtype=torch.float64)


def value_and_grads(fn, tensors, upstream: torch.Tensor):
    """``fn(*tensors)`` and the gradient of ``<fn(*tensors), upstream>`` w.r.t. each tensor."""
    leaves = [t.detach().clone().requires_grad_(True) for t in tensors]
    out = fn(*leaves)
    grads = torch.autograd.grad(out, leaves, grad_outputs=upstream.to(out), allow_unused=True)
    grads = [torch.zeros_like(t) if g is None else g for t, g in zip(leaves, grads, strict=False)]
    return out.detach(), grads


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype) -> None:
    torch.testing.assert_close(actual.detach().cpu().double(), expected.detach().cpu().double(), **TOL[dtype])


def effective_number_longhand(counts, beta: float) -> list[float]:
    """Cui et al.: w_j = (1 - beta) / (1 - beta**n_j), rescaled so the weights sum to C."""
    raw = [(1.0 - beta) / (1.0 - beta**n) for n in counts]
    return [w * len(counts) / sum(raw) for w in raw]


def inverse_frequency_longhand(counts, power: float = 1.0) -> list[float]:
    raw = [1.0 / n**power for n in counts]
    return [w * len(counts) / sum(raw) for w in raw]


def log_softmax_longhand(row) -> list:
    """log p_j = z_j - log sum_k exp(z_k) for one row, as a list of scalar tensors (autograd-friendly)."""
    log_norm = torch.log(sum(torch.exp(row[k]) for k in range(len(row))))
    return [row[j] - log_norm for j in range(len(row))]


def reduce_longhand(losses: list, sample_weights: list, reduction: str):
    """Weighted mean = sum_i w_i l_i / sum_i w_i (as torch's weighted cross-entropy); sum; or none."""
    weighted = [w * loss for w, loss in zip(sample_weights, losses, strict=True)]
    if reduction == "none":
        return torch.stack(weighted)
    total = sum(weighted)
    if reduction == "sum":
        return total
    return total / sum(sample_weights)
