"""CIFAR-LT builders on the real CIFAR-10 (shared folder) and on small synthetic CIFAR-100 folders."""

import os
import pickle

import numpy as np
import pytest
import torch
import torchvision

from fbl.data import build_dataset, long_tail_counts
from fbl.data.cifar import CIFAR10_FORMAT, read_cifar
from fbl.data.lossless_estimate_split import LOSSLESS_ESTIMATE
from fbl.errors import ConfigError

from ._reference import reference_indices

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def exp_counts(n_max, num_classes, imb_factor):
    return [int(n_max * imb_factor ** (c / (num_classes - 1))) for c in range(num_classes)]


# ---------------------------------------------------------------- real CIFAR-10


@pytest.fixture(scope="module")
def raw10(cifar10_root):
    """The real pickles read longhand: train rows N×3072 and labels, test rows and labels."""
    folder = cifar10_root / "cifar-10-batches-py"
    rows, labels = [], []
    for i in range(1, 6):
        with open(folder / f"data_batch_{i}", "rb") as f:
            batch = pickle.load(f, encoding="latin1")
        rows.append(batch["data"])
        labels.extend(batch["labels"])
    with open(folder / "test_batch", "rb") as f:
        test = pickle.load(f, encoding="latin1")
    return np.concatenate(rows), np.array(labels), test["data"], np.array(test["labels"])


def test_real_full_train_is_balanced_and_image_0_is_known(cifar10_root, raw10):
    x, y, _, _ = raw10
    assert np.bincount(y).tolist() == [5000] * 10
    images, labels = read_cifar(cifar10_root / "cifar-10-batches-py", CIFAR10_FORMAT, train=True)
    assert images.shape == (50000, 3, 32, 32) and np.array_equal(labels, y)
    assert images[0, 0, 0, :5].tolist() == [59, 43, 50, 68, 98]  # red channel, first row

    data = build_dataset("cifar10", cifar10_root, imb_factor=1.0)
    assert data.class_counts == [5000] * 10 and len(data.train_targets) == 50000
    assert sorted(data.indices.tolist()) == list(range(50000))
    first = int(np.where(data.indices == 0)[0][0])
    assert data.train_images[first, 0, 0, :5].tolist() == [59, 43, 50, 68, 98]


@pytest.mark.parametrize(
    "imb_factor, expected",
    [
        (0.01, [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]),
        (0.02, [5000, 3237, 2096, 1357, 878, 568, 368, 238, 154, 100]),
        (0.1, [5000, 3871, 2997, 2320, 1796, 1391, 1077, 834, 645, 500]),
    ],
)
def test_real_cifar10_lt(cifar10_root, raw10, imb_factor, expected):
    x, y, test_x, test_y = raw10
    data = build_dataset("cifar10-LT", cifar10_root, imb_factor=imb_factor)
    assert data.name == "cifar10" and data.num_classes == 10 and data.class_names == CIFAR10_CLASSES
    assert data.class_counts == expected == exp_counts(5000, 10, imb_factor)

    expected_idx = reference_indices(y, expected, 0)
    np.testing.assert_array_equal(data.indices, expected_idx)
    assert torch.equal(data.train_targets, torch.from_numpy(y[expected_idx]))
    assert torch.bincount(data.train_targets).tolist() == expected
    assert data.train_images.dtype == torch.uint8 and data.train_images.shape == (sum(expected), 3, 32, 32)
    np.testing.assert_array_equal(data.train_images.reshape(-1, 3072).numpy(), x[expected_idx])

    # The full, balanced test split, untouched.
    assert data.test_images.shape == (10000, 3, 32, 32)
    np.testing.assert_array_equal(data.test_images.reshape(-1, 3072).numpy(), test_x)
    assert torch.equal(data.test_targets, torch.from_numpy(test_y))
    assert torch.bincount(data.test_targets).tolist() == [1000] * 10


