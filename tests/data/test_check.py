"""``fbl data check`` through the dataset contract: image files are decoded, in-memory splits are not."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fbl.data import build_dataset
from fbl.data.check import check_dataset
from fbl.errors import ConfigError

from .test_contract import tensor_family


def folder_with_one_broken_image(root):
    for path in ["train/ant/0.png", "train/ant/1.png", "train/bee/0.png", "test/ant/0.png", "test/bee/0.png"]:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((6, 6, 3), 90, dtype=np.uint8), "RGB").save(root / path)
    (root / "train/bee/0.png").write_bytes(b"not a png")
    return build_dataset("folder", data_dir=str(root), workers=0, skip_bad_images=True)


def test_every_image_file_is_decoded_and_the_bad_one_named(tmp_path):
    report = check_dataset(folder_with_one_broken_image(tmp_path), workers=0)
    assert list(report) == ["train", "test"]
    assert report["train"]["images"] == 3 and report["test"] == {"images": 2, "bad": []}
    ((path, reason),) = report["train"]["bad"]
    assert path == str(tmp_path / "train/bee/0.png") and reason.startswith(f"Cannot read image {path}")


def test_in_memory_splits_are_counted_not_decoded():
    data, _ = tensor_family()
    report = check_dataset(data, splits=["val", "train"], workers=0)
    assert report == {"val": {"images": 2, "bad": []}, "train": {"images": 6, "bad": []}}


def test_an_unknown_split_is_one_line():
    data, _ = tensor_family()
    with pytest.raises(ConfigError, match=r"^toy has no split 'tset'; it has: train, val, test, test_lossless$"):
        check_dataset(data, splits=["tset"], workers=0)
