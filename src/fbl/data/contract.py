"""The dataset contract: what every dataset builder returns, and all the engine may use of it.

Two families implement it: :class:`~fbl.data.dataset.LongTailData` (CIFAR, digits-lt: uint8 tensors
in memory) and :class:`~fbl.data.image_list_data.ImageListData` (ImageNet-LT, iNaturalist 2018,
Places-LT, ImageFolder trees: image files decoded in ``DataLoader`` workers). The trainer, ``fbl eval``,
``fbl data check``, ``fbl compare`` and the analyses touch a dataset only through these twelve members,
so a new family is one builder returning an object with them, and nothing above ``data/`` changes.

Both protocols are ``runtime_checkable``; ``isinstance`` checks only that the members exist, so
``tests/data/test_contract.py`` checks each family member by member, signatures included.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch.utils.data import Sampler

#: Evaluation batches are large: no gradients are kept, so memory allows it and it is faster.
EVAL_BATCH_SIZE = 256


@runtime_checkable
class BatchLoader(Protocol):
    """Batches of ``(images, targets)``: float N×C×H×W inputs ready for the model, int64 labels."""

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...

    def __len__(self) -> int:
        """Batches per epoch for this process."""
        ...

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and augmentation the next iteration yields (a resumed run repeats it)."""
        ...


@runtime_checkable
class LongTailDataset(Protocol):
    """A long-tailed training split, its evaluation splits, and the metadata the engine reports by."""

    @property
    def name(self) -> str:
        """Registry name, e.g. ``"cifar10"``."""
        ...

    @property
    def num_classes(self) -> int:
        """``C``; labels are ``0 .. C-1``."""
        ...

    @property
    def class_counts(self) -> list[int]:
        """Training images per class, ``n_c`` (what the losses, train rules and shot groups use)."""
        ...

    @property
    def train_targets(self) -> torch.Tensor:
        """int64 label of every training image, in the order the train rule's sampler indexes them."""
        ...

    @property
    def groups(self) -> dict[str, list[int]]:
        """Many / medium / few-shot class indices of the training counts (:func:`fbl.data.shot_groups`)."""
        ...

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one model input, ``(C, H, W)`` (the trainer checks the model takes it before training)."""
        ...

    @property
    def eval_splits(self) -> tuple[str, ...]:
        """Splits :meth:`eval_loader` serves, in the order they are reported (``"val"`` first when present)."""
        ...

    @property
    def end_of_run_splits(self) -> tuple[str, ...]:
        """Splits too costly to evaluate every epoch, evaluated at the end of a run and on request
        (CIFAR-LT's ``lossless_estimate``); :meth:`eval_loader` serves them too."""
        ...

    def split_size(self, split: str) -> int:
        """Images in ``split``: ``"train"`` or one of :attr:`eval_splits`."""
        ...

    def split_indices(self) -> dict[str, list[int]]:
        """Positions of the train (and val) images in the source they were drawn from, saved with a run;
        empty when the split lists themselves define the splits."""
        ...

    def image_ids(self, split: str) -> np.ndarray | None:
        """Which picture each image of ``split`` is, in :meth:`eval_loader`'s order: the same number for the
        same picture in every run on this dataset, whatever its training or validation subset (int64);
        ``None`` where an image's position in the split is all that is known of it. Paired comparisons
        of two runs use it to meet on the images both evaluated (:func:`fbl.predictions.paired_images`)."""
        ...

    def split_files(self, split: str) -> list[Path] | None:
        """The image files of ``split`` for ``fbl data check`` to decode; ``None`` for a split held in memory
        (read and validated when the dataset was built)."""
        ...

    def train_loader(
        self,
        batch_size: int,
        *,
        device: torch.device | str,
        seed: int,
        sampler: Sampler | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> BatchLoader:
        """Shuffled (or ``sampler``-ordered), augmented training batches; distributed, this process's
        share of each global batch of ``batch_size``. Epoch ``e``'s order and augmentation depend only
        on ``(seed, e)``."""
        ...

    def eval_loader(
        self,
        split: str = "test",
        batch_size: int = EVAL_BATCH_SIZE,
        *,
        device: torch.device | str,
        rank: int = 0,
        world_size: int = 1,
    ) -> BatchLoader:
        """Batches of ``split`` in order, not augmented (``"train"`` gives the training images);
        distributed, this process's disjoint share of them."""
        ...