def test_real_cifar10_batches_folder_and_seed(cifar10_root, raw10):
    _, y, _, _ = raw10
    counts = long_tail_counts(5000, 10, "exp", 0.01)
    data = build_dataset("CIFAR10", cifar10_root / "cifar-10-batches-py", imb_factor=0.01, rand_number=3)
    np.testing.assert_array_equal(data.indices, reference_indices(y, counts, 3))
    assert data.augment.crop_padding == 4 and data.augment.hflip
    assert data.augment.mean == (0.4914, 0.4822, 0.4465) and data.augment.std == (0.2023, 0.1994, 0.2010)
    assert data.augment.rotation == 0.0  # the FBL paper's pipeline: crop and flip only
    assert data.groups == {"many": list(range(8)), "medium": [8, 9], "few": []}
    rotated = build_dataset("cifar10", cifar10_root, rand_number=3, rotate=15)
    assert rotated.augment.rotation == 15.0 and rotated.augment.crop_padding == 4 and rotated.augment.hflip


def test_real_cifar10_step_profile(cifar10_root, raw10):
    _, y, _, _ = raw10
    data = build_dataset("cifar10", cifar10_root, imb_type="step", imb_factor=0.01)
    assert data.class_counts == [5000] * 5 + [50] * 5
    np.testing.assert_array_equal(data.indices, reference_indices(y, data.class_counts, 0))


# ---------------------------------------------------------------- synthetic CIFAR-100 / CIFAR-10 folders


