"""Both dataset families implement :class:`fbl.data.LongTailDataset`, member by member, signatures included.

``isinstance`` on a runtime-checkable protocol only checks that the names exist; here every
property is read and checked against values written out for the tiny dataset, and every method is
called with the arguments the engine passes (by keyword where the engine does).
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fbl.data import AugmentSpec, BatchLoader, LongTailData, LongTailDataset, build_dataset

# What the trainer, fbl eval, fbl data check, fbl compare and analysis/ use of a dataset; the
# protocol must list exactly these (a new member needs a line here and a check below).
MEMBERS = {
    "name",
    "num_classes",
    "class_counts",
    "train_targets",
    "groups",
    "input_shape",
    "eval_splits",
    "end_of_run_splits",
    "split_size",
    "split_indices",
    "split_files",
    "image_ids",
    "train_loader",
    "eval_loader",
}
METHODS = {"split_size", "split_indices", "split_files", "image_ids", "train_loader", "eval_loader"}

# Both tiny datasets: classes of 3, 2 and 1 training images, every class few-shot (< 20 images).
COUNTS = [3, 2, 1]
TRAIN_TARGETS = [0, 0, 0, 1, 1, 2]
GROUPS = {"many": [], "medium": [], "few": [0, 1, 2]}


def tensor_family() -> tuple[LongTailData, dict]:
    images = torch.arange(6 * 3 * 4 * 4, dtype=torch.int64).remainder(251).to(torch.uint8).reshape(6, 3, 4, 4)
    data = LongTailData(
        name="toy",
        num_classes=3,
        class_names=["a", "b", "c"],
        train_images=images,
        train_targets=torch.tensor(TRAIN_TARGETS),
        test_images=images[:3].flip(0).contiguous(),
        test_targets=torch.tensor([0, 1, 2]),
        class_counts=COUNTS,
        indices=np.array([10, 11, 12, 20, 21, 30]),
        augment=AugmentSpec(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), crop_padding=1, hflip=True),
        val_images=images[3:5].contiguous(),
        val_targets=torch.tensor([1, 2]),
        val_indices=np.array([40, 41]),
        extra_eval={"test_lossless": (images[:1].contiguous(), torch.tensor([0]))},
    )
    expected = {
        "name": "toy",
        "input_shape": (3, 4, 4),
        "eval_splits": ("val", "test", "test_lossless"),
        "sizes": {"train": 6, "val": 2, "test": 3, "test_lossless": 1},
        "split_indices": {"train": [10, 11, 12, 20, 21, 30], "val": [40, 41]},
        "files": {"train": None, "val": None, "test": None, "test_lossless": None},
        # validation images by their pool positions, the others by their place in their file
        "image_ids": {"val": [40, 41], "test": [0, 1, 2], "test_lossless": [0]},
    }
    return data, expected


def image_family(root: Path) -> tuple[LongTailDataset, dict]:
    rng = np.random.default_rng(0)
    files = {
        "train": ["train/ant/0.png", "train/ant/1.png", "train/ant/2.png", "train/bee/0.png", "train/bee/1.png"]
        + ["train/cat/0.png"],
        "test": ["test/ant/0.png", "test/cat/0.png"],
    }
    for path in files["train"] + files["test"]:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, size=(10, 12, 3), dtype=np.uint8), "RGB").save(root / path)
    data = build_dataset("folder", data_dir=str(root), workers=0, image_size=8)
    expected = {
        "name": "folder",
        "input_shape": (3, 8, 8),
        "eval_splits": ("test",),
        "sizes": {"train": 6, "test": 2},
        "split_indices": {},
        "files": {split: [root / path for path in paths] for split, paths in files.items()},
        "image_ids": {"test": None},  # an image is known by its line in the split's list
    }
    return data, expected


@pytest.fixture(params=["tensors", "image-files"])
def family(request, tmp_path):
    return tensor_family() if request.param == "tensors" else image_family(tmp_path)


def protocol_members(protocol: type) -> set[str]:
    return {name for name in vars(protocol) if not name.startswith("_")}


def test_the_protocol_lists_exactly_the_members_the_engine_uses():
    assert protocol_members(LongTailDataset) == MEMBERS
    assert {name for name in MEMBERS if not isinstance(vars(LongTailDataset)[name], property)} == METHODS


def test_each_family_is_a_long_tail_dataset(family):
    data, _ = family
    assert isinstance(data, LongTailDataset)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_method_signatures_match_the_protocol(family, method):
    # Same parameter names, kinds (positional / keyword-only) and defaults, in the same order.
    data, _ = family
    want = inspect.signature(getattr(LongTailDataset, method)).parameters.values()
    got = inspect.signature(getattr(type(data), method)).parameters.values()
    assert [(p.name, p.kind, p.default) for p in got] == [(p.name, p.kind, p.default) for p in want]


def test_properties(family):
    data, expected = family
    assert data.name == expected["name"]
    assert data.num_classes == 3 and type(data.num_classes) is int
    assert list(data.class_counts) == COUNTS and all(type(n) is int for n in data.class_counts)
    assert data.train_targets.dtype == torch.int64 and data.train_targets.tolist() == TRAIN_TARGETS
    assert dict(data.groups) == GROUPS
    assert data.input_shape == expected["input_shape"] and type(data.input_shape) is tuple
    assert data.eval_splits == expected["eval_splits"] and type(data.eval_splits) is tuple


def test_split_sizes_indices_and_files(family):
    data, expected = family
    assert {split: data.split_size(split) for split in ("train", *data.eval_splits)} == expected["sizes"]
    assert data.split_indices() == expected["split_indices"]
    assert {split: data.split_files(split) for split in ("train", *data.eval_splits)} == expected["files"]
    ids = {split: data.image_ids(split) for split in data.eval_splits}
    assert {split: None if i is None else i.tolist() for split, i in ids.items()} == expected["image_ids"]
    assert all(i is None or i.dtype == np.int64 for i in ids.values())
    for method in (data.split_size, data.split_files, data.image_ids):
        with pytest.raises(ValueError, match="no 'nope' split"):
            method("nope")


def test_train_loader_as_the_trainer_calls_it(family):
    data, expected = family
    loader = data.train_loader(4, device=torch.device("cpu"), seed=3, sampler=None, rank=0, world_size=1)
    assert isinstance(loader, BatchLoader)
    loader.set_epoch(1)
    batches = list(loader)
    assert len(loader) == 2 == len(batches)  # ceil(6 / 4)
    images = torch.cat([x for x, _ in batches])
    targets = torch.cat([y for _, y in batches])
    assert images.shape == (6, *expected["input_shape"]) and images.dtype == torch.float32
    assert sorted(targets.tolist()) == TRAIN_TARGETS


def test_train_loader_follows_a_sampler(family):
    data, _ = family
    order = [5, 5, 0, 3]
    loader = data.train_loader(2, device="cpu", seed=0, sampler=order)
    assert [y.tolist() for _, y in loader] == [[2, 2], [0, 1]]


def test_eval_loader_as_the_trainer_calls_it(family):
    data, expected = family
    for split in data.eval_splits:
        loader = data.eval_loader(split, 256, device=torch.device("cpu"), rank=0, world_size=1)
        assert isinstance(loader, BatchLoader)
        loader.set_epoch(0)
        ((images, targets),) = list(loader)
        assert images.shape == (expected["sizes"][split], *expected["input_shape"])
        assert targets.dtype == torch.int64
    ((_, targets),) = list(data.eval_loader("train", device="cpu"))
    assert targets.tolist() == TRAIN_TARGETS  # in order, not shuffled
    ((_, targets),) = list(data.eval_loader(device="cpu"))  # the default split is test
    assert len(targets) == expected["sizes"]["test"]
