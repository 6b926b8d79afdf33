"""Datasets given as image files: ImageNet-LT, iNaturalist 2018, Places-LT (split lists) and any ImageFolder tree.

Images are decoded and augmented in ``DataLoader`` worker processes (``--workers``, at most one per
usable CPU: :func:`fbl.data.workers.cap_workers`), with pinned memory and persistent workers. The
augmentation of sample ``i`` in epoch ``e`` is seeded by ``(seed, e, i)`` alone, so it does not
depend on which worker decodes it: a resumed run sees exactly the images an uninterrupted run saw.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from fbl.data.contract import EVAL_BATCH_SIZE
from fbl.data.image_files import (
    CollateSkippingBad,
    ImageFiles,
    UnreadableImage,
    imagenet_eval_transform,
    imagenet_train_transform,
)
from fbl.data.image_folder import scan_image_folder
from fbl.data.registry import register_dataset
from fbl.data.sharding import eval_share, shard_order
from fbl.data.shot_groups import shot_groups
from fbl.data.split_list import LabelledFiles, load_lt_splits
from fbl.data.workers import cap_workers
from fbl.errors import ConfigError
from fbl.seeding import epoch_generator, epoch_seed

logger = logging.getLogger(__name__)

#: Input side of the ImageNet-style models (RandomResizedCrop / CenterCrop size).
CROP_SIZE = 224


class _EpochOrder(Sampler):
    """Yields ``(index, epoch)``: the order of ``sampler`` (or a (seed, epoch) permutation) tagged with the epoch."""

    def __init__(self, size: int, seed: int, sampler=None, shuffle: bool = True, batch_size=1, rank=0, world_size=1):
        self.size, self.seed, self.sampler, self.shuffle = size, seed, sampler, shuffle
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if self.sampler is not None and hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def _global_len(self) -> int:
        return len(self.sampler) if self.sampler is not None else self.size

    def __len__(self) -> int:
        return len(self._positions(self._global_len()))

    def _positions(self, total: int) -> torch.Tensor:
        if self.world_size == 1:
            return torch.arange(total)
        if self.shuffle or self.sampler is not None:
            return shard_order(torch.arange(total), self.batch_size, self.rank, self.world_size)
        return eval_share(total, self.rank, self.world_size)

    def __iter__(self):
        if self.sampler is not None:
            order = torch.as_tensor([int(i) for i in self.sampler], dtype=torch.int64)
        elif self.shuffle:
            order = torch.randperm(self.size, generator=epoch_generator(self.seed, self.epoch))
        else:
            order = torch.arange(self.size)
        return ((index, self.epoch) for index in order[self._positions(len(order))].tolist())


class _SeededPerSample(Dataset):
    """Seeds torch's generator from ``(seed, epoch, index)`` before the random transform of each sample."""

    def __init__(self, files: ImageFiles, seed: int):
        self.files, self.seed = files, seed

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key):
        index, epoch = key
        torch.manual_seed(epoch_seed(self.seed, epoch, stream=2 + int(index)))
        try:
            return self.files[index]
        except ConfigError as exc:  # returned, not raised: see UnreadableImage
            return UnreadableImage(str(exc))


