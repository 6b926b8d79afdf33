"""``lossless_estimate``: held-out lossless images that estimate balanced test accuracy where the test set is lossy.

CIFAR's copy in ``../shared`` has its 10,000 test images decoded from JPEG (which costs CIFAR-10-LT
about 14 points of top-1); only the first 1,000 test images are lossless, a standard error of about
1.3 points. The long-tailed subsampling leaves most of the *lossless* training pool unused (37,594 of
50,000 images on CIFAR-10-LT with imbalance ratio 100), and CIFAR's test images were drawn at random
from the same pool as its training images. Since the test set is balanced, its top-1 is the mean of
the per-class accuracies, so each class's accuracy can be estimated on its own held-out images:

* a class with unused training images: all of them, less the validation images drawn from them
  (:mod:`fbl.data.validation_split`), so the split never overlaps the training subset or the
  validation split and follows deterministically from ``(rand_number, val_split)``;
* a class with none (the largest class keeps its whole pool): its images in the lossless test file;
* a class with neither (CIFAR-100-LT's class 0, or a user's own CIFAR without the lossless file):
  *missing*. It is not silently filled from the test file, whose pixels may be the lossy ones this
  split exists to avoid; the estimate is then the mean over the other classes and says it is partial.

The balanced top-1 and its standard error follow from the per-class results with
:func:`fbl.balanced_estimate.balanced_estimate`. The split is about 3.7 test sets on CIFAR-10-LT, so
the dataset serves it on request (:attr:`LongTailDataWithEstimate.end_of_run_splits`), never in
:attr:`~fbl.data.dataset.LongTailData.eval_splits`, which the trainer evaluates every epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from fbl.data.dataset import LongTailData

#: Name of the split in :meth:`LongTailDataWithEstimate.eval_loader` and in reports.
LOSSLESS_ESTIMATE = "lossless_estimate"

#: Where a class's images come from (``EstimateSplit.sources``).
UNUSED_TRAIN, LOSSLESS_TEST, MISSING = "unused_train", "lossless_test", "missing"


@dataclass(frozen=True)
class EstimateSplit:
    """Which images make up the estimate split: positions in the training pool, then in the lossless test file.

    Attributes:
        pool_positions: sorted int64 positions in the full training pool (the official train files).
        test_positions: sorted int64 positions in the lossless test file.
        sources: per class, :data:`UNUSED_TRAIN`, :data:`LOSSLESS_TEST` or :data:`MISSING`.
        class_sizes: per class, the images it holds (``n_c`` of the standard error; 0 where missing).
    """

    pool_positions: np.ndarray
    test_positions: np.ndarray
    sources: tuple[str, ...]
    class_sizes: tuple[int, ...]

    @property
    def missing_classes(self) -> list[int]:
        return [c for c, source in enumerate(self.sources) if source == MISSING]

    @property
    def size(self) -> int:
        return len(self.pool_positions) + len(self.test_positions)

    @property
    def image_ids(self) -> np.ndarray:
        """Each image's identity, in the split's order: its position in the training pool, or ``-1 - p`` for
        position ``p`` in the lossless test file; runs with other training or validation subsets give the
        same picture the same number."""
        return np.concatenate([self.pool_positions, -1 - self.test_positions]).astype(np.int64)


def lossless_estimate_split(
    pool_targets, held_out: np.ndarray, num_classes: int, lossless_test_targets=None
) -> EstimateSplit:
    """The images of each class that a run neither trains nor validates on, from a lossless source.

    Args:
        pool_targets: labels of the full training pool the long-tailed subset was drawn from.
        held_out: positions in the pool the run uses (the training subset and the validation split).
        num_classes: ``C``.
        lossless_test_targets: labels of the lossless test file, or ``None`` where there is none.
    """
    pool_targets = np.asarray(pool_targets, dtype=np.int64)
    test_targets = np.zeros(0, np.int64) if lossless_test_targets is None else np.asarray(lossless_test_targets)
    unused = np.setdiff1d(np.arange(len(pool_targets)), np.asarray(held_out, dtype=np.int64))  # sorted
    pool_parts, test_parts, sources = [], [], []
    for cls in range(num_classes):
        spare = unused[pool_targets[unused] == cls]
        lossless = np.flatnonzero(test_targets == cls)
        if len(spare):
            pool_parts.append(spare)
            sources.append(UNUSED_TRAIN)
        elif len(lossless):
            test_parts.append(lossless)
            sources.append(LOSSLESS_TEST)
        else:
            sources.append(MISSING)
    pool = np.sort(np.concatenate(pool_parts)) if pool_parts else np.zeros(0, np.int64)
    test = np.sort(np.concatenate(test_parts)) if test_parts else np.zeros(0, np.int64)
    class_sizes = np.bincount(pool_targets[pool], minlength=num_classes)
    class_sizes += np.bincount(test_targets[test].astype(np.int64), minlength=num_classes)
    return EstimateSplit(pool.astype(np.int64), test.astype(np.int64), tuple(sources), tuple(class_sizes.tolist()))


@dataclass(eq=False)
class LongTailDataWithEstimate(LongTailData):
    """:class:`~fbl.data.dataset.LongTailData` that also serves the :data:`LOSSLESS_ESTIMATE` split on request.

    The split is kept out of :attr:`eval_splits` (evaluated every epoch): it is listed in
    :attr:`end_of_run_splits`, and :meth:`eval_loader` / :meth:`split_size` serve it by name.

    Args:
        estimate: which images the split holds and where each class's come from.
        estimate_images, estimate_targets: the split itself, uint8 N×C×H×W and int64 labels.
    """

    estimate: EstimateSplit | None = None
    estimate_images: torch.Tensor | None = field(default=None, repr=False)
    estimate_targets: torch.Tensor | None = field(default=None, repr=False)

    def __post_init__(self):
        super().__post_init__()
        if self.estimate is None:
            return
        images, targets = self.estimate_images, self.estimate_targets
        size = self.estimate.size
        if images is None or images.dtype != torch.uint8 or images.ndim != 4 or images.shape[0] != size:
            raise ValueError(f"{self.name}: expected {size} uint8 N x C x H x W {LOSSLESS_ESTIMATE} images")
        if targets is None or targets.dtype != torch.int64 or targets.shape != (images.shape[0],):
            raise ValueError(f"{self.name}: expected {images.shape[0]} int64 {LOSSLESS_ESTIMATE} targets")
        if torch.bincount(targets, minlength=self.num_classes).tolist() != list(self.estimate.class_sizes):
            raise ValueError(f"{self.name}: {LOSSLESS_ESTIMATE} class sizes disagree with its targets")

    @property
    def end_of_run_splits(self) -> tuple[str, ...]:
        """Splits served only when asked for (end of run, every K epochs, ``fbl eval --split``)."""
        return (LOSSLESS_ESTIMATE,) if self.estimate is not None and self.estimate.size else ()

    def image_ids(self, split: str) -> np.ndarray:
        """As :class:`~fbl.data.dataset.LongTailData`'s, and the estimate split's (:attr:`EstimateSplit.image_ids`)."""
        if split in self.end_of_run_splits:
            return self.estimate.image_ids
        return super().image_ids(split)

    def eval_tensors(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """As :class:`~fbl.data.dataset.LongTailData`'s, and the estimate split."""
        if split in self.end_of_run_splits:
            return self.estimate_images, self.estimate_targets
        return super().eval_tensors(split)
