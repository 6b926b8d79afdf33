"""Datasets held in memory (CIFAR, digits-lt): the tensor family of :class:`~fbl.data.contract.LongTailDataset`."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from fbl.data.augment import AugmentSpec
from fbl.data.contract import EVAL_BATCH_SIZE
from fbl.data.shot_groups import shot_groups
from fbl.data.tensor_loader import TensorBatchLoader

logger = logging.getLogger(__name__)


def count_blank(images: torch.Tensor) -> int:
    """Images (N×…) whose pixels all hold one value, such as the zeros of an incompletely written data file."""
    flat = images.reshape(images.shape[0], -1)
    return int((flat.amax(1) == flat.amin(1)).sum()) if flat.numel() else 0


@dataclass(eq=False)
class LongTailData:
    """A long-tailed training set and its test set, held in memory as uint8 tensors (a :class:`LongTailDataset`).

    Everything that differs between datasets (class names, normalisation, augmentation) is a field
    here, so the trainer never branches on ``name``; the dataset builds its own loaders
    (:meth:`train_loader`, :meth:`eval_loader`), so the trainer never looks inside either.

    Args:
        name: registry name, e.g. ``"cifar10"``.
        num_classes: ``C``.
        class_names: one name per class.
        train_images: uint8, N×C×H×W, the long-tailed training set (grouped class by class).
        train_targets: int64, length N.
        test_images: uint8, M×C×H×W.
        test_targets: int64, length M.
        class_counts: training images per class, ``n_c``.
        indices: int64 positions of the training samples in the source they were drawn from (the
            official train split for CIFAR; the ``load_digits()`` arrays for digits-lt).
        augment: normalisation and train-time augmentation of this dataset.
        val_images, val_targets, val_indices: the validation split, if any.
        extra_eval: further evaluation splits by name, reported beside the test split (CIFAR-10's
            ``test_lossless``: the lossless 1,000-image subset of ``../shared``'s JPEG-decoded test set).
    """

    name: str
    num_classes: int
    class_names: list[str]
    train_images: torch.Tensor = field(repr=False)
    train_targets: torch.Tensor = field(repr=False)
    test_images: torch.Tensor = field(repr=False)
    test_targets: torch.Tensor = field(repr=False)
    class_counts: list[int]
    indices: np.ndarray = field(repr=False)
    augment: AugmentSpec
    val_images: torch.Tensor | None = field(default=None, repr=False)
    val_targets: torch.Tensor | None = field(default=None, repr=False)
    val_indices: np.ndarray | None = field(default=None, repr=False)
    extra_eval: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict, repr=False)

    def __post_init__(self):
        # Cheap consistency checks: a mismatch here is a builder bug, so it is a plain ValueError.
        splits = [("train", self.train_images, self.train_targets), ("test", self.test_images, self.test_targets)]
        if self.val_images is not None:
            splits.append(("val", self.val_images, self.val_targets))
        splits += [(name, images, targets) for name, (images, targets) in self.extra_eval.items()]
        for split, images, targets in splits:
            if images.dtype != torch.uint8 or images.ndim != 4:
                raise ValueError(
                    f"{self.name}: expected uint8 N x C x H x W {split} images, "
                    f"got {images.dtype} {tuple(images.shape)}"
                )
            if targets.dtype != torch.int64 or targets.shape != (images.shape[0],):
                raise ValueError(
                    f"{self.name}: expected {images.shape[0]} int64 {split} targets, "
                    f"got {targets.dtype} {tuple(targets.shape)}"
                )
            if images.shape[1] != self.augment.num_channels:
                raise ValueError(
                    f"{self.name}: {split} images have {images.shape[1]} channels, "
                    f"augment spec {self.augment.num_channels}"
                )
            blank = count_blank(images)
            if blank:
                # Real photographs are never one flat colour; many such images mean a broken copy of the data.
                logger.warning(
                    "%s: %d of %d %s images are blank (every pixel the same value); is the data complete?",
                    self.name, blank, images.shape[0], split,
                )  # fmt: skip
        if len(self.class_names) != self.num_classes or len(self.class_counts) != self.num_classes:
            raise ValueError(f"{self.name}: expected {self.num_classes} class names and counts")
        found = torch.bincount(self.train_targets, minlength=self.num_classes).tolist()
        if found != list(self.class_counts) or len(found) != self.num_classes:
            raise ValueError(f"{self.name}: class_counts {self.class_counts} disagree with the train targets {found}")
        if len(self.indices) != self.train_images.shape[0]:
            raise ValueError(
                f"{self.name}: {len(self.indices)} indices for {self.train_images.shape[0]} training images"
            )

    @property
    def targets(self) -> list[int]:
        """Training labels as a list of ints, like torchvision's ``dataset.targets`` (what samplers take)."""
        return self.train_targets.tolist()

    @property
    def groups(self) -> dict[str, list[int]]:
        """Many/medium/few-shot class indices of the training counts, see :func:`fbl.data.shot_groups`."""
        return shot_groups(self.class_counts)

    @property
    def imbalance_ratio(self) -> float:
        """:math:`n_{max} / n_{min}` of the training counts."""
        return max(self.class_counts) / min(self.class_counts)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input image, ``(C, H, W)``."""
        return tuple(self.train_images.shape[1:])

    @property
    def eval_splits(self) -> tuple[str, ...]:
        """Splits :meth:`eval_loader` can serve."""
        own = ("val", "test") if self.val_images is not None else ("test",)
        return own + tuple(self.extra_eval)

    @property
    def end_of_run_splits(self) -> tuple[str, ...]:
        """None here: every split is cheap enough to evaluate every epoch."""
        return ()

    def split_size(self, split: str) -> int:
        """Number of images in ``split`` (``"train"`` or one of :attr:`eval_splits`)."""
        return self.train_images.shape[0] if split == "train" else self.eval_tensors(split)[0].shape[0]

    def train_loader(
        self, batch_size: int, *, device, seed: int, sampler=None, rank: int = 0, world_size: int = 1
    ) -> TensorBatchLoader:
        """Shuffled (or ``sampler``-ordered), augmented batches of the training split on ``device``;
        distributed, this process's share of each global batch of ``batch_size``."""
        return TensorBatchLoader(
            self.train_images, self.train_targets, batch_size, augment=self.augment, train=True,
            device=device, seed=seed, sampler=sampler, rank=rank, world_size=world_size,
        )  # fmt: skip

    def eval_loader(
        self, split: str = "test", batch_size: int = EVAL_BATCH_SIZE, *, device, rank: int = 0, world_size: int = 1
    ) -> TensorBatchLoader:
        """Batches of ``split`` in order, normalised, not augmented (``"train"`` gives the training
        images); distributed, this process's disjoint share of them."""
        images, targets = (self.train_images, self.train_targets) if split == "train" else self.eval_tensors(split)
        return TensorBatchLoader(
            images, targets, batch_size, augment=self.augment, train=False, device=device, rank=rank,
            world_size=world_size,
        )  # fmt: skip

    def split_indices(self) -> dict[str, list[int]]:
        """Positions of the training (and validation) images in the source they were drawn from."""
        out = {"train": self.indices.tolist()}
        if self.val_indices is not None:
            out["val"] = self.val_indices.tolist()
        return out

    def image_ids(self, split: str) -> np.ndarray:
        """Validation images: their positions in the training pool (:attr:`val_indices`); any other split:
        the position in its file, which every run shares."""
        if split == "val" and self.val_indices is not None:
            return np.asarray(self.val_indices, dtype=np.int64)
        return np.arange(self.split_size(split), dtype=np.int64)

    def split_files(self, split: str) -> None:
        """``None``: every split is in memory, read and validated when the dataset was built."""
        self.split_size(split)  # an unknown split is still an error
        return None

    def eval_tensors(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The uint8 images and labels of evaluation split ``split``."""
        if split not in self.eval_splits:
            raise ValueError(f"{self.name} has no {split!r} split; it has {', '.join(self.eval_splits)}")
        if split == "val":
            return self.val_images, self.val_targets
        if split in self.extra_eval:
            return self.extra_eval[split]
        return self.test_images, self.test_targets