def write_cifar100(root, per_class=30, test_per_class=4, bytes_keys=False, filenames=True, seed=0):
    """A cifar-100-python folder in the official layout, with random pixels and shuffled labels."""
    rng = np.random.RandomState(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    key = (lambda k: k.encode()) if bytes_keys else (lambda k: k)
    splits = {}
    for split, n in (("train", per_class), ("test", test_per_class)):
        fine = rng.permutation(np.repeat(np.arange(100), n))
        data = rng.randint(0, 256, size=(len(fine), 3072), dtype=np.uint8)
        batch = {key("data"): data, key("fine_labels"): fine.tolist(), key("coarse_labels"): (fine // 5).tolist()}
        if filenames:
            batch[key("filenames")] = [f"img_{i}.png" for i in range(len(fine))]
        with open(folder / split, "wb") as f:
            pickle.dump(batch, f)
        splits[split] = (data, fine)
    names = [f"class_{c:02d}" for c in range(100)]
    meta = {
        key("fine_label_names"): [n.encode() for n in names] if bytes_keys else names,
        key("coarse_label_names"): [f"super_{c}" for c in range(20)],
    }
    with open(folder / "meta", "wb") as f:
        pickle.dump(meta, f)
    return splits, names


@pytest.mark.parametrize("imb_factor", [0.1, 0.5])
def test_synthetic_cifar100_lt(tmp_path, imb_factor):
    splits, names = write_cifar100(tmp_path)
    (train_x, train_y), (test_x, test_y) = splits["train"], splits["test"]
    data = build_dataset("cifar100", tmp_path, imb_factor=imb_factor, rand_number=1)
    counts = exp_counts(30, 100, imb_factor)  # n_max = 30, the class size found in the data
    assert data.num_classes == 100 and data.class_names == names and data.class_counts == counts
    idx = reference_indices(train_y, counts, 1)
    np.testing.assert_array_equal(data.indices, idx)
    np.testing.assert_array_equal(data.train_images.reshape(-1, 3072).numpy(), train_x[idx])
    assert data.train_targets.tolist() == train_y[idx].tolist() == data.targets
    np.testing.assert_array_equal(data.test_images.reshape(-1, 3072).numpy(), test_x)
    assert data.test_targets.tolist() == test_y.tolist()


def test_repacked_pickles_without_filenames_and_with_bytes_keys(tmp_path):
    write_cifar100(tmp_path / "plain")
    write_cifar100(tmp_path / "repacked", bytes_keys=True, filenames=False)
    plain = build_dataset("cifar100-lt", tmp_path / "plain", imb_factor=0.2)
    repacked = build_dataset("cifar100-lt", tmp_path / "repacked" / "cifar-100-python", imb_factor=0.2)
    assert repacked.class_names == plain.class_names
    assert torch.equal(repacked.train_images, plain.train_images) and torch.equal(
        repacked.test_targets, plain.test_targets
    )


def test_missing_folder_names_it(tmp_path):
    with pytest.raises(ConfigError) as err:
        build_dataset("cifar10", tmp_path)
    message = str(err.value)
    assert str(tmp_path / "cifar-10-batches-py") in message and "--download" in message and "\n" not in message
    with pytest.raises(ConfigError, match="cifar-100-python"):
        build_dataset("cifar100", tmp_path / "cifar-100-python")


def test_incomplete_folder(tmp_path):
    write_cifar100(tmp_path)
    (tmp_path / "cifar-100-python" / "test").unlink()
    with pytest.raises(ConfigError, match="incomplete: missing test"):
        build_dataset("cifar100", tmp_path)


def test_malformed_pickle(tmp_path):
    write_cifar100(tmp_path)
    with open(tmp_path / "cifar-100-python" / "train", "wb") as f:
        pickle.dump({"data": np.zeros((1, 3072), dtype=np.uint8)}, f)
    with pytest.raises(ConfigError, match="no 'fine_labels' key"):
        build_dataset("cifar100", tmp_path)


def test_profile_too_steep_for_the_data(tmp_path):
    write_cifar100(tmp_path)
    with pytest.raises(ConfigError, match="0 training images"):
        build_dataset("cifar100", tmp_path, imb_factor=0.01)  # 30 * 0.01 < 1


def test_download_goes_through_torchvision(tmp_path, monkeypatch):
    calls = []

    class FakeCIFAR100:
        def __init__(self, root, train=True, download=False):
            calls.append((root, download))
            write_cifar100(tmp_path)

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", FakeCIFAR100)
    data = build_dataset("cifar100", tmp_path, imb_factor=0.1, download=True)
    assert calls == [(str(tmp_path), True)] and data.class_counts == exp_counts(30, 100, 0.1)
    build_dataset("cifar100", tmp_path, imb_factor=0.1, download=True)  # present now: no second download
    assert len(calls) == 1


def test_download_failure_is_one_line(tmp_path, monkeypatch):
    class Offline:
        def __init__(self, root, train=True, download=False):
            raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", Offline)
    with pytest.raises(ConfigError, match="Could not download CIFAR-10 .*network is unreachable"):
        build_dataset("cifar10", tmp_path, download=True)


# ---------------------------------------------------------------- what a batch file may hold


def rewrite_train(root, **changes):
    """Rewrite the synthetic CIFAR-100 train file with some entries replaced."""
    path = root / "cifar-100-python" / "train"
    with open(path, "rb") as f:
        batch = pickle.load(f)
    batch.update(changes)
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=2)
    return path


class RunsCommand:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_batch_that_would_run_code_is_refused(tmp_path):
    write_cifar100(tmp_path)
    marker = tmp_path / "marker"
    path = rewrite_train(tmp_path, filenames=RunsCommand(f"touch {marker}"))
    with pytest.raises(ConfigError) as err:
        build_dataset("cifar100", tmp_path)
    assert str(err.value) == f"{path} is not a CIFAR python batch fbl can load safely: it references posix.system"
    assert not marker.exists()


def test_truncated_batch_names_the_file(tmp_path):
    write_cifar100(tmp_path)
    path = tmp_path / "cifar-100-python" / "test"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ConfigError, match=f"^{path} is not a CIFAR python batch .*truncated"):
        build_dataset("cifar100", tmp_path)


@pytest.mark.parametrize(
    "data, expected",
    [
        (np.zeros((3000, 3072), dtype=np.float32), "'data' has dtype float32, expected uint8"),
        (np.full((3000, 3072), 256, dtype=np.int16), "'data' holds values 256..256, expected uint8"),
        (np.full((3000, 3072), -1, dtype=np.int64), "'data' holds values -1..-1"),
        ("not pixels", "'data' has dtype <U10"),
    ],
)
def test_pixels_must_be_uint8_values(tmp_path, data, expected):
    write_cifar100(tmp_path)
    path = rewrite_train(tmp_path, data=data)
    with pytest.raises(ConfigError, match=f"^{path}: {expected}"):
        build_dataset("cifar100", tmp_path)


def test_integer_pixels_in_range_are_read_as_uint8(tmp_path):
    splits, _ = write_cifar100(tmp_path)
    rewrite_train(tmp_path, data=splits["train"][0].astype(np.int64))
    data = build_dataset("cifar100", tmp_path, imb_factor=1.0)
    assert data.train_images.dtype == torch.uint8
    np.testing.assert_array_equal(data.train_images.reshape(-1, 3072).numpy(), splits["train"][0][data.indices])


@pytest.mark.parametrize("labels", [[0.5] * 3000, np.zeros((3000, 1), dtype=np.int64), ["a"] * 3000, [True] * 3000])
def test_labels_must_be_a_flat_list_of_integers(tmp_path, labels):
    write_cifar100(tmp_path)
    path = rewrite_train(tmp_path, fine_labels=labels)
    with pytest.raises(ConfigError, match=f"^{path}: 'fine_labels' must be a flat list of integer labels"):
        build_dataset("cifar100", tmp_path)


def test_class_without_training_images_is_named(tmp_path):
    splits, _ = write_cifar100(tmp_path)
    fine = splits["train"][1].copy()
    fine[fine == 7] = 8
    rewrite_train(tmp_path, fine_labels=fine.tolist())
    with pytest.raises(ConfigError) as err:
        build_dataset("cifar100", tmp_path, imb_factor=1.0)
    folder = tmp_path / "cifar-100-python"
    assert str(err.value) == f"{folder}: class 7 ('class_07') has no training images in train"


def test_shared_lossless_test_subset_is_an_extra_evaluation_split(cifar10_root):
    data = build_dataset("cifar10", cifar10_root, val_split="none")
    assert data.eval_splits == ("test", "test_lossless")
    images, labels = data.extra_eval["test_lossless"]
    assert images.shape == (1000, 3, 32, 32) and images.dtype == torch.uint8
    # Class counts of the first 1,000 original test images, as ../shared's README states them.
    assert torch.bincount(labels).tolist() == [103, 89, 100, 103, 90, 86, 112, 102, 106, 109]


# ---------------------------------------------------------------- the lossless_estimate split


def read_batch(path):
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="latin1")
    return batch["data"], np.array(batch["labels"])


