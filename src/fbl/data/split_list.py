"""Split lists of the large long-tailed benchmarks (ImageNet-LT, iNaturalist 2018, Places-LT).

Each benchmark ships text files, optionally gzipped, with one ``relative/path label`` per line (the
lists of Liu et al., OLTR, CVPR 2019). This module reads them, checks every line, and re-indexes
the classes by training count the way the reference code does, so that class 0 is the most
frequent one and the many/medium/few groups are contiguous-ish ranges of indices.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import numpy as np

from fbl.data.shot_groups import shot_groups
from fbl.errors import ConfigError

_LABEL = re.compile(r"[+-]?[0-9]+")


class LabelledFiles(NamedTuple):
    """Image paths relative to the dataset root and their int64 labels (unpacks as ``paths, labels``)."""

    paths: list[str]
    labels: np.ndarray


@dataclass(frozen=True)
class SplitFiles:
    """Where one benchmark's split lists are and how they are used.

    Args:
        num_classes: ``C``; every label must lie in ``0..C-1``.
        train: file name of the training list (found with or without ``.gz``).
        val: file name of the validation list.
        test: file name of the test list, or None when the benchmark has none.
        eval_split: the split results are reported on (``"test"``, or ``"val"`` where there is no test list).
    """

    num_classes: int
    train: str
    val: str
    test: str | None
    eval_split: str

    def files(self) -> dict[str, str]:
        """``{split: file name}`` of the lists this benchmark has, train first."""
        names = {"train": self.train, "val": self.val, "test": self.test}
        return {split: name for split, name in names.items() if name is not None}


#: The published lists of each benchmark. iNaturalist 2018 has no test list; its val split is the one reported.
SPLIT_FILES: dict[str, SplitFiles] = {
    "imagenet": SplitFiles(1000, "ImageNet_LT_train.txt", "ImageNet_LT_val.txt", "ImageNet_LT_test.txt", "test"),
    "inat": SplitFiles(8142, "iNaturalist18_train.txt", "iNaturalist18_val.txt", None, "val"),
    "place365": SplitFiles(365, "Places_LT_train.txt", "Places_LT_val.txt", "Places_LT_test.txt", "test"),
}


def find_split_file(folder, name: str) -> Path:
    """``folder/name`` or ``folder/name.gz``, whichever exists (the plain file first), else a ConfigError."""
    folder = Path(folder)
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise ConfigError(f"Split list {name} (or {name}.gz) not found in {folder}")


def _check_relative(relpath: str, where: str, allow_outside: bool) -> None:
    """Refuse a path that would leave the dataset root: absolute, or with a ``..`` component."""
    if allow_outside:
        return
    # Checked lexically, once per line; where symbolic links under the root lead is checked when
    # each image is opened (fbl.data.image_files.ImageFiles), since resolving 400k paths up front
    # would cost minutes on a network file system.
    posix = PurePosixPath(relpath)
    if posix.is_absolute():
        raise ConfigError(f"{where}: expected a path relative to the dataset root but got absolute {relpath!r}")
    if ".." in posix.parts:
        raise ConfigError(f"{where}: path {relpath!r} leaves the dataset root ('..'); pass allow_outside to permit it")


def check_inside_root(relpath: str, root, allow_outside: bool = False, where: str | None = None) -> Path:
    """``root / relpath`` after refusing absolute paths and ``..`` components (unless ``allow_outside``).

    ``where`` (e.g. ``"list.txt:12"``) starts the error message; it defaults to ``root``.
    """
    _check_relative(relpath, where or str(root), allow_outside)
    return Path(root) / relpath


def _open_text(path: Path):
    # utf-8-sig drops the byte-order mark some Windows editors put first, which would otherwise
    # become part of the first path.
    if path.exists() and not path.is_file():  # a FIFO's open() would wait for a writer forever
        raise ConfigError(f"Cannot read split list {path}: not a regular file")
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig")
    return open(path, encoding="utf-8-sig")


def _parse_line(line: str, where: str, num_classes: int | None, allow_outside: bool) -> tuple[str, int]:
    """``(relative path, label)`` of one non-blank list line, or a ConfigError starting with ``where``."""
    parts = line.rsplit(None, 1)
    if len(parts) != 2:
        raise ConfigError(f"{where}: expected 'relative/path label' but got {line.rstrip(chr(10))!r}")
    relpath, label_text = parts[0].strip(), parts[1]
    if not _LABEL.fullmatch(label_text):
        raise ConfigError(f"{where}: expected an integer label but got {label_text!r}")
    label = int(label_text)
    if label < 0 or (num_classes is not None and label >= num_classes):
        limit = f"0..{num_classes - 1}" if num_classes is not None else ">= 0"
        raise ConfigError(f"{where}: expected a label in {limit} but got {label}")
    _check_relative(relpath, where, allow_outside)
    if PurePosixPath(relpath).name.startswith("._"):
        raise ConfigError(f"{where}: {relpath!r} is a macOS AppleDouble metadata file (._*), not an image")
    return relpath, label


def _check_repeat(seen: dict, relpath: str, label: int, lineno: int, where: str) -> None:
    """A path listed twice is an error: with one label it would count twice, with two it has no single label."""
    key = PurePosixPath(relpath)  # "a//b.jpg" and "./a/b.jpg" name the same file as "a/b.jpg"
    if key not in seen:
        seen[key] = (lineno, label)
        return
    first, first_label = seen[key]
    if first_label == label:
        raise ConfigError(f"{where}: {relpath!r} is listed again (first on line {first}); list each image once")
    raise ConfigError(f"{where}: {relpath!r} has label {label} here but {first_label} on line {first}")


def read_split_list(path, num_classes: int | None = None, allow_outside: bool = False) -> LabelledFiles:
    """Read a ``relative/path label`` list (plain or ``.gz``, UTF-8 with or without a BOM); blank lines are ignored.

    Each line is split at its last run of whitespace. A line without a label, a label that is not a
    non-negative integer (or not below ``num_classes`` when given), a path leaving the root (see
    :func:`check_inside_root`), a macOS ``._*`` file, or a path listed a second time (whether with
    the same label or another) is a :class:`ConfigError` naming ``file:line``.
    """
    path = Path(path)
    paths: list[str] = []
    labels: list[int] = []
    seen: dict[PurePosixPath, tuple[int, int]] = {}
    try:
        with _open_text(path) as lines:
            for lineno, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                where = f"{path}:{lineno}"
                relpath, label = _parse_line(line, where, num_classes, allow_outside)
                _check_repeat(seen, relpath, label, lineno, where)
                paths.append(relpath)
                labels.append(label)
    except FileNotFoundError:
        raise ConfigError(f"Split list {path} not found") from None
    except (OSError, UnicodeDecodeError, EOFError) as exc:  # a directory, a corrupt gzip, not UTF-8 text
        reason = " ".join(str(exc).split())
        raise ConfigError(f"Cannot read split list {path}: {reason}") from None
    if not paths:
        raise ConfigError(f"Split list {path} has no entries")
    return LabelledFiles(paths, np.asarray(labels, dtype=np.int64))


def class_order_by_count(train_labels: Sequence[int], num_classes: int) -> np.ndarray:
    """Original class indices from most to least frequent in training: ``order = argsort(-counts)``.

    New class ``k`` is original class ``order[k]``. numpy's default sort kind is used on int64
    counts, exactly as the reference code does, so ties come out in the same order; that kind is not
    stable, so the tie order is numpy's (it may differ between numpy builds and CPUs).
    """
    labels = np.asarray(train_labels, dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ConfigError(f"Expected training labels in 0..{num_classes - 1} but got {labels.min()}..{labels.max()}")
    counts = np.bincount(labels, minlength=num_classes).astype(np.int64)
    return np.argsort(-counts)


def remap_labels(labels: Sequence[int], order: np.ndarray) -> np.ndarray:
    """Labels in the new index: original class ``order[k]`` becomes ``k`` (``remap[order] = arange(C)``)."""
    order = np.asarray(order, dtype=np.int64)
    num_classes = len(order)
    if not np.array_equal(np.sort(order), np.arange(num_classes)):
        raise ValueError(f"Expected order to be a permutation of 0..{num_classes - 1}")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ConfigError(f"Expected labels in 0..{num_classes - 1} but got {labels.min()}..{labels.max()}")
    remap = np.empty(num_classes, dtype=np.int64)
    remap[order] = np.arange(num_classes)
    return remap[labels]


@dataclass(eq=False)
class LTSplits:
    """A benchmark's split lists, re-indexed by training count.

    Args:
        name: key of :data:`SPLIT_FILES`.
        num_classes: ``C``.
        splits: ``{"train": ..., "val": ..., ["test": ...]}`` with labels in the new index.
        order: original class of each new class (``order[k]``).
        class_counts: training lines per new class, non-increasing.
        eval_split: the split results are reported on.
    """

    name: str
    num_classes: int
    splits: dict[str, LabelledFiles]
    order: np.ndarray
    class_counts: list[int]
    eval_split: str

    @property
    def groups(self) -> dict[str, list[int]]:
        """Many/medium/few-shot classes (new indices) by training count, see :func:`fbl.data.shot_groups`."""
        return shot_groups(self.class_counts)


def load_lt_splits(name: str, list_dir, allow_outside: bool = False) -> LTSplits:
    """Read every list of benchmark ``name`` from ``list_dir`` and re-index the classes by training count."""
    if name not in SPLIT_FILES:
        raise ConfigError(f"Unknown split-list benchmark {name!r}; choose one of: {', '.join(SPLIT_FILES)}")
    spec = SPLIT_FILES[name]
    # Locate every file first, so a missing one is reported before minutes of parsing.
    located = {split: find_split_file(list_dir, file) for split, file in spec.files().items()}
    raw = {split: read_split_list(path, spec.num_classes, allow_outside) for split, path in located.items()}
    order = class_order_by_count(raw["train"].labels, spec.num_classes)
    splits = {split: LabelledFiles(files.paths, remap_labels(files.labels, order)) for split, files in raw.items()}
    counts = np.bincount(splits["train"].labels, minlength=spec.num_classes)
    return LTSplits(name, spec.num_classes, splits, order, counts.tolist(), spec.eval_split)
