"""CIFAR-10-LT and CIFAR-100-LT, read from the standard python-pickle folders without torchvision.

The pickles are read directly (no md5 check), so re-packed copies without the ``filenames`` key
load too. They are read with :func:`~fbl.data.safe_pickle.load_pickle_file`, which never runs code
from the file, and what they hold is checked (uint8 pixels, integer labels, no empty class) so a
damaged or foreign file is one :class:`~fbl.errors.ConfigError` line naming it.

The long-tailed train split is :func:`~fbl.data.long_tail.long_tail_counts` +
:func:`~fbl.data.long_tail.long_tail_indices` over the official train labels, with ``n_max`` the
largest class of the train files (5000 for CIFAR-10, 500 for CIFAR-100); the test split is the
full, balanced test set. The train images the subset leaves unused (less the validation split) are
the ``lossless_estimate`` split, served on request (see :mod:`fbl.data.lossless_estimate_split`).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fbl.data.augment import AugmentSpec
from fbl.data.dataset import LongTailData
from fbl.data.long_tail import long_tail_counts, long_tail_indices
from fbl.data.lossless_estimate_split import LongTailDataWithEstimate, lossless_estimate_split
from fbl.data.registry import register_dataset
from fbl.data.safe_pickle import load_pickle_file
from fbl.data.validation_split import hold_out_validation, validation_size
from fbl.errors import ConfigError

logger = logging.getLogger(__name__)

PathLike = str | Path

#: Where CIFAR is looked for when no ``data_dir`` is given (git-ignored at the repository root).
DEFAULT_DATA_DIR = Path("data")

#: Normalisation and augmentation of the CIFAR-LT reference code, shared by CIFAR-10 and CIFAR-100.
#: The std is the reference's (0.2023, 0.1994, 0.2010), not the true per-pixel std of the train set
#: (about 0.247, 0.243, 0.262); it is kept so results stay comparable with published ones.
CIFAR_AUGMENT = AugmentSpec(mean=(0.4914, 0.4822, 0.4465), std=(0.2023, 0.1994, 0.2010), crop_padding=4, hflip=True)


#: Validation images per class held out of the images the long-tailed subsampling left unused.
CIFAR_VAL_PER_CLASS = 50


@dataclass(frozen=True)
class CifarFormat:
    """File layout of one CIFAR variant: the only thing CIFAR-10 and CIFAR-100 differ in here."""

    name: str
    title: str
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    #: Further evaluation files read when present, by split name (not part of the official layout).
    extra_test_files: tuple[tuple[str, str], ...]
    meta_file: str
    label_key: str
    names_key: str
    torchvision_class: str
    #: The extra evaluation split whose images are lossless test images (classes the long-tailed
    #: subset leaves no spare training image are estimated on it), or ``None``.
    lossless_test_split: str | None = None


CIFAR10_FORMAT = CifarFormat(
    name="cifar10",
    title="CIFAR-10",
    folder="cifar-10-batches-py",
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_files=("test_batch",),
    extra_test_files=(("test_lossless", "test_batch_lossless_1000"),),
    meta_file="batches.meta",
    label_key="labels",
    names_key="label_names",
    torchvision_class="CIFAR10",
    lossless_test_split="test_lossless",
)

CIFAR100_FORMAT = CifarFormat(
    name="cifar100",
    title="CIFAR-100",
    folder="cifar-100-python",
    train_files=("train",),
    test_files=("test",),
    extra_test_files=(),
    meta_file="meta",
    label_key="fine_labels",
    names_key="fine_label_names",
    torchvision_class="CIFAR100",
)


def _load_pickle(path: Path) -> dict:
    # latin1 decodes the Python-2 pickles of the official archives; keys may still come back as
    # bytes from pickles re-saved after an encoding="bytes" load, so normalise them to str.
    obj = load_pickle_file(path)
    if not isinstance(obj, dict):
        raise ConfigError(f"{path} is not a CIFAR python batch: expected a pickled dict, got {type(obj).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _get(batch: dict, key: str, path: Path):
    if key not in batch:
        raise ConfigError(f"{path} is not a CIFAR python batch: it has no {key!r} key (keys: {sorted(batch)})")
    return batch[key]


def _pixels(value, path: Path) -> np.ndarray:
    """``data`` as uint8: integer values in 0..255 are accepted whatever their integer dtype."""
    try:
        data = np.asarray(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ConfigError(f"{path}: 'data' is not an array of pixel values ({str(exc).splitlines()[0]})") from exc
    if data.dtype.kind not in "iu":
        raise ConfigError(f"{path}: 'data' has dtype {data.dtype}, expected uint8 pixel values 0..255")
    if data.dtype != np.uint8 and data.size and (data.min() < 0 or data.max() > 255):
        raise ConfigError(f"{path}: 'data' holds values {data.min()}..{data.max()}, expected uint8 pixel values 0..255")
    return data.astype(np.uint8, copy=False)


def _labels(value, key: str, path: Path) -> np.ndarray:
    """A flat list of integer class indices as int64 (the class range is checked by the caller)."""
    try:
        labels = np.asarray(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ConfigError(f"{path}: {key!r} is not a list of integer labels ({str(exc).splitlines()[0]})") from exc
    if labels.ndim == 1 and labels.size == 0:
        return labels.astype(np.int64)  # np.asarray([]) is float64
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ConfigError(
            f"{path}: {key!r} must be a flat list of integer labels, got {labels.dtype} of shape {labels.shape}"
        )
    if labels.dtype.kind == "u" and labels.max() > np.iinfo(np.int64).max:
        raise ConfigError(f"{path}: {key!r} holds label {labels.max()}, far outside any class range")
    return labels.astype(np.int64, copy=False)


def _read_batches(folder: Path, files: tuple[str, ...], label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images N×3×32×32 and int64 labels of the given pickle files, concatenated in order."""
    images, labels = [], []
    for name in files:
        path = folder / name
        batch = _load_pickle(path)
        data = _pixels(_get(batch, "data", path), path)
        target = _labels(_get(batch, label_key, path), label_key, path)
        if data.size != target.shape[0] * 3 * 32 * 32:
            raise ConfigError(
                f"{path}: 'data' has shape {data.shape}, expected {target.shape[0]} x 3072 for {target.shape[0]} labels"
            )
        # Each row is the 1024 red, then 1024 green, then 1024 blue values of a 32x32 image: CHW already.
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(target)
    return np.concatenate(images), np.concatenate(labels)