def used_positions(data):
    return data.indices.tolist() + ([] if data.val_indices is None else data.val_indices.tolist())


@pytest.mark.parametrize("val_split, val_per_class", [("none", 0), ("auto", 50)])
def test_real_lossless_estimate_is_the_unused_train_images_and_class_0s_lossless_test_images(
    cifar10_root, raw10, val_split, val_per_class
):
    x, y, _, _ = raw10
    lossless_x, lossless_y = read_batch(cifar10_root / "cifar-10-batches-py" / "test_batch_lossless_1000")
    data = build_dataset("cifar10", cifar10_root, val_split=val_split)
    counts = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    # Class 0 keeps all 5,000 of its training images (its validation images are taken from those), so
    # it is estimated on its 103 lossless test images; every other class on 5,000 - n_c - val images.
    expected = [103] + [5000 - n - val_per_class for n in counts[1:]]
    assert list(data.estimate.class_sizes) == expected
    assert data.estimate.sources == ("lossless_test",) + ("unused_train",) * 9
    assert data.split_size(LOSSLESS_ESTIMATE) == sum(expected) == {0: 37697, 50: 37247}[val_per_class]
    assert LOSSLESS_ESTIMATE not in data.eval_splits and data.end_of_run_splits == (LOSSLESS_ESTIMATE,)

    pool = data.estimate.pool_positions.tolist()
    assert not set(pool) & set(data.indices.tolist())
    assert data.val_indices is None or not set(pool) & set(data.val_indices.tolist())
    assert sorted(pool + used_positions(data)) == list(range(50000))  # train, val and estimate split the pool

    images = data.estimate_images.reshape(-1, 3072).numpy()
    np.testing.assert_array_equal(images[: len(pool)], x[pool])
    np.testing.assert_array_equal(images[len(pool) :], lossless_x[lossless_y == 0])
    assert data.estimate_targets.tolist() == y[pool].tolist() + [0] * 103


