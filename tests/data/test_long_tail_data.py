import numpy as np
import pytest
import torch

from fbl.data import AugmentSpec, LongTailData

SPEC = AugmentSpec(mean=(0.5,), std=(0.25,))


def make(**overrides):
    fields = dict(
        name="toy",
        num_classes=3,
        class_names=["a", "b", "c"],
        train_images=torch.zeros(6, 1, 2, 2, dtype=torch.uint8),
        train_targets=torch.tensor([0, 0, 0, 1, 1, 2]),
        test_images=torch.zeros(3, 1, 2, 2, dtype=torch.uint8),
        test_targets=torch.tensor([0, 1, 2]),
        class_counts=[3, 2, 1],
        indices=np.arange(6),
        augment=SPEC,
    )
    fields.update(overrides)
    return LongTailData(**fields)


def test_blank_images_are_counted_and_named_in_one_warning(caplog):
    # Two of six training images are one flat value (zeros, 255s); a varied image is not blank.
    images = torch.arange(24, dtype=torch.uint8).reshape(6, 1, 2, 2)
    images[1] = 0
    images[4] = 255
    test = torch.tensor([[[[1, 2], [3, 4]]], [[[5, 5], [5, 6]]], [[[9, 8], [7, 6]]]], dtype=torch.uint8)
    with caplog.at_level("WARNING", logger="fbl.data.dataset"):
        make(train_images=images, test_images=test)
    assert [r.getMessage() for r in caplog.records] == [
        "toy: 2 of 6 train images are blank (every pixel the same value); is the data complete?"
    ]


def test_properties():
    data = make()
    assert data.targets == [0, 0, 0, 1, 1, 2] and isinstance(data.targets[0], int)
    assert data.groups == {"many": [], "medium": [], "few": [0, 1, 2]}
    assert data.imbalance_ratio == 3.0
    assert "train_images" not in repr(data)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"class_counts": [2, 2, 2]}, "disagree"),
        ({"indices": np.arange(5)}, "indices"),
        ({"train_images": torch.zeros(6, 1, 2, 2)}, "uint8"),
        ({"test_targets": torch.tensor([0, 1])}, "test targets"),
        ({"train_images": torch.zeros(6, 3, 2, 2, dtype=torch.uint8)}, "channels"),
        ({"class_names": ["a"]}, "class names"),
    ],
)
def test_inconsistent_fields_are_rejected(overrides, message):
    with pytest.raises(ValueError, match=message):
        make(**overrides)
