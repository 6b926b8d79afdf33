"""A balanced validation split held out of the training pool, disjoint from the training subset and the test set.

Choosing hyper-parameters or the best epoch on the test set inflates the reported number; the
paper's code does so. Here a run can hold out ``N`` images per class for that. They come from the
training images the long-tailed subsampling left out, drawn with a generator of their own. A class
with fewer left-over images than ``N`` gives up the shortfall from its own training images: on
CIFAR-LT the largest class keeps *all* ``n_max`` images of the official split (5,000 on CIFAR-10),
so with ``N = 50`` it trains on 4,950. ``--val-split none`` keeps the reference's training subset
exactly (and then nothing but the test set is left to select on, which the summary says).
"""

from __future__ import annotations

import logging

import numpy as np

from fbl.errors import ConfigError

logger = logging.getLogger(__name__)

#: Stream of the validation draw (separate from the long-tail shuffle, which must stay the reference's).
VALIDATION_STREAM = 1


def largest_balanced_size(targets: np.ndarray, taken: np.ndarray, num_classes: int) -> int:
    """The most images per class a balanced split can draw from positions not in ``taken``."""
    left = np.setdiff1d(np.arange(len(targets)), taken)
    return int(np.bincount(np.asarray(targets)[left], minlength=num_classes).min())


def hold_out_validation(
    targets: np.ndarray, train: np.ndarray, per_class: int, seed: int, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(train, val)``: ``per_class`` validation positions per class, and the training positions left.

    Args:
        targets: labels of the pool the training subset was drawn from.
        train: positions of the long-tailed training subset (order kept in the result).
        per_class: validation images per class, >= 1.
        seed: the long-tail seed (``rand_number``); the same seed gives the same split.
        num_classes: ``C``.
    """
    if isinstance(per_class, bool) or int(per_class) != per_class or per_class < 1:
        raise ConfigError(f"Expected a validation split of at least 1 image per class but got {per_class!r}")
    targets = np.asarray(targets, dtype=np.int64)
    train = np.asarray(train, dtype=np.int64)
    left = np.setdiff1d(np.arange(len(targets)), train)
    rng = np.random.RandomState(np.random.SeedSequence([int(seed), VALIDATION_STREAM]).generate_state(1))
    picked, borrowed = [], []
    for cls in range(num_classes):
        spare = left[targets[left] == cls]
        chosen = spare[rng.permutation(len(spare))[:per_class]]
        shortfall = per_class - len(chosen)
        if shortfall > 0:
            own = train[targets[train] == cls]
            if len(own) <= shortfall:
                raise ConfigError(
                    f"Class {cls} has {len(spare) + len(own)} images in all; a validation split of {per_class} "
                    "per class would leave it no training image (use a smaller --val-split or none)"
                )
            taken = own[rng.permutation(len(own))[:shortfall]]
            borrowed.append((cls, shortfall, len(own)))
            chosen = np.concatenate([chosen, taken])
        picked.append(chosen)
    val = np.sort(np.concatenate(picked))
    for cls, count, own in borrowed:
        logger.info(
            "validation split: class %d has no spare images, so %d of its %d training images are held out "
            "(--val-split none keeps the reference's training subset)", cls, count, own,
        )  # fmt: skip
    return train[~np.isin(train, val)], val


def validation_size(requested, default: int) -> int | None:
    """Images per class for ``--val-split``: ``"none"`` -> no split, ``"auto"`` -> ``default``, else the number."""
    text = str(requested).strip().lower()
    if text == "none":
        return None
    if text == "auto":
        return default if default > 0 else None
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"Expected --val-split none, auto or a number per class but got {requested!r}") from None