def test_real_lossless_estimate_follows_from_the_seed_and_the_validation_split(cifar10_root):
    first = build_dataset("cifar10", cifar10_root, rand_number=1, val_split="auto")
    again = build_dataset("cifar10", cifar10_root, rand_number=1, val_split="auto")
    np.testing.assert_array_equal(first.estimate.pool_positions, again.estimate.pool_positions)
    assert torch.equal(first.estimate_images, again.estimate_images)
    other_seed = build_dataset("cifar10", cifar10_root, rand_number=2, val_split="auto")
    assert not np.array_equal(first.estimate.pool_positions, other_seed.estimate.pool_positions)
    # Without a validation split the estimate gains exactly the validation images of classes 1-9
    # (class 0's were taken from its training images).
    no_val = build_dataset("cifar10", cifar10_root, rand_number=1, val_split="none")
    gained = set(no_val.estimate.pool_positions.tolist()) - set(first.estimate.pool_positions.tolist())
    val = first.val_indices
    assert gained == set(val[first.val_targets.numpy() != 0].tolist()) and len(gained) == 450


def write_cifar10(root, per_class=20, test_per_class=10, lossless=30, seed=0):
    """A cifar-10-batches-py folder in the official layout (random pixels), with ``../shared``'s extra
    ``test_batch_lossless_1000`` holding the first ``lossless`` test images when ``lossless`` is set."""
    rng = np.random.RandomState(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    labels = rng.permutation(np.repeat(np.arange(10), per_class))
    data = rng.randint(0, 256, size=(len(labels), 3072), dtype=np.uint8)
    for i, part in enumerate(np.array_split(np.arange(len(labels)), 5)):
        with open(folder / f"data_batch_{i + 1}", "wb") as f:
            pickle.dump({"data": data[part], "labels": labels[part].tolist()}, f)
    test_labels = rng.permutation(np.repeat(np.arange(10), test_per_class))
    test_data = rng.randint(0, 256, size=(len(test_labels), 3072), dtype=np.uint8)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": test_data, "labels": test_labels.tolist()}, f)
    if lossless:
        with open(folder / "test_batch_lossless_1000", "wb") as f:
            pickle.dump({"data": test_data[:lossless], "labels": test_labels[:lossless].tolist()}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CIFAR10_CLASSES}, f)
    return (data, labels), (test_data[:lossless], test_labels[:lossless])


def test_synthetic_cifar10_estimates_its_largest_class_on_the_lossless_test_file(tmp_path):
    (x, y), (lossless_x, lossless_y) = write_cifar10(tmp_path)
    data = build_dataset("cifar10", tmp_path, imb_factor=0.1, val_split=2)
    counts = exp_counts(20, 10, 0.1)  # [20, 15, 11, 9, 7, 5, 4, 3, 2, 2]
    expected = [int((lossless_y == 0).sum())] + [20 - n - 2 for n in counts[1:]]
    assert list(data.estimate.class_sizes) == expected and data.estimate.missing_classes == []
    pool = data.estimate.pool_positions.tolist()
    assert sorted(pool + used_positions(data)) == list(range(200))
    images = data.estimate_images.reshape(-1, 3072).numpy()
    np.testing.assert_array_equal(images[: len(pool)], x[pool])
    np.testing.assert_array_equal(images[len(pool) :], lossless_x[lossless_y == 0])


