"""Scan an ImageFolder-style tree: ``root/train/<class>/...`` plus optional ``root/val`` and ``root/test``.

Class ``i`` is the ``i``-th class folder of ``train`` in sorted order (torchvision's ``ImageFolder``
convention); ``val`` and ``test`` must use the same folder names. Images are found recursively
inside each class folder by extension, in sorted order so that two scans list them identically.

What counts as an image, and which links are followed:

- only regular files (a FIFO named ``x.jpg`` would block its reader forever) whose names do not
  start with ``.`` (macOS leaves ``._x.jpg`` AppleDouble metadata beside each copied file);
- a symbolic link is followed only to a target inside ``root`` (both resolved), unless
  ``allow_outside``: a link elsewhere is a ConfigError naming it, since it can pull any file of
  the machine into a class;
- every folder is walked once: a linked folder that is already walked, that holds a class folder
  (a ``loop -> ..`` link would list the class again and again), or that lies inside another class
  folder (its images would get the wrong label) is skipped with a warning naming the link.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fbl.data.split_list import LabelledFiles
from fbl.errors import ConfigError

logger = logging.getLogger(__name__)

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


def _inside(path: str, folder: str) -> bool:
    """``path`` is ``folder`` or lies below it (both real paths)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _entries(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as entries:
            return sorted(entries, key=lambda entry: entry.name)
    except OSError as exc:
        raise ConfigError(f"Cannot list folder {folder}: {' '.join(str(exc).split())}") from None


@dataclass(eq=False)
class _TreeWalk:
    """One scan's state: the real root, every class folder's real path, and the folders walked so far."""

    root: Path
    allow_outside: bool
    real_root: str = ""
    class_dirs: dict[str, Path] = field(default_factory=dict)  # real path -> the class folder
    walked: set[str] = field(default_factory=set)
    hidden: list[str] = field(default_factory=list)
    not_regular: list[str] = field(default_factory=list)
    current_class: str = ""  # real path of the class folder being walked

    def __post_init__(self):
        self.real_root = os.path.realpath(self.root)

    def resolve(self, path: Path) -> str:
        """The real path of ``path``; a ConfigError if it leaves the root and that is not allowed."""
        real = os.path.realpath(path)
        if not self.allow_outside and not _inside(real, self.real_root):
            raise ConfigError(
                f"{path} leads through a symbolic link to {real}, outside the data root {self.root} "
                "(--allow-outside-root follows such links)"
            )
        return real

    def class_folders(self, split_dir: Path) -> list[str]:
        """Sorted visible sub-folders of ``split_dir``; each must resolve inside the root, to a folder of its own."""
        names = [e.name for e in _entries(split_dir) if e.is_dir() and not e.name.startswith(".")]
        for name in names:
            real = self.resolve(split_dir / name)
            if real in self.class_dirs:
                other = self.class_dirs[real]
                raise ConfigError(f"{split_dir / name} and {other} are the same folder ({real}); link one of them away")
            self.class_dirs[real] = split_dir / name
        return names

    def images(self, class_dir: Path) -> list[str]:
        """Image paths under ``class_dir`` relative to the root, in sorted walk order."""
        real = self.resolve(class_dir)
        if real in self.walked:  # a class folder linked into another one, which was scanned first
            raise ConfigError(f"{class_dir} ({real}) was already scanned inside another class folder")
        found: list[str] = []
        self.current_class = real
        self._walk(class_dir, real, found)
        return found

    def _walk(self, folder: Path, real: str, found: list[str]) -> None:
        self.walked.add(real)
        for entry in _entries(folder):
            path = folder / entry.name
            if entry.name.startswith("."):
                if entry.name.lower().endswith(IMAGE_EXTENSIONS):
                    self.hidden.append(self._relative(path))
            elif entry.is_dir():
                child = self.resolve(path) if entry.is_symlink() else os.path.join(real, entry.name)
                if self._may_walk(path, child, entry.is_symlink()):
                    self._walk(path, child, found)
            elif entry.name.lower().endswith(IMAGE_EXTENSIONS):
                self._add_file(entry, path, found)

    def _add_file(self, entry: os.DirEntry, path: Path, found: list[str]) -> None:
        if not entry.is_file():  # follows links: a FIFO, a device or a broken link is not an image
            self.not_regular.append(self._relative(path))
            return
        if entry.is_symlink():
            self.resolve(path)
        found.append(self._relative(path))

    def _may_walk(self, path: Path, real: str, linked: bool) -> bool:
        if real in self.walked:
            logger.warning("Skipping %s: it is %s, already scanned (a link loop or a second link)", path, real)
            return False
        if not linked:  # a real sub-folder can neither loop nor reach another class
            return True
        owner = next((cls for cls in self.class_dirs if _inside(real, cls)), None)
        if owner is not None and owner != self.current_class:
            logger.warning("Skipping %s: the link leads into another class folder (%s)", path, real)
            return False
        if owner is None and any(_inside(cls, real) for cls in self.class_dirs):
            logger.warning("Skipping %s: the link leads to %s, which holds class folders (a loop)", path, real)
            return False
        return True

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def report_skipped(self) -> None:
        """One log line per kind of entry that looked like an image but is not one."""
        if self.not_regular:
            logger.warning(
                "Skipped %d entries named like images that are not regular files (FIFOs, devices, broken links), "
                "e.g. %s", len(self.not_regular), self.not_regular[0],
            )  # fmt: skip
        if self.hidden:
            logger.info(
                "Skipped %d hidden files named like images (macOS ._* metadata, say), e.g. %s",
                len(self.hidden), self.hidden[0],
            )  # fmt: skip


def _check_root(root: Path) -> None:
    if not (root / "train").is_dir():
        raise ConfigError(
            f"Expected an ImageFolder tree with class folders in {root / 'train'}, but it is not a folder"
        )


def scan_image_folder(root, allow_outside: bool = False) -> ImageFolderSplits:
    """List the images of each split under ``root`` with labels from the ``train`` class folders.

    ``allow_outside`` follows symbolic links whose targets lie outside ``root`` (see the module docstring).
    """
    root = Path(root)
    _check_root(root)
    walk = _TreeWalk(root, allow_outside)
    present = [split for split in SPLITS if (root / split).is_dir()]
    folders = {split: walk.class_folders(root / split) for split in present}  # every class folder known first
    class_names = folders["train"]
    if not class_names:
        raise ConfigError(f"No class folders in {root / 'train'}")
    index = {name: i for i, name in enumerate(class_names)}
    splits: dict[str, LabelledFiles] = {}
    for split in present:
        split_dir = root / split
        unknown = [name for name in folders[split] if name not in index]
        if unknown:
            raise ConfigError(f"{split_dir} has class folder(s) not in {root / 'train'}: {', '.join(unknown[:5])}")
        paths: list[str] = []
        labels: list[int] = []
        for name in folders[split]:
            images = walk.images(split_dir / name)
            # A training class without images has no count to learn from; an empty val/test class is only smaller.
            if split == "train" and not images:
                raise ConfigError(f"Class folder {split_dir / name} has no images ({', '.join(IMAGE_EXTENSIONS)})")
            paths += images
            labels += [index[name]] * len(images)
        splits[split] = LabelledFiles(paths, np.asarray(labels, dtype=np.int64))
    walk.report_skipped()
    return ImageFolderSplits(class_names, splits)
