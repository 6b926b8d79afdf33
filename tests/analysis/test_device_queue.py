"""analysis/device_queue/: the pack a GPU machine trains from holds CIFAR-10-LT's training images and the
test sets exactly (the lossless estimate's images are zeros there), and the runs to continue."""

from __future__ import annotations

import importlib.util
import json
import pickle
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

FOLDER = Path(__file__).resolve().parents[2] / "analysis" / "device_queue"


def batches(root: Path) -> dict:
    folder = root / "cifar-10-batches-py"
    return {path.name: pickle.load(open(path, "rb"), encoding="latin1") for path in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def pack_module():
    spec = importlib.util.spec_from_file_location("analysis_device_pack", FOLDER / "pack.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pack_then_unpack_gives_the_long_tail_images_and_the_test_sets_exactly(pack_module, cifar10_root, tmp_path):
    indices = pack_module.long_tail_indices(cifar10_root)
    run = tmp_path / "snapshot" / "balpoe-seed124"
    (run / "checkpoints").mkdir(parents=True)
    (run / "splits.json").write_text(json.dumps({"train": indices[::-1].tolist()}))
    (run / "checkpoints" / "last.pt").write_bytes(b"weights")
    pack_module.pack(tmp_path / "snapshot", tmp_path / "pack", cifar10_root)
    with tarfile.open(tmp_path / "pack" / "runs" / "balpoe-seed124.tar.gz") as tar:
        assert sorted(tar.getnames()) == [
            "balpoe-seed124", "balpoe-seed124/checkpoints", "balpoe-seed124/checkpoints/last.pt",
            "balpoe-seed124/splits.json",
        ]  # fmt: skip

    done = subprocess.run(
        [sys.executable, str(tmp_path / "pack" / "unpack.py"), str(tmp_path / "device")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    original, unpacked = batches(cifar10_root), batches(tmp_path / "device")
    assert unpacked.keys() == original.keys()
    for name in ("test_batch", "test_batch_lossless_1000", "batches.meta"):
        for key, value in original[name].items():
            assert np.array_equal(unpacked[name][key], value), (name, key)
    train = [f"data_batch_{i}" for i in range(1, 6)]
    rows = np.concatenate([original[name]["data"] for name in train])
    rows_there = np.concatenate([unpacked[name]["data"] for name in train])
    labels = sum((original[name]["labels"] for name in train), [])
    assert sum((unpacked[name]["labels"] for name in train), []) == labels
    assert np.array_equal(rows_there[indices], rows[indices])
    others = np.setdiff1d(np.arange(50000), indices)
    assert not rows_there[others].any()
    # CIFAR-10-LT at imbalance 100: n_c = int(5000 * 0.01 ** (c / 9)) images of class c
    assert np.bincount(np.asarray(labels)[indices]).tolist() == [int(5000 * 0.01 ** (c / 9)) for c in range(10)]


def test_pack_refuses_a_run_of_other_training_images(pack_module, cifar10_root, tmp_path):
    run = tmp_path / "snapshot" / "other"
    run.mkdir(parents=True)
    (run / "splits.json").write_text(json.dumps({"train": [0, 1, 2]}))
    with pytest.raises(SystemExit, match="other images"):
        pack_module.pack(tmp_path / "snapshot", tmp_path / "pack", cifar10_root)