def read_cifar(folder: PathLike, fmt: CifarFormat, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """Read one split of a CIFAR batches folder: uint8 images N×3×32×32 and int64 labels, file order."""
    folder = Path(folder)
    return _read_batches(folder, fmt.train_files if train else fmt.test_files, fmt.label_key)


def read_class_names(folder: PathLike, fmt: CifarFormat) -> list[str]:
    path = Path(folder) / fmt.meta_file
    names = _get(_load_pickle(path), fmt.names_key, path)
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, (str, bytes)) for n in names):
        raise ConfigError(f"{path}: {fmt.names_key!r} must be a list of class names")
    return [n.decode("latin1") if isinstance(n, bytes) else n for n in names]


def _is_batches_folder(path: Path, fmt: CifarFormat) -> bool:
    return path.name == fmt.folder or (path / fmt.meta_file).is_file()


def resolve_cifar_folder(data_dir: PathLike | None, fmt: CifarFormat, download: bool = False) -> Path:
    """The batches folder for ``data_dir``, which may be its parent (torchvision's ``root``) or the folder itself.

    Downloads through torchvision when the folder is missing and ``download`` is set; otherwise a
    missing or incomplete folder is a :class:`~fbl.errors.ConfigError` naming the exact path.
    """
    root = Path(DEFAULT_DATA_DIR if data_dir is None else data_dir).expanduser()
    folder = root if _is_batches_folder(root, fmt) else root / fmt.folder
    if not folder.is_dir():
        if not download:
            raise ConfigError(
                f"{fmt.title} not found: no folder {folder}; pass --download (download=True) "
                f"or put {fmt.folder} under {folder.parent}"
            )
        _download(folder.parent, fmt)
    missing = [f for f in (*fmt.train_files, *fmt.test_files, fmt.meta_file) if not (folder / f).is_file()]
    if missing:
        raise ConfigError(f"{fmt.title} folder {folder} is incomplete: missing {', '.join(missing)}")
    return folder


