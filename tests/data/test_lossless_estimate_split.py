"""Which images the ``lossless_estimate`` split holds, and the dataset object that serves it only on request."""

import numpy as np
import pytest
import torch

from fbl.data import AugmentSpec
from fbl.data.lossless_estimate_split import (
    LOSSLESS_ESTIMATE,
    EstimateSplit,
    LongTailDataWithEstimate,
    lossless_estimate_split,
)

# A pool of 10 images of 3 classes; the run uses positions 0 and 6 (all of class 0), 1 (class 1), 3 (class 2).
POOL = [0, 1, 1, 2, 2, 2, 0, 1, 2, 1]
USED = np.array([0, 6, 1, 3])
LOSSLESS_TEST = [2, 0, 1, 0]  # class 0 at test positions 1 and 3


def test_unused_images_per_class_and_the_lossless_test_images_of_a_class_with_none():
    split = lossless_estimate_split(POOL, USED, 3, LOSSLESS_TEST)
    assert split.pool_positions.tolist() == [2, 4, 5, 7, 8, 9]  # class 1: 2, 7, 9; class 2: 4, 5, 8
    assert split.test_positions.tolist() == [1, 3]  # classes 1 and 2 have spare images: their test images unused
    assert split.sources == ("lossless_test", "unused_train", "unused_train")
    assert split.class_sizes == (2, 3, 3) and split.size == 8 and split.missing_classes == []
    assert split.pool_positions.dtype == np.int64 and split.test_positions.dtype == np.int64


def test_without_a_lossless_test_file_a_class_with_no_spare_image_is_missing():
    split = lossless_estimate_split(POOL, USED, 3)
    assert split.test_positions.tolist() == [] and split.pool_positions.tolist() == [2, 4, 5, 7, 8, 9]
    assert split.sources == ("missing", "unused_train", "unused_train")
    assert split.class_sizes == (0, 3, 3) and split.missing_classes == [0]
    # A lossless file without that class leaves it missing too.
    assert lossless_estimate_split(POOL, USED, 3, [1, 2]).missing_classes == [0]


def test_never_overlaps_the_used_positions_and_covers_the_rest():
    rng = np.random.RandomState(0)
    pool = rng.randint(0, 5, size=200)
    used = rng.choice(200, size=120, replace=False)
    split = lossless_estimate_split(pool, used, 5)
    assert not set(split.pool_positions.tolist()) & set(used.tolist())
    assert sorted(split.pool_positions.tolist() + used.tolist()) == list(range(200))
    assert list(split.class_sizes) == [int(((pool == c) & ~np.isin(np.arange(200), used)).sum()) for c in range(5)]


SPEC = AugmentSpec(mean=(0.5,), std=(0.25,))


def make(**overrides):
    pixels = torch.arange(4 * 4, dtype=torch.uint8).reshape(4, 1, 2, 2)
    fields = dict(
        name="toy",
        num_classes=3,
        class_names=["a", "b", "c"],
        train_images=pixels[[0, 0, 1]] + 100,
        train_targets=torch.tensor([0, 0, 1]),
        test_images=pixels[:3] + 200,
        test_targets=torch.tensor([0, 1, 2]),
        class_counts=[2, 1, 0],
        indices=np.arange(3),
        augment=SPEC,
        estimate=EstimateSplit(
            np.array([3, 4, 5]), np.array([0]), ("lossless_test", "unused_train", "unused_train"), (1, 1, 2)
        ),  # fmt: skip
        estimate_images=pixels,
        estimate_targets=torch.tensor([1, 2, 2, 0]),
    )
    fields.update(overrides)
    return LongTailDataWithEstimate(**fields)


def test_served_by_name_but_not_among_the_splits_evaluated_every_epoch():
    data = make()
    assert data.eval_splits == ("test",) and data.end_of_run_splits == (LOSSLESS_ESTIMATE,)
    assert data.split_size(LOSSLESS_ESTIMATE) == 4 and data.split_size("test") == 3
    images, targets = next(iter(data.eval_loader(LOSSLESS_ESTIMATE, device="cpu")))
    assert targets.tolist() == [1, 2, 2, 0]
    # Normalised, not augmented: (pixel / 255 - 0.5) / 0.25.
    assert torch.allclose(images[3, 0], (torch.tensor([[12.0, 13.0], [14.0, 15.0]]) / 255 - 0.5) / 0.25)


def test_without_an_estimate_the_dataset_behaves_as_before():
    data = make(estimate=None, estimate_images=None, estimate_targets=None)
    assert data.end_of_run_splits == ()
    with pytest.raises(ValueError, match="no 'lossless_estimate' split"):
        data.eval_loader(LOSSLESS_ESTIMATE, device="cpu")


def test_an_empty_estimate_is_not_offered():
    empty = EstimateSplit(np.zeros(0, np.int64), np.zeros(0, np.int64), ("missing",) * 3, (0, 0, 0))
    data = make(estimate=empty, estimate_images=torch.zeros(0, 1, 2, 2, dtype=torch.uint8),
                estimate_targets=torch.zeros(0, dtype=torch.int64))  # fmt: skip
    assert data.end_of_run_splits == ()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(estimate_images=torch.zeros(3, 1, 2, 2, dtype=torch.uint8)), "expected 4 uint8"),
        (dict(estimate_images=torch.zeros(4, 1, 2, 2)), "expected 4 uint8"),
        (dict(estimate_targets=torch.tensor([1, 2, 2])), "expected 4 int64"),
        (dict(estimate_targets=torch.tensor([1, 1, 2, 0])), "class sizes disagree"),
    ],
)
def test_inconsistent_estimate_is_a_builder_bug(overrides, message):
    with pytest.raises(ValueError, match=message):
        make(**overrides)