class ImageBatchLoader:
    """Batches from image files through a ``DataLoader``; ``set_epoch`` as with the tensor loader."""

    def __init__(
        self, files: ImageFiles, batch_size: int, *, seed: int, train: bool, sampler, workers: int, device,
        rank: int = 0, world_size: int = 1,
    ):  # fmt: skip
        self.order = _EpochOrder(len(files), seed, sampler, train, batch_size, rank, world_size)
        self.collate = CollateSkippingBad()
        batch_size = batch_size // world_size if train else batch_size  # a share of each global batch
        self.batch_size = batch_size
        workers = cap_workers(workers)
        self.loader = DataLoader(
            _SeededPerSample(files, seed), batch_size=batch_size, sampler=self.order, num_workers=workers,
            collate_fn=self.collate, pin_memory=torch.device(device).type == "cuda",
            persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None,
        )  # fmt: skip

    def set_epoch(self, epoch: int) -> None:
        self.order.set_epoch(epoch)

    @property
    def skipped(self) -> int:
        """Unreadable images dropped so far (``--skip-bad-images``)."""
        return self.collate.skipped

    def __len__(self) -> int:
        return -(-len(self.order) // self.batch_size)

    def __iter__(self):
        for batch in self.loader:
            if isinstance(batch, UnreadableImage):
                raise batch.error()  # here, in the main process: one line naming the file
            if batch is not None:  # every image of the batch was unreadable and skipped
                yield batch


@dataclass(eq=False)
class ImageListData:
    """A long-tailed dataset of image files with its split lists (labels already re-indexed); a
    :class:`~fbl.data.contract.LongTailDataset`.

    Args:
        name: registry name.
        class_names: one per class.
        class_counts: training images per class.
        root: the folder image paths are relative to.
        splits: ``{"train": ..., "val": ..., "test": ...}`` (val / test where the benchmark has them).
        workers: ``DataLoader`` worker processes per loader (capped at the usable CPUs).
        skip_bad: drop unreadable images (counted) instead of stopping with an error naming the file.
        crop_size: model input side.
        allow_outside_root: read images whose real path (symbolic links resolved) is outside ``root``.
        fast_decode: decode JPEGs with libjpeg-turbo into uint8 tensors and crop/resize those
            (:mod:`fbl.data.image_files`: the same crops and flips, pixels within a level or so).
    """

    name: str
    class_names: list[str]
    class_counts: list[int]
    root: Path
    splits: dict[str, LabelledFiles] = field(repr=False)
    workers: int = 4
    skip_bad: bool = False
    crop_size: int = CROP_SIZE
    allow_outside_root: bool = False
    fast_decode: bool = False

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def train_targets(self) -> torch.Tensor:
        return torch.as_tensor(self.splits["train"].labels, dtype=torch.int64)

    @property
    def groups(self) -> dict[str, list[int]]:
        return shot_groups(self.class_counts)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (3, self.crop_size, self.crop_size)

    @property
    def eval_splits(self) -> tuple[str, ...]:
        return tuple(split for split in ("val", "test") if split in self.splits)

    @property
    def end_of_run_splits(self) -> tuple[str, ...]:
        """None here: every split is cheap enough to evaluate every epoch."""
        return ()

    def split_size(self, split: str) -> int:
        self._check_split(split)
        return len(self.splits[split].paths)

    def split_indices(self) -> dict[str, list[int]]:
        return {}  # the split lists themselves define the splits

    def image_ids(self, split: str) -> None:
        """``None``: the split lists define the splits, and an image is known by its line in its list."""
        self._check_split(split)
        return None

    def split_files(self, split: str) -> list[Path]:
        """Every image file of ``split``, ``root / path`` in list order."""
        self._check_split(split)
        return [self.root / path for path in self.splits[split].paths]

    def train_loader(self, batch_size: int, *, device, seed: int, sampler=None, rank=0, world_size=1):
        transform = imagenet_train_transform(self.crop_size, fast=self.fast_decode)
        return self._loader("train", transform, batch_size, seed, sampler, device, True, rank, world_size)

    def eval_loader(self, split: str = "test", batch_size: int = EVAL_BATCH_SIZE, *, device, rank=0, world_size=1):
        self._check_split(split)
        transform = imagenet_eval_transform(self.crop_size, fast=self.fast_decode)
        return self._loader(split, transform, batch_size, 0, None, device, False, rank, world_size)

    def _check_split(self, split: str) -> None:
        if split not in self.splits:
            raise ValueError(f"{self.name} has no {split!r} split; it has {', '.join(self.splits)}")

    def _files(self, split: str, transform) -> ImageFiles:
        """The map-style dataset of ``split``'s images and labels the loaders decode from."""
        paths, labels = self.splits[split]
        return ImageFiles(
            self.root, paths, labels, transform, skip_bad=self.skip_bad, allow_outside=self.allow_outside_root,
            fast_decode=self.fast_decode,
        )  # fmt: skip

    def _loader(self, split, transform, batch_size, seed, sampler, device, train, rank, world_size):
        return ImageBatchLoader(
            self._files(split, transform), batch_size, seed=seed, train=train, sampler=sampler,
            workers=self.workers, device=device, rank=rank, world_size=world_size,
        )  # fmt: skip


def _image_root(img_path, data_dir) -> Path:
    root = Path(img_path if img_path is not None else data_dir).expanduser()
    if not root.is_dir():
        raise ConfigError(f"Image folder {root} does not exist; pass --img_path (the root the split lists refer to)")
    return root


def build_split_list_dataset(
    name: str, data_dir=None, img_path=None, workers: int = 4, skip_bad_images: bool = False,
    allow_outside_root: bool = False, image_size: int = CROP_SIZE, fast_decode: bool = False,
) -> ImageListData:  # fmt: skip
    """ImageNet-LT (``imagenet``), iNaturalist 2018 (``inat``) or Places-LT (``place365``) from split lists.

    The lists (``ImageNet_LT_train.txt`` ...) are read from ``data_dir``, the images from ``img_path``;
    classes are re-indexed by descending training count as the reference code does.
    """
    lists = Path(data_dir if data_dir is not None else ".").expanduser()
    splits = load_lt_splits(name, lists, allow_outside=allow_outside_root)
    root = _image_root(img_path, data_dir)
    names = [str(int(original)) for original in splits.order]  # original label of each re-indexed class
    logger.info("%s: %s", name, ", ".join(f"{len(files.paths)} {split}" for split, files in splits.splits.items()))
    return ImageListData(
        name, names, list(splits.class_counts), root, splits.splits, workers, skip_bad_images, image_size,
        allow_outside_root, fast_decode,
    )  # fmt: skip


@register_dataset("imagenet", "imagenet-lt")
def build_imagenet_lt(
    data_dir=None, img_path=None, workers=4, skip_bad_images=False, allow_outside_root=False, image_size=CROP_SIZE,
    fast_decode=False,
):  # fmt: skip
    """ImageNet-LT: 1,000 classes, train / val / test lists."""
    return build_split_list_dataset(
        "imagenet", data_dir, img_path, workers, skip_bad_images, allow_outside_root, image_size, fast_decode
    )


@register_dataset("inat", "inat2018", "inaturalist", "inaturalist2018")
def build_inat2018(
    data_dir=None, img_path=None, workers=4, skip_bad_images=False, allow_outside_root=False, image_size=CROP_SIZE,
    fast_decode=False,
):  # fmt: skip
    """iNaturalist 2018: 8,142 classes, train / val lists (results are reported on val)."""
    return build_split_list_dataset(
        "inat", data_dir, img_path, workers, skip_bad_images, allow_outside_root, image_size, fast_decode
    )


@register_dataset("place365", "places-lt", "places")
def build_places_lt(
    data_dir=None, img_path=None, workers=4, skip_bad_images=False, allow_outside_root=False, image_size=CROP_SIZE,
    fast_decode=False,
):  # fmt: skip
    """Places-LT: 365 classes, train / val / test lists."""
    return build_split_list_dataset(
        "place365", data_dir, img_path, workers, skip_bad_images, allow_outside_root, image_size, fast_decode
    )


@register_dataset("folder", "image-folder")
def build_image_folder(
    data_dir=None, workers=4, skip_bad_images=False, image_size=CROP_SIZE, allow_outside_root=False, fast_decode=False
) -> ImageListData:
    """Any ImageFolder-style tree: ``ROOT/train/<class>/*.jpg`` and ``val/``, ``test/`` beside it (at least one).

    A run is selected and reported on an evaluation split, so a tree with neither ``val/`` nor
    ``test/`` images is refused here, before any training, rather than after the first epoch.
    """
    root = Path(data_dir if data_dir is not None else ".").expanduser()
    found = scan_image_folder(root, allow_outside=allow_outside_root)
    splits = {"train": found.splits["train"]}
    for split in ("val", "test"):
        if split in found.splits and not found.splits[split].paths:
            logger.warning("%s has no images; it is not evaluated", root / split)
        elif split in found.splits:
            splits[split] = found.splits[split]
    if len(splits) == 1:
        raise ConfigError(
            f"{root} has no val/ or test/ images, and a run is selected and reported on one: add "
            "ROOT/val/<class>/... or ROOT/test/<class>/... with the class folders of train/"
        )
    counts = torch.bincount(torch.as_tensor(splits["train"].labels), minlength=found.num_classes).tolist()
    return ImageListData(
        "folder", found.class_names, counts, root, splits, workers, skip_bad_images, image_size, allow_outside_root,
        fast_decode,
    )  # fmt: skip
