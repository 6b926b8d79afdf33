"""Scan an ImageFolder-style tree: ``root/train/<class>/...`` plus optional ``root/val`` and ``root/test``.

Class ``i`` is the ``i``-th class folder of ``train`` in sorted order (torchvision's ``ImageFolder``
convention); ``val`` and ``test`` must use the same folder names. Images are found recursively
inside each class folder by extension, in sorted order so that two scans list them identically.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fbl.data.split_list import LabelledFiles
from fbl.errors import ConfigError

#: File name endings counted as images (compared case-insensitively), as torchvision's ImageFolder.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

SPLITS = ("train", "val", "test")


@dataclass(eq=False)
class ImageFolderSplits:
    """What :func:`scan_image_folder` found.

    Args:
        class_names: sorted class folder names of ``train``; class ``i`` is ``class_names[i]``.
        splits: ``{split: (paths relative to root, int64 labels)}`` for ``train`` and whichever of
            ``val`` / ``test`` exist.
    """

    class_names: list[str]
    splits: dict[str, LabelledFiles]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _class_folders(split_dir: Path) -> list[str]:
    return sorted(entry.name for entry in os.scandir(split_dir) if entry.is_dir() and not entry.name.startswith("."))


def _images_under(folder: Path, root: Path) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames.sort()  # os.walk visits in this order
        for name in sorted(filenames):
            if name.lower().endswith(IMAGE_EXTENSIONS):
                found.append(Path(dirpath, name).relative_to(root).as_posix())
    return found


def scan_image_folder(root) -> ImageFolderSplits:
    """List the images of each split under ``root`` with labels from the ``train`` class folders."""
    root = Path(root)
    if not (root / "train").is_dir():
        raise ConfigError(
            f"Expected an ImageFolder tree with class folders in {root / 'train'}, but it is not a folder"
        )
    class_names = _class_folders(root / "train")
    if not class_names:
        raise ConfigError(f"No class folders in {root / 'train'}")
    index = {name: i for i, name in enumerate(class_names)}
    splits: dict[str, LabelledFiles] = {}
    for split in SPLITS:
        split_dir = root / split
        if not split_dir.is_dir():
            continue
        names = _class_folders(split_dir)
        unknown = [name for name in names if name not in index]
        if unknown:
            raise ConfigError(f"{split_dir} has class folder(s) not in {root / 'train'}: {', '.join(unknown[:5])}")
        paths: list[str] = []
        labels: list[int] = []
        for name in names:
            images = _images_under(split_dir / name, root)
            # A training class without images has no count to learn from; an empty val/test class is only smaller.
            if split == "train" and not images:
                raise ConfigError(f"Class folder {split_dir / name} has no images ({', '.join(IMAGE_EXTENSIONS)})")
            paths += images
            labels += [index[name]] * len(images)
        splits[split] = LabelledFiles(paths, np.asarray(labels, dtype=np.int64))
    return ImageFolderSplits(class_names, splits)
