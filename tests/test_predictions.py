"""The per-image predictions file of a run folder: written whole, read back, and pairable only when the images agree."""

import numpy as np
import pytest

from fbl.errors import ConfigError
from fbl.predictions import (
    Predictions,
    check_same_images,
    keep_in_run,
    load_predictions,
    paired_images,
    predictions_path,
    save_predictions,
)


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


def test_image_ids_round_trip_and_older_files_have_none(tmp_path):
    p = Predictions(np.arange(3), np.array([0, 1, 1]), np.array([0, 1, 0]), 2, image=np.array([7, -1, 4]))
    save_predictions(tmp_path, "lossless_estimate", p)
    assert load_predictions(tmp_path, "lossless_estimate").image.tolist() == [7, -1, 4]
    save_predictions(tmp_path, "test", Predictions(np.arange(2), np.array([0, 1]), np.array([1, 1]), 2))
    assert load_predictions(tmp_path, "test").image is None
    with pytest.raises(ValueError, match="one length"):
        Predictions(np.arange(3), np.arange(3), np.arange(3), 3, image=np.arange(2))


def test_paired_images_meets_on_the_common_pictures_in_the_order_of_their_ids():
    a = Predictions(np.arange(4), np.array([0, 1, 0, 1]), np.array([0, 0, 0, 1]), 2, image=np.array([5, 3, 9, 1]))
    b = Predictions(np.arange(3), np.array([0, 1, 1]), np.array([1, 1, 0]), 2, image=np.array([9, 1, 7]))
    [(a2, b2)] = paired_images([(a, b)])
    assert a2.image.tolist() == b2.image.tolist() == [1, 9]
    assert a2.label.tolist() == b2.label.tolist() == [1, 0]
    assert a2.prediction.tolist() == [1, 0] and b2.prediction.tolist() == [1, 1]
    assert a2.index.tolist() == [3, 2] and b2.index.tolist() == [1, 0]  # each run's own positions


@pytest.mark.parametrize(
    "b, message",
    [
        (
            Predictions(np.arange(2), np.array([0, 1]), np.array([0, 1]), 2, image=np.array([8, 6])),
            "no image in common",
        ),
        (Predictions(np.arange(2), np.array([1, 1]), np.array([0, 1]), 2, image=np.array([1, 2])), "different labels"),
        (Predictions(np.arange(2), np.array([0, 0]), np.array([0, 1]), 2, image=np.array([1, 1])), "one image twice"),
        # without ids on one side only positions can pair them: the same positions or nothing
        (Predictions(np.arange(2), np.array([0, 1]), np.array([0, 1]), 2), "same images.*--keep-predictions adds"),
    ],
)
def test_paired_images_refusals(b, message):
    a = Predictions(np.arange(3), np.array([0, 1, 1]), np.array([0, 0, 0]), 2, image=np.array([1, 2, 3]))
    with pytest.raises(ConfigError, match=message):
        paired_images([(a, b)])


def test_positional_predictions_pair_as_they_are():
    a = Predictions(np.arange(3), np.array([0, 1, 1]), np.array([0, 0, 0]), 2)
    b = Predictions(np.arange(3), np.array([0, 1, 1]), np.array([1, 1, 1]), 2)
    assert paired_images([(a, b)]) == [(a, b)]
    with pytest.raises(ConfigError, match="at least one pair"):
        paired_images([])


def test_keep_in_run_completes_an_older_file_with_image_ids_and_refuses_other_ones(tmp_path):
    columns = (np.arange(3), np.array([0, 1, 1]), np.array([0, 0, 1]))
    save_predictions(tmp_path, "lossless_estimate", Predictions(*columns, 2))  # written before the ids
    with_ids = Predictions(*columns, 2, image=np.array([4, 8, -1]))
    assert keep_in_run(tmp_path, "lossless_estimate", with_ids)[1] is True
    assert load_predictions(tmp_path, "lossless_estimate").image.tolist() == [4, 8, -1]
    assert keep_in_run(tmp_path, "lossless_estimate", with_ids)[1] is False  # identical: left as it is
    assert keep_in_run(tmp_path, "lossless_estimate", Predictions(*columns, 2))[1] is False  # no ids to add
    for other in (
        Predictions(*columns, 2, image=np.array([4, 8, -2])),
        Predictions(columns[0], columns[1], columns[1], 2),
    ):
        with pytest.raises(ConfigError, match="already holds other predictions"):
            keep_in_run(tmp_path, "lossless_estimate", other)
