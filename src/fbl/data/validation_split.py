"""A balanced validation split drawn from the training images the long-tailed subsampling left out.

Choosing hyper-parameters or the best epoch on the test set inflates the reported number; the
paper's code does so. Here every CIFAR-LT / digits-lt run can hold out ``N`` images per class that
are in neither the long-tailed training subset nor the test set, drawn with a generator of their
own, so the training subset is exactly the reference's whatever ``N`` is.
"""

from __future__ import annotations

import logging

import numpy as np

from fbl.errors import ConfigError

logger = logging.getLogger(__name__)

#: Stream of the validation draw (separate from the long-tail shuffle, which must stay the reference's).
VALIDATION_STREAM = 1


def largest_balanced_size(targets: np.ndarray, taken: np.ndarray, num_classes: int) -> int:
    """The most images per class that a balanced split can draw from positions not in ``taken``."""
    left = np.setdiff1d(np.arange(len(targets)), taken)
    return int(np.bincount(targets[left], minlength=num_classes).min())


def balanced_validation_indices(
    targets: np.ndarray, taken: np.ndarray, per_class: int, seed: int, num_classes: int
) -> np.ndarray:
    """Sorted positions of ``per_class`` images of every class, none of them in ``taken``.

    Args:
        targets: labels of the pool the training subset was drawn from.
        taken: positions already used (the long-tailed training subset).
        per_class: images per class, >= 1.
        seed: the long-tail seed (``rand_number``); the same seed gives the same split.
        num_classes: ``C``.
    """
    if isinstance(per_class, bool) or int(per_class) != per_class or per_class < 1:
        raise ConfigError(f"Expected a validation split of at least 1 image per class but got {per_class!r}")
    targets = np.asarray(targets, dtype=np.int64)
    left = np.setdiff1d(np.arange(len(targets)), np.asarray(taken, dtype=np.int64))
    state = np.random.SeedSequence([int(seed), VALIDATION_STREAM]).generate_state(1)
    rng = np.random.RandomState(state)
    picked = []
    for cls in range(num_classes):
        candidates = left[targets[left] == cls]
        if len(candidates) < per_class:
            raise ConfigError(
                f"Class {cls} has only {len(candidates)} training images outside the long-tailed subset; "
                f"a validation split of {per_class} per class needs more (use --val-split {len(candidates)} or none)"
            )
        picked.append(candidates[rng.permutation(len(candidates))[:per_class]])
    return np.sort(np.concatenate(picked))


def validation_size(requested, default: int, largest: int) -> int | None:
    """Images per class for ``--val-split``: ``"none"`` -> no split, ``"auto"`` -> ``default`` (capped at
    ``largest``, what the data allows), else the number asked for."""
    text = str(requested).strip().lower()
    if text == "none":
        return None
    if text == "auto":
        if largest == 0:
            logger.warning("no training image is left outside the long-tailed subset: no validation split")
            return None
        return min(default, largest)
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"Expected --val-split none, auto or a number per class but got {requested!r}") from None