def test_without_the_lossless_test_file_the_largest_class_is_missing(tmp_path, caplog):
    write_cifar10(tmp_path, lossless=0)  # a user's own CIFAR-10: the official test batch only
    with caplog.at_level("INFO", logger="fbl.data.cifar"):
        data = build_dataset("cifar10", tmp_path, imb_factor=0.1, val_split="none")
    assert data.eval_splits == ("test",) and data.end_of_run_splits == (LOSSLESS_ESTIMATE,)
    assert data.estimate.missing_classes == [0] and data.estimate.class_sizes[0] == 0
    assert data.estimate.sources[0] == "missing" and data.estimate.test_positions.tolist() == []
    assert any("classes [0] have neither" in r.getMessage() for r in caplog.records)


def test_balanced_set_without_the_lossless_file_has_no_estimate_split(tmp_path):
    write_cifar10(tmp_path, lossless=0)
    data = build_dataset("cifar10", tmp_path, imb_factor=1.0, val_split="none")  # every image trains
    assert data.end_of_run_splits == () and data.estimate.missing_classes == list(range(10))
    with pytest.raises(ValueError, match="no 'lossless_estimate' split"):
        data.split_size(LOSSLESS_ESTIMATE)


@pytest.mark.parametrize("val_split, val_per_class", [("none", 0), (2, 2)])
def test_synthetic_cifar100_lt_estimate_is_every_class_with_spare_images(tmp_path, val_split, val_per_class):
    splits, _ = write_cifar100(tmp_path)
    train_x, train_y = splits["train"]
    data = build_dataset("cifar100", tmp_path, imb_factor=0.5, val_split=val_split)
    counts = exp_counts(30, 100, 0.5)  # [30, 29, 29, 29, 29, 28, ...]
    # The validation split takes its images from the spare ones first; a class left with none is missing.
    expected = [max(30 - n - val_per_class, 0) for n in counts]
    assert list(data.estimate.class_sizes) == expected
    assert data.estimate.missing_classes == [c for c, n in enumerate(expected) if n == 0]
    assert 0 in data.estimate.missing_classes and data.estimate.test_positions.tolist() == []
    pool = data.estimate.pool_positions.tolist()
    assert sorted(pool + used_positions(data)) == list(range(3000))
    np.testing.assert_array_equal(data.estimate_images.reshape(-1, 3072).numpy(), train_x[pool])
    assert data.estimate_targets.tolist() == train_y[pool].tolist()


def test_estimate_image_ids_name_the_same_picture_in_runs_with_other_validation_splits(tmp_path):
    (x, _), (lossless_x, _) = write_cifar10(tmp_path)
    with_val = build_dataset("cifar10", tmp_path, imb_factor=0.1, val_split=2)
    without = build_dataset("cifar10", tmp_path, imb_factor=0.1, val_split="none")

    def pictures(data) -> dict[int, bytes]:
        ids = data.image_ids(LOSSLESS_ESTIMATE)
        assert ids.dtype == np.int64 and len(ids) == data.split_size(LOSSLESS_ESTIMATE) == len(set(ids.tolist()))
        rows = data.estimate_images.reshape(-1, 3072).numpy()
        return {int(i): row.tobytes() for i, row in zip(ids, rows, strict=True)}

    a, b = pictures(with_val), pictures(without)
    # Written out: a pool image by its pool position, a lossless test image p as -1 - p.
    for i, picture in a.items():
        assert picture == (x[i] if i >= 0 else lossless_x[-1 - i]).tobytes()
    assert set(a) < set(b) and all(a[i] == b[i] for i in a)
    # the validation images of classes 1-9 (class 0's come from its training images, not from the estimate's)
    val = with_val.val_indices[with_val.val_targets.numpy() != 0]
    assert set(b) - set(a) == set(val.tolist())
    assert with_val.image_ids("val").tolist() == with_val.val_indices.tolist()
