"""Per-image predictions of one evaluation, and their file in a run folder: ``predictions/<split>.npz``.

Confidence intervals over the evaluation images and paired tests between two runs need to know, for
every image, its label and what the model predicted; per-class sums do not keep that. At CIFAR or
ImageNet-LT scale this is a few hundred kilobytes per split (three integer columns, compressed).

``index`` is each image's position in its split, in the order the evaluation loader serves the split
(0..N-1 in one process; reassembled from the ranks' shares when distributed), so two runs are paired
image by image only after :func:`check_same_images` has found the same positions with the same labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fbl.atomic_files import atomic_output
from fbl.errors import ConfigError
from fbl.manifest import Manifest

FOLDER = "predictions"
COLUMNS = ("index", "label", "prediction")


@dataclass(frozen=True)
class Predictions:
    """``index``, ``label`` and top-1 ``prediction`` of each evaluated image (int64 arrays of one length)."""

    index: np.ndarray
    label: np.ndarray
    prediction: np.ndarray
    num_classes: int

    def __post_init__(self):
        lengths = {len(getattr(self, name)) for name in COLUMNS}
        if len(lengths) != 1:
            raise ValueError(f"Expected index, label and prediction of one length but got lengths {sorted(lengths)}")

    @property
    def correct(self) -> np.ndarray:
        """Whether each image was classified right (bool)."""
        return self.label == self.prediction

    def __len__(self) -> int:
        return len(self.index)


def predictions_path(run_dir: str | Path, split: str) -> Path:
    return Path(run_dir) / FOLDER / f"{split}.npz"


def save_predictions(run_dir: str | Path, split: str, predictions: Predictions) -> Path:
    """Write ``predictions/<split>.npz`` in ``run_dir``, whole or not at all (through ``atomic_output``)."""
    path = predictions_path(run_dir, split)
    columns = {name: np.asarray(getattr(predictions, name), dtype=np.int64) for name in COLUMNS}
    with atomic_output(path, what="predictions file") as handle:
        np.savez_compressed(handle, num_classes=np.int64(predictions.num_classes), **columns)
    return path


def keep_in_run(run_dir: str | Path, split: str, predictions: Predictions) -> tuple[Path, bool]:
    """Add ``predictions/<split>.npz`` to a finished run folder (``fbl eval RUN --keep-predictions``).

    Returns ``(path, written)``: an identical file already there is left as it is (``written`` false); a
    different one is a one-line :class:`ConfigError` (it was made on another machine, thread count or
    precision, and the run's other results belong with it). The file is listed in the run's marker
    first, when the folder has one, so ``--overwrite`` removes it with the run's other files.
    """
    path = predictions_path(run_dir, split)
    kept = load_predictions(run_dir, split)
    if kept is not None:
        same = kept.num_classes == predictions.num_classes and all(
            np.array_equal(getattr(kept, name), getattr(predictions, name)) for name in COLUMNS
        )
        if not same:
            raise ConfigError(
                f"{path} already holds other predictions for {split!r} (another machine, thread count or "
                f"precision?); move it away to keep these"
            )
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
            return Predictions(**columns, num_classes=int(data["num_classes"]))
    except (OSError, KeyError, ValueError) as err:
        raise ConfigError(f"{path} is not a predictions file ({err.__class__.__name__})") from None


def check_same_images(a: Predictions, b: Predictions, what: str = "the two runs") -> None:
    """Raise a ConfigError unless ``a`` and ``b`` hold the same images (positions and labels) in the same order."""
    if len(a) != len(b) or not np.array_equal(a.index, b.index):
        raise ConfigError(f"{what} were not evaluated on the same images ({len(a)} vs {len(b)}); cannot pair them")
    if not np.array_equal(a.label, b.label):
        raise ConfigError(f"{what} give the same images different labels; cannot pair them")


def check_pairs(pairs) -> Predictions:
    """Raise a ConfigError unless there is a pair and every ``(A, B)`` in ``pairs`` holds the same images as
    the first pair's A (:func:`check_same_images`); returns that first A."""
    if not pairs:
        raise ConfigError("Expected at least one pair of runs to compare but got none")
    first = pairs[0][0]
    for a, b in pairs:
        check_same_images(first, a)
        check_same_images(first, b)
    return first