def _download(root: Path, fmt: CifarFormat) -> None:
    # torchvision fetches and md5-checks the official archive and unpacks it to root/<fmt.folder>;
    # everything after that is read by this module.
    from torchvision import datasets

    logger.info("downloading %s into %s", fmt.title, root)
    try:
        getattr(datasets, fmt.torchvision_class)(root=str(root), train=True, download=True)
    except (OSError, RuntimeError) as err:
        raise ConfigError(f"Could not download {fmt.title} into {root}: {err}") from err


def _check_labels(folder, fmt: CifarFormat, class_names: list, train_y: np.ndarray, test_y: np.ndarray) -> None:
    """Labels within the classes the meta file names, and at least one training image per class
    (losses and per-class metrics divide by n_c): say which class is missing rather than let the
    long-tail profile fail on it."""
    num_classes = len(class_names)
    for split, y in (("train", train_y), ("test", test_y)):
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise ConfigError(
                f"{folder}: {split} labels outside 0..{num_classes - 1} ({fmt.meta_file} names {num_classes} classes)"
            )
    empty = np.flatnonzero(np.bincount(train_y, minlength=num_classes) == 0)
    if empty.size:
        first = int(empty[0])
        others = f" (and {empty.size - 1} more classes)" if empty.size > 1 else ""
        raise ConfigError(
            f"{folder}: class {first} ({class_names[first]!r}) has no training images in "
            f"{', '.join(fmt.train_files)}{others}"
        )


def build_cifar(
    fmt: CifarFormat,
    data_dir: PathLike | None = None,
    imb_type: str = "exp",
    imb_factor: float = 0.01,
    rand_number: int = 0,
    download: bool = False,
    val_split="none",
    rotate: float = 0.0,
) -> LongTailData:
    """CIFAR-LT: the reference long-tailed subset of the train split, and the full test split.

    Args:
        fmt: :data:`CIFAR10_FORMAT` or :data:`CIFAR100_FORMAT`.
        data_dir: the batches folder or its parent; default :data:`DEFAULT_DATA_DIR`.
        imb_type, imb_factor: profile of :func:`~fbl.data.long_tail.long_tail_counts`.
        rand_number: seed of :func:`~fbl.data.long_tail.long_tail_indices` (the reference's default is 0).
        download: fetch the official archive with torchvision if the folder is missing.
        val_split: ``"none"``, ``"auto"`` (:data:`CIFAR_VAL_PER_CLASS` per class) or a number per
            class: a balanced validation split from the official train images the long-tailed
            subset left out; the largest class gives up the shortfall from its own training images
            (see :mod:`fbl.data.validation_split`).
        rotate: largest random rotation of a training image in degrees (:class:`~fbl.data.augment.AugmentSpec`'s
            ``rotation``); 0, the FBL paper's pipeline, leaves only the crop and flip.
    """
    folder = resolve_cifar_folder(data_dir, fmt, download)
    class_names = read_class_names(folder, fmt)
    num_classes = len(class_names)
    train_x, train_y = read_cifar(folder, fmt, train=True)
    test_x, test_y = read_cifar(folder, fmt, train=False)
    _check_labels(folder, fmt, class_names, train_y, test_y)

    # The reference takes n_max = len(train) / C, which is the (equal) class size of the official
    # split; the largest class gives the same value there and also works on smaller copies.
    n_max = int(np.bincount(train_y, minlength=num_classes).max())
    counts = long_tail_counts(n_max, num_classes, imb_type, imb_factor)
    indices = long_tail_indices(train_y, counts, rand_number)
    per_class = validation_size(val_split, CIFAR_VAL_PER_CLASS)
    val = None
    if per_class is not None:
        indices, val = hold_out_validation(train_y, indices, per_class, rand_number, num_classes)
        counts = np.bincount(train_y[indices], minlength=num_classes).tolist()
    logger.info(
        "%s-LT (%s, imb_factor %g, seed %d): %d of %d train images, %d test images",
        fmt.title, imb_type, imb_factor, rand_number, len(indices), len(train_y), len(test_y),
    )  # fmt: skip
    extra_eval = _extra_eval_splits(folder, fmt, num_classes)
    return LongTailDataWithEstimate(
        name=fmt.name,
        num_classes=num_classes,
        class_names=class_names,
        train_images=torch.from_numpy(train_x[indices]),
        train_targets=torch.from_numpy(train_y[indices]),
        test_images=torch.from_numpy(test_x),
        test_targets=torch.from_numpy(test_y),
        class_counts=counts,
        indices=indices,
        augment=dataclasses.replace(CIFAR_AUGMENT, rotation=rotate),
        val_images=None if val is None else torch.from_numpy(train_x[val]),
        val_targets=None if val is None else torch.from_numpy(train_y[val]),
        val_indices=val,
        extra_eval=extra_eval,
        **_estimate_fields(train_x, train_y, indices, val, extra_eval.get(fmt.lossless_test_split), num_classes),
    )


