"""The per-image predictions file of a run folder: written whole, read back, and pairable only when the images agree."""

import numpy as np
import pytest

from fbl.errors import ConfigError
from fbl.predictions import Predictions, check_same_images, load_predictions, predictions_path, save_predictions


def test_round_trip_and_correct_column(tmp_path):
    p = Predictions(np.array([0, 1, 2, 3]), np.array([1, 0, 2, 2]), np.array([1, 1, 2, 0]), num_classes=3)
    path = save_predictions(tmp_path, "test", p)
    assert path == tmp_path / "predictions" / "test.npz"
    back = load_predictions(tmp_path, "test")
    assert back.index.tolist() == [0, 1, 2, 3] and back.label.tolist() == [1, 0, 2, 2]
    assert back.prediction.tolist() == [1, 1, 2, 0] and back.num_classes == 3
    assert back.correct.tolist() == [True, False, True, False]
    assert [f.name for f in path.parent.iterdir()] == ["test.npz"]  # no temporary file left


def test_missing_file_is_none_and_a_broken_one_a_config_error(tmp_path):
    assert load_predictions(tmp_path, "test") is None
    predictions_path(tmp_path, "val").parent.mkdir()
    predictions_path(tmp_path, "val").write_bytes(b"not an npz")
    with pytest.raises(ConfigError, match="not a predictions file"):
        load_predictions(tmp_path, "val")


def test_columns_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match="one length"):
        Predictions(np.arange(3), np.arange(2), np.arange(3), 3)


def test_check_same_images():
    a = Predictions(np.arange(3), np.array([0, 1, 1]), np.array([0, 0, 0]), 2)
    check_same_images(a, Predictions(np.arange(3), np.array([0, 1, 1]), np.array([1, 1, 1]), 2))
    with pytest.raises(ConfigError, match="same images"):
        check_same_images(a, Predictions(np.arange(2), np.array([0, 1]), np.array([0, 0]), 2))
