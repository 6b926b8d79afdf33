r"""Long-tailed subsampling of a balanced training set, exactly as the CIFAR-LT reference code does it.

The CIFAR-LT benchmark (LDAM-DRW, Cao et al. 2019, reused by the Feature-Balanced Loss code) keeps
``n_c`` images of class ``c`` with

.. math:: n_c = \lfloor n_{max} \cdot \mathrm{IF}^{-c/(C-1)} \rfloor = \lfloor n_{max} \cdot f^{c/(C-1)} \rfloor

where ``f = imb_factor = 1 / IF`` (``0.01`` is "imbalance ratio 100"), and picks *which* images by
shuffling each class's positions with numpy's global RNG seeded once by ``rand_number``.
Published CIFAR-LT numbers depend on that exact subset, so both steps are reproduced bit for bit.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from fbl.errors import ConfigError

logger = logging.getLogger(__name__)

IMB_TYPES = ("exp", "step")


def long_tail_counts(n_max: int, num_classes: int, imb_type: str, imb_factor: float) -> list[int]:
    r"""Training images kept per class for a long-tailed profile.

    ``exp``: :math:`n_c = \lfloor n_{max} f^{c/(C-1)} \rfloor` for ``c = 0..C-1``.
    ``step``: the first ``C // 2`` classes keep ``n_max``, the rest :math:`\lfloor n_{max} f \rfloor`.

    Args:
        n_max: images of the largest (first) class.
        num_classes: ``C``.
        imb_type: ``"exp"`` or ``"step"``.
        imb_factor: ``f = n_min / n_max`` in ``(0, 1]``; ``0.01`` is imbalance ratio 100, ``1`` is balanced.

    Example:
        >>> long_tail_counts(5000, 10, "exp", 0.01)
        [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    """
    if imb_type not in IMB_TYPES:
        raise ConfigError(f"Unknown imb_type {imb_type!r}; choose one of: {', '.join(IMB_TYPES)}")
    if not 0.0 < float(imb_factor) <= 1.0:
        raise ConfigError(
            f"Expected imb_factor in (0, 1] but got {imb_factor} (it is n_min / n_max: 0.01 means imbalance ratio 100)"
        )
    if int(n_max) != n_max or n_max < 1:
        raise ConfigError(f"Expected n_max to be a positive integer but got {n_max!r}")
    if int(num_classes) != num_classes or num_classes < 1:
        raise ConfigError(f"Expected num_classes to be a positive integer but got {num_classes!r}")
    n_max, num_classes, imb_factor = int(n_max), int(num_classes), float(imb_factor)

    if imb_type == "exp":
        # Written as the reference writes it (n_max * f ** (c / (C - 1))) so every int() truncates the
        # same float; a single class has no exponent to spread and keeps n_max.
        if num_classes == 1:
            counts = [n_max]
        else:
            counts = [int(n_max * imb_factor ** (c / (num_classes - 1))) for c in range(num_classes)]
    else:
        head = num_classes // 2
        counts = [n_max] * head + [int(n_max * imb_factor)] * (num_classes - head)

    empty = [c for c, n in enumerate(counts) if n == 0]
    if empty:
        # The reference would silently produce classes with no training image; every loss and
        # per-class metric downstream needs n_c >= 1, so this is the user's profile to fix.
        raise ConfigError(
            f"imb_factor {imb_factor} with n_max {n_max} leaves class {empty[0]} with 0 training images; "
            "use a larger imb_factor (n_max * imb_factor must be at least 1)"
        )
    return counts


def long_tail_indices(targets, class_counts: Sequence[int], rand_number: int = 0) -> np.ndarray:
    """Positions (in the original training set) of the long-tailed subset, class by class.

    The reference seeds numpy's global RNG with ``np.random.seed(rand_number)``, then for
    ``c = 0..C-1`` shuffles ``np.where(targets == c)[0]`` with ``np.random.shuffle`` and keeps the
    first ``n_c``. ``np.random.RandomState(rand_number)`` is the same Mersenne-Twister stream, so
    its ``shuffle`` draws exactly the reference's subset (published CIFAR-LT results depend on it)
    without touching the global generator.

    Args:
        targets: labels of the full training set (list, numpy array or CPU tensor), values in ``0..C-1``.
        class_counts: ``n_c`` for each class, e.g. from :func:`long_tail_counts`.
        rand_number: seed of the subsampling (the reference's ``rand_number``, default 0).

    Returns:
        int64 array of length ``sum(n_c)``: all kept positions of class 0, then class 1, ...
    """
    targets = np.asarray(targets, dtype=np.int64)
    if targets.ndim != 1:
        raise ConfigError(f"Expected 1-D targets but got shape {targets.shape}")
    counts = [int(n) for n in class_counts]
    if any(n < 0 for n in counts):
        raise ConfigError(f"Expected non-negative class counts but got {counts}")

    rng = np.random.RandomState(rand_number)
    picked = []
    for cls, n_keep in enumerate(counts):
        idx = np.where(targets == cls)[0]
        if len(idx) < n_keep:
            raise ConfigError(
                f"Class {cls} has {len(idx)} training samples but the long-tail profile asks for {n_keep}"
            )
        # Shuffle even when n_keep is 0 so later classes see the same RNG stream as in the reference.
        rng.shuffle(idx)
        picked.append(idx[:n_keep])
    indices = np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)
    logger.debug("long-tail subset: %d of %d samples (seed %d)", len(indices), len(targets), rand_number)
    return indices.astype(np.int64, copy=False)
