"""digits-lt: real 8×8 digits, a balanced held-out test split and an exp long-tailed train split."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from fbl.data import build_dataset
from fbl.data.digits import DIGITS_MEAN, DIGITS_STD


@pytest.fixture(scope="module")
def raw():
    digits = load_digits()
    # round(v * 255 / 16) of every pixel, with Python's round.
    images = np.array([[round(v * 255 / 16) for v in img.reshape(-1)] for img in digits.images], dtype=np.uint8)
    return images.reshape(-1, 1, 8, 8), digits.target.astype(np.int64)


def longhand_split(targets):
    """40 test images per class picked by RandomState(2022) permutations; the rest is the train pool."""
    rng = np.random.RandomState(2022)
    test = []
    for c in range(10):
        idx = np.where(targets == c)[0]
        test.extend(idx[rng.permutation(len(idx))[:40]].tolist())
    test = sorted(test)
    pool = [i for i in range(len(targets)) if i not in set(test)]
    return np.array(pool), np.array(test)


def reference_indices(targets, counts, seed):
    np.random.seed(seed)
    kept = []
    for c, n in enumerate(counts):
        idx = np.where(targets == c)[0]
        np.random.shuffle(idx)
        kept.append(idx[:n])
    return np.concatenate(kept)


def test_default_build(raw):
    images, targets = raw
    data = build_dataset("digits-lt")
    expected_counts = [int(130 * 0.01 ** (c / 9)) for c in range(10)]
    assert data.class_counts == expected_counts == [130, 77, 46, 28, 16, 10, 6, 3, 2, 1]
    assert all(data.groups[g] for g in ("many", "medium", "few"))
    assert data.num_classes == 10 and data.class_names == [str(d) for d in range(10)]

    pool, test = longhand_split(targets)
    indices = pool[reference_indices(targets[pool], expected_counts, 0)]
    np.testing.assert_array_equal(data.indices, indices)
    assert data.train_images.shape == (319, 1, 8, 8) and data.train_images.dtype == torch.uint8
    np.testing.assert_array_equal(data.train_images.numpy(), images[indices])
    np.testing.assert_array_equal(data.train_targets.numpy(), targets[indices])

    assert data.test_images.shape == (400, 1, 8, 8)
    np.testing.assert_array_equal(data.test_images.numpy(), images[test])
    assert torch.bincount(data.test_targets).tolist() == [40] * 10
    assert not set(data.indices.tolist()) & set(test.tolist())
    assert int(data.train_images.max()) == 255 and int(data.train_images.min()) == 0


def test_deterministic_and_test_split_independent_of_seed():
    a, b = build_dataset("digits-lt"), build_dataset("digits-lt")
    assert torch.equal(a.train_images, b.train_images) and np.array_equal(a.indices, b.indices)
    c = build_dataset("digits-lt", rand_number=5)
    assert not np.array_equal(a.indices, c.indices)
    assert torch.equal(a.test_images, c.test_images) and torch.equal(a.test_targets, c.test_targets)


@pytest.mark.parametrize("imb_factor", [0.1, 1.0])
def test_imb_factor_override(imb_factor):
    data = build_dataset("digits-lt", imb_factor=imb_factor)
    assert data.class_counts == [int(130 * imb_factor ** (c / 9)) for c in range(10)]


def test_normalisation_constants_match_the_data(raw):
    images, _ = raw
    x = images.astype(np.float64) / 255.0
    assert DIGITS_MEAN[0] == pytest.approx(x.mean(), abs=1e-6)
    assert DIGITS_STD[0] == pytest.approx(x.std(), abs=1e-6)
    spec = build_dataset("digits-lt").augment
    assert spec.crop_padding == 1 and spec.hflip is False and spec.num_channels == 1
