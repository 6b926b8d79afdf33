"""digits-lt: a tiny real long-tailed dataset for demos and tests, from scikit-learn's 8×8 digits.

``sklearn.datasets.load_digits()`` (1797 handwritten digits, 174 to 183 per class, shipped with
scikit-learn, no download). A balanced test split of :data:`TEST_PER_CLASS` images per class is
held out with its own fixed RNG, so it never depends on the long-tail seed; the remaining pool
(at least 134 per class) is made long-tailed with the CIFAR-LT procedure and ``n_max =``
:data:`N_MAX`. With the default ``exp`` profile and ``imb_factor=0.01`` the train counts are

    [130, 77, 46, 28, 16, 10, 6, 3, 2, 1]   (319 images; many-shot: class 0, medium: 1-3, few: 4-9)

and the test split has 400 images (40 per class).
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import torch

from fbl.data.augment import AugmentSpec
from fbl.data.dataset import LongTailData
from fbl.data.long_tail import long_tail_counts, long_tail_indices
from fbl.data.registry import register_dataset
from fbl.data.validation_split import hold_out_validation, largest_balanced_size, validation_size
from fbl.errors import ConfigError

logger = logging.getLogger(__name__)

#: Test images held out per class (balanced test split).
TEST_PER_CLASS = 40
#: Seed of the held-out split's own ``RandomState``; independent of ``rand_number``.
SPLIT_SEED = 2022
#: Largest class of the long-tailed train split; > 100 so the many-shot group is not empty, and
#: <= 134, the smallest per-class pool left after the test split (class 8: 174 - 40).
N_MAX = 130

#: Pixel mean/std of all 1797 images after the uint8 conversion, scaled to [0, 1] (one channel).
DIGITS_MEAN = (0.305309,)
DIGITS_STD = (0.375886,)

# Padding 1 shifts a digit by at most 1/8 of its width, the same relative shift as CIFAR's padding
# of 4 on 32 pixels. No flips: a mirrored digit is a different digit or none (2, 3, 4, 7, 9, ...).
DIGITS_AUGMENT = AugmentSpec(mean=DIGITS_MEAN, std=DIGITS_STD, crop_padding=1, hflip=False)

CLASS_NAMES = [str(d) for d in range(10)]


def load_digits_uint8() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 digits as uint8 N×1×8×8 (``round(v * 255 / 16)`` of the 0..16 values) and int64 labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    # np.rint rounds halves to even like Python's round(); only v = 8 (127.5 -> 128) is a half.
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None, :, :]
    return images, digits.target.astype(np.int64)


def held_out_split(
    targets: np.ndarray, per_class: int = TEST_PER_CLASS, seed: int = SPLIT_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """``(pool, test)``: sorted positions of the train pool and of ``per_class`` test images per class."""
    rng = np.random.RandomState(seed)
    test = []
    for cls in range(int(targets.max()) + 1):
        idx = np.where(targets == cls)[0]
        test.append(idx[rng.permutation(len(idx))[:per_class]])
    test = np.sort(np.concatenate(test))
    pool = np.setdiff1d(np.arange(len(targets)), test)
    return pool, test


@register_dataset("digits-lt")
def build_digits_lt(imb_type="exp", imb_factor=0.01, rand_number=0, val_split="none", rotate=0.0) -> LongTailData:
    """digits-lt. ``indices`` (and ``val_indices``) are positions in the ``load_digits()`` arrays.

    ``val_split="auto"`` holds out as many images per class as every class still has after the
    long-tailed subsampling (8 with the default profile), balanced, from the train pool.
    """
    images, targets = load_digits_uint8()
    pool, test = held_out_split(targets)
    counts = long_tail_counts(N_MAX, len(CLASS_NAMES), imb_type, imb_factor)
    in_pool = long_tail_indices(targets[pool], counts, rand_number)
    indices = pool[in_pool]
    per_class = validation_size(val_split, largest_balanced_size(targets[pool], in_pool, len(CLASS_NAMES)))
    val = None
    if per_class is not None:
        kept, val_in_pool = hold_out_validation(targets[pool], in_pool, per_class, rand_number, len(CLASS_NAMES))
        if len(kept) != len(in_pool):
            raise ConfigError("digits-lt has too few spare images per class for that validation split; use auto")
        val = pool[val_in_pool]
    logger.info(
        "digits-LT (%s, imb_factor %g, seed %d): %d train images, %d test images",
        imb_type,
        imb_factor,
        rand_number,
        len(indices),
        len(test),
    )
    return LongTailData(
        name="digits-lt",
        num_classes=len(CLASS_NAMES),
        class_names=list(CLASS_NAMES),
        train_images=torch.from_numpy(images[indices]),
        train_targets=torch.from_numpy(targets[indices]),
        test_images=torch.from_numpy(images[test]),
        test_targets=torch.from_numpy(targets[test]),
        class_counts=counts,
        indices=indices,
        augment=dataclasses.replace(DIGITS_AUGMENT, rotation=rotate),
        val_images=None if val is None else torch.from_numpy(images[val]),
        val_targets=None if val is None else torch.from_numpy(targets[val]),
        val_indices=val,
    )
