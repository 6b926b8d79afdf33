"""Training from pre-resized shards (``--dataset shards --data-dir DIR``, written by ``fbl data export``).

:class:`ShardData` is an :class:`~fbl.data.image_list_data.ImageListData` whose images are read from
the shards of :mod:`fbl.data.shards` instead of one file each: the same loaders, per-sample seeding,
transforms, class order and metadata, so a run on shards resumes exactly as one on files, and its
crops are those of the source dataset up to the pre-resizing described there. Each image is one
``os.pread`` at the offset the index records (no shared file position between DataLoader workers).
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fbl.data.image_files import LabelledImages, decode_rgb, decode_rgb_tensor, eval_resize_size
from fbl.data.image_list_data import CROP_SIZE, ImageListData
from fbl.data.registry import register_dataset
from fbl.data.shards import load_index, open_shard, verify_shards
from fbl.data.split_list import LabelledFiles
from fbl.errors import ConfigError

logger = logging.getLogger(__name__)


class ShardImages(LabelledImages):
    """``(transform(RGB image), label)`` of each image of one split's shards; the interface of ``ImageFiles``.

    Args:
        folder: the shard folder.
        shards: the split's shard entries of ``shards.json``.
        image_format: ``jpg``, ``png`` or ``npy``.
        stamps: ``{file: (size, mtime_ns)}`` from :func:`~fbl.data.shards.verify_shards`.
        transform: applied to the PIL image (or uint8 tensor with ``fast_decode``); None returns it.
        skip_bad: return ``None`` for an unreadable image instead of raising.
        fast_decode: decode to a 3xHxW uint8 tensor (:func:`~fbl.data.image_files.decode_rgb_tensor`).
    """

    def __init__(self, folder, shards, image_format, stamps, transform=None, skip_bad=False, fast_decode=False):
        self.folder, self.image_format, self.stamps = Path(folder), image_format, stamps
        self.files = [shard["file"] for shard in shards]
        self.shard = np.repeat(np.arange(len(shards)), [shard["count"] for shard in shards])
        self.span = np.asarray([span for shard in shards for span in shard["images"]], dtype=np.int64).reshape(-1, 2)
        self.labels = [int(label) for shard in shards for label in shard["labels"]]
        self.transform, self.skip_bad, self.fast_decode = transform, skip_bad, fast_decode
        self._fds: dict[int, int] = {}

    @property
    def targets(self) -> list[int]:
        return self.labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getstate__(self) -> dict:  # descriptors stay in the process that opened them
        return {**self.__dict__, "_fds": {}}

    def __del__(self):
        for fd in getattr(self, "_fds", {}).values():
            os.close(fd)

    def name(self, index: int) -> str:
        """``shard.tar:key.ext``, what an error names."""
        return f"{self.folder / self.files[self.shard[index]]}:{index:08d}.{self.image_format}"

    def read_bytes(self, index: int) -> bytes:
        shard = int(self.shard[index])
        if shard not in self._fds:
            self._fds[shard] = open_shard(self.folder / self.files[shard], self.stamps[self.files[shard]])
        offset, length = (int(v) for v in self.span[index])
        return os.pread(self._fds[shard], length, offset)

    def read(self, index: int) -> Image.Image | torch.Tensor:
        """The RGB image of ``index``: a PIL image, or a uint8 tensor with ``fast_decode``."""
        data, name = self.read_bytes(index), self.name(index)
        if self.image_format == "npy":
            pixels = _load_npy(data, name)
            return torch.from_numpy(pixels).permute(2, 0, 1) if self.fast_decode else Image.fromarray(pixels, "RGB")
        return decode_rgb_tensor(data, name) if self.fast_decode else decode_rgb(data, name)

    def decoded(self, index: int):
        return self.read(index)


def _load_npy(data: bytes, name: str) -> np.ndarray:
    try:
        pixels = np.load(io.BytesIO(data), allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"Cannot read image {name}: {' '.join(str(exc).split())}") from None
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ConfigError(f"Cannot read image {name}: expected a uint8 HxWx3 array, got {pixels.dtype} {pixels.shape}")
    return pixels


@dataclass(eq=False)
class ShardData(ImageListData):
    """A long-tailed dataset read from shards; the members of ``ImageListData`` plus the shard index.

    ``splits`` holds each image's key and label; ``split_files`` is ``None`` (each shard's checksum
    was verified when the set was opened, and every image was decoded when it was exported).
    """

    index: dict = field(default_factory=dict, repr=False)
    stamps: dict = field(default_factory=dict, repr=False)

    def split_files(self, split: str) -> None:
        self._check_split(split)
        return None

    def _files(self, split: str, transform) -> ShardImages:
        shards, image_format = self.index["splits"][split]["shards"], self.index["image"]["format"]
        return ShardImages(
            self.root, shards, image_format, self.stamps, transform, skip_bad=self.skip_bad,
            fast_decode=self.fast_decode,
        )  # fmt: skip


@register_dataset("shards", "webdataset")
def build_shards(data_dir=None, workers=4, skip_bad_images=False, image_size=CROP_SIZE, fast_decode=False) -> ShardData:
    """The shards ``fbl data export`` wrote to ``data_dir``, their checksums verified."""
    folder = Path(data_dir if data_dir is not None else ".").expanduser()
    index = load_index(folder)
    stamps = verify_shards(folder, index)
    short_side = index["image"]["short_side"]
    if short_side < eval_resize_size(image_size):
        logger.warning(
            "%s holds images with a %d-pixel short side; --image-size %d resizes them up to %d for evaluation",
            folder, short_side, image_size, eval_resize_size(image_size),
        )  # fmt: skip
    splits = {
        split: LabelledFiles([f"{i:08d}" for i in range(entry["count"])], _labels(entry))
        for split, entry in index["splits"].items()
    }
    counts = ", ".join(f"{len(files.paths)} {split}" for split, files in splits.items())
    logger.info("shards of %s: %s", index["source"].get("dataset"), counts)
    return ShardData(
        "shards", list(index["class_names"]), list(index["class_counts"]), folder, splits, workers,
        skip_bad_images, image_size, False, fast_decode, index=index, stamps=stamps,
    )  # fmt: skip


def _labels(entry: dict) -> np.ndarray:
    return np.asarray([label for shard in entry["shards"] for label in shard["labels"]], dtype=np.int64)
