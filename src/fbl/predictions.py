"""Per-image predictions of one evaluation, and their file in a run folder: ``predictions/<split>.npz``.

Confidence intervals over the evaluation images and paired tests between two runs need to know, for
every image, its label and what the model predicted; per-class sums do not keep that. At CIFAR or
ImageNet-LT scale this is a few hundred kilobytes per split (three or four integer columns, compressed).

``index`` is each image's position in its split, in the order the evaluation loader serves the split
(0..N-1 in one process; reassembled from the ranks' shares when distributed). ``image``, where the
dataset gives it (:meth:`fbl.data.contract.LongTailDataset.image_ids`), says which picture each one
is, the same number for the same picture in every run of the dataset: two runs whose splits differ
(a validation split takes images out of the lossless estimate) are then paired on the images both
hold (:func:`paired_images`). Files written before that column existed pair by position only, and
only when both runs hold the same positions with the same labels.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fbl.atomic_files import atomic_output
from fbl.errors import ConfigError
from fbl.manifest import Manifest

FOLDER = "predictions"
COLUMNS = ("index", "label", "prediction")
#: The optional column: which picture each image is (see the module docstring).
IMAGE = "image"


@dataclass(frozen=True)
class Predictions:
    """``index``, ``label`` and top-1 ``prediction`` of each evaluated image (int64 arrays of one length),
    and ``image``, each one's identity across runs, or ``None`` where only its position is known."""

    index: np.ndarray
    label: np.ndarray
    prediction: np.ndarray
    num_classes: int
    image: np.ndarray | None = None

    def __post_init__(self):
        lengths = {len(getattr(self, name)) for name in (*COLUMNS, IMAGE) if getattr(self, name) is not None}
        if len(lengths) != 1:
            raise ValueError(
                f"Expected index, label, prediction (and image) of one length but got lengths {sorted(lengths)}"
            )

    @property
    def correct(self) -> np.ndarray:
        """Whether each image was classified right (bool)."""
        return self.label == self.prediction

    def __len__(self) -> int:
        return len(self.index)

    def rows(self, rows: np.ndarray) -> Predictions:
        """The predictions of the images at ``rows`` (positions in these arrays), in that order."""
        image = None if self.image is None else self.image[rows]
        return Predictions(self.index[rows], self.label[rows], self.prediction[rows], self.num_classes, image)


def predictions_path(run_dir: str | Path, split: str) -> Path:
    return Path(run_dir) / FOLDER / f"{split}.npz"


def save_predictions(run_dir: str | Path, split: str, predictions: Predictions) -> Path:
    """Write ``predictions/<split>.npz`` in ``run_dir``, whole or not at all (through ``atomic_output``)."""
    path = predictions_path(run_dir, split)
    named = COLUMNS if predictions.image is None else (*COLUMNS, IMAGE)
    columns = {name: np.asarray(getattr(predictions, name), dtype=np.int64) for name in named}
    with atomic_output(path, what="predictions file") as handle:
        np.savez_compressed(handle, num_classes=np.int64(predictions.num_classes), **columns)
    return path


def keep_in_run(run_dir: str | Path, split: str, predictions: Predictions) -> tuple[Path, bool]:
    """Add ``predictions/<split>.npz`` to a finished run folder (``fbl eval RUN --keep-predictions``).

    Returns ``(path, written)``: an identical file already there is left as it is (``written`` false), and
    one that lacks only the ``image`` column is completed with it; a different one is a one-line
    :class:`ConfigError` (it was made on another machine, thread count or precision, and the run's other
    results belong with it). The file is listed in the run's marker first, when the folder has one, so
    ``--overwrite`` removes it with the run's other files.
    """
    path = predictions_path(run_dir, split)
    kept = load_predictions(run_dir, split)
    if kept is not None:
        same = kept.num_classes == predictions.num_classes and all(
            np.array_equal(getattr(kept, name), getattr(predictions, name)) for name in COLUMNS
        )
        same_images = kept.image is None or predictions.image is None or np.array_equal(kept.image, predictions.image)
        if not (same and same_images):
            raise ConfigError(
                f"{path} already holds other predictions for {split!r} (another machine, thread count or "
                f"precision?); move it away to keep these"
            )
        if kept.image is not None or predictions.image is None:
            return path, False
    Manifest(run_dir).record_if_marked(f"{FOLDER}/{split}.npz")
    return save_predictions(run_dir, split, predictions), True


def load_predictions(run_dir: str | Path, split: str) -> Predictions | None:
    """The predictions a run folder holds for ``split``; ``None`` when it has none (an older run)."""
    path = predictions_path(run_dir, split)
    if not path.is_file():
        return None
    try:
        with np.load(path) as data:
            columns = {name: data[name].astype(np.int64) for name in COLUMNS}
            image = data[IMAGE].astype(np.int64) if IMAGE in data.files else None
            return Predictions(**columns, num_classes=int(data["num_classes"]), image=image)
    except (OSError, KeyError, ValueError) as err:
        raise ConfigError(f"{path} is not a predictions file ({err.__class__.__name__})") from None


def check_same_images(a: Predictions, b: Predictions, what: str = "the two runs") -> None:
    """Raise a ConfigError unless ``a`` and ``b`` hold the same images (positions and labels) in the same order."""
    if len(a) != len(b) or not np.array_equal(a.index, b.index):
        raise ConfigError(f"{what} were not evaluated on the same images ({len(a)} vs {len(b)}); cannot pair them")
    if not np.array_equal(a.label, b.label):
        raise ConfigError(f"{what} give the same images different labels; cannot pair them")


def paired_images(pairs) -> list[tuple[Predictions, Predictions]]:
    """Every ``(A, B)`` in ``pairs`` on the images all of them hold, aligned image by image.

    With ``image`` identities in every one, they are cut to the pictures common to all (in the order of
    their identities); otherwise every one must hold the first A's positions with its labels
    (:func:`check_same_images`) and they are returned as they are. A ConfigError, one line, when there
    is no pair, no image in common, or a common image with two labels.
    """
    pairs = list(pairs)
    if not pairs:
        raise ConfigError("Expected at least one pair of runs to compare but got none")
    every = [p for pair in pairs for p in pair]
    if any(p.image is None for p in every):
        try:
            for p in every:
                check_same_images(every[0], p)
        except ConfigError as err:
            if all(p.image is None for p in every):
                raise
            raise ConfigError(
                f"{err}; some of them were kept before predictions named their pictures "
                f"(fbl eval RUN --split SPLIT --keep-predictions adds the names)"
            ) from None
        return pairs
    if any(len(np.unique(p.image)) != len(p) for p in every):
        raise ConfigError("a run's predictions name one image twice; cannot pair them")
    common = functools.reduce(np.intersect1d, (p.image for p in every))
    if not len(common):
        raise ConfigError(f"the runs hold no image in common ({', '.join(str(len(p)) for p in every)} images)")
    aligned = [p.rows(np.argsort(p.image)[np.isin(np.sort(p.image), common)]) for p in every]
    if any(not np.array_equal(p.label, aligned[0].label) for p in aligned):
        raise ConfigError("the runs give the same images different labels; cannot pair them")
    return list(zip(aligned[0::2], aligned[1::2], strict=True))