def _estimate_fields(train_x, train_y, indices, val, lossless_test, num_classes: int) -> dict:
    """The ``lossless_estimate`` split: train images outside the training subset and the validation
    split, and lossless test images for classes with none (see :mod:`fbl.data.lossless_estimate_split`)."""
    used = indices if val is None else np.concatenate([indices, val])
    test_x, test_y = lossless_test if lossless_test is not None else (None, None)
    split = lossless_estimate_split(train_y, used, num_classes, None if test_y is None else test_y.numpy())
    pool = split.pool_positions
    images, targets = [torch.from_numpy(train_x[pool])], [torch.from_numpy(train_y[pool])]
    if len(split.test_positions):
        positions = torch.from_numpy(split.test_positions)
        images.append(test_x[positions])
        targets.append(test_y[positions])
    if split.missing_classes:
        logger.info(
            "lossless_estimate: classes %s have neither spare training images nor lossless test images; "
            "its balanced top-1 is over the other classes only (partial)", split.missing_classes,
        )  # fmt: skip
    return {"estimate": split, "estimate_images": torch.cat(images), "estimate_targets": torch.cat(targets)}


def _extra_eval_splits(folder: Path, fmt: CifarFormat, num_classes: int) -> dict:
    """Extra test files the folder holds (``../shared``'s copy has a lossless 1,000-image test subset)."""
    extra = {}
    for split, file in fmt.extra_test_files:
        if (folder / file).is_file():
            images, labels = _read_batches(folder, (file,), fmt.label_key)
            if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
                raise ConfigError(f"{folder / file}: labels outside 0..{num_classes - 1}")
            extra[split] = (torch.from_numpy(images), torch.from_numpy(labels))
    return extra


@register_dataset("cifar10", "cifar10-lt")
def build_cifar10(
    data_dir=None, imb_type="exp", imb_factor=0.01, rand_number=0, download=False, val_split="none", rotate=0.0
) -> LongTailData:
    """CIFAR-10-LT from ``cifar-10-batches-py``; see :func:`build_cifar`."""
    return build_cifar(CIFAR10_FORMAT, data_dir, imb_type, imb_factor, rand_number, download, val_split, rotate)


@register_dataset("cifar100", "cifar100-lt")
def build_cifar100(
    data_dir=None, imb_type="exp", imb_factor=0.01, rand_number=0, download=False, val_split="none", rotate=0.0
) -> LongTailData:
    """CIFAR-100-LT from ``cifar-100-python``; see :func:`build_cifar`."""
    return build_cifar(CIFAR100_FORMAT, data_dir, imb_type, imb_factor, rand_number, download, val_split, rotate)
