"""fbl data export writes pre-resized WebDataset-style shards; --dataset shards trains from them and resumes exactly."""

import hashlib
import io
import json
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

import fbl.data.shard_data  # noqa: F401 - registers --dataset shards
from fbl.cli import main
from fbl.data import build_dataset
from fbl.data.image_files import ImageFiles, imagenet_eval_transform
from fbl.engine.checkpoint import load_checkpoint
from fbl.errors import ConfigError

PLACES_LISTS = ("Places_LT_train.txt", "Places_LT_val.txt", "Places_LT_test.txt")


def _image(seed: int, size=(40, 30)) -> Image.Image:
    """Smooth content with some noise, different for every seed (so images cannot be swapped unnoticed)."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)).resize(size, Image.BILINEAR)
    noisy = np.asarray(small, dtype=np.int16) + rng.integers(-8, 9, (size[1], size[0], 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def _write_places(root) -> dict:
    """A Places-LT split-list tree: class c has 1 + (c % 3 == 0) training images, one val and one test image.

    Images are PNG (lossless), so the references below start from known pixels. Returns
    ``{split: [(relative path, original label), ...]}`` in list order.
    """
    listed, seed = {}, 0
    for split, file in zip(("train", "val", "test"), PLACES_LISTS, strict=True):
        listed[split] = []
        for cls in range(365):
            for k in range(2 if split == "train" and cls % 3 == 0 else 1):
                rel = f"{split}/{cls}/{k}.png"
                (root / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
                _image(seed, size=(40, 30) if seed % 2 else (30, 44)).save(root / "images" / rel)
                listed[split].append((rel, cls))
                seed += 1
        (root / file).write_text("".join(f"{rel} {cls}\n" for rel, cls in listed[split]))
    return listed


def _source_flags(root) -> list[str]:
    return ["--dataset", "place365", "--data_path", str(root), "--img_path", str(root / "images"), "--workers", "0"]


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    root = tmp_path_factory.mktemp("places")
    return root, _write_places(root)


@pytest.fixture(scope="module")
def exported(places, tmp_path_factory):
    root, listed = places
    out = tmp_path_factory.mktemp("shards") / "png"
    argv = ["data", "export", "--out", str(out), "--shard-size", "200", "--format", "png", "--image-size", "32"]
    assert main([*argv, *_source_flags(root)]) == 0
    return out, listed


def _members(path) -> list[tuple[str, bytes]]:
    with tarfile.open(path) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]


def _resized_longhand(image: Image.Image, short: int) -> Image.Image:
    w, h = image.size
    size = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
    return image.resize(size, Image.BILINEAR)


def test_shards_round_trip_to_the_resized_images_and_their_labels(exported, places):
    out, listed = exported
    index = json.loads((out / "shards.json").read_text())
    # Places-LT re-indexes classes by training count: the 122 classes 0, 3, 6, ... with two images come first
    # (their order among themselves is numpy's argsort's); a class's name is its original label.
    assert index["class_counts"] == [2] * 122 + [1] * 243
    assert sorted(index["class_names"][:122], key=int) == [str(c) for c in range(0, 365, 3)]
    new_label = {int(name): new for new, name in enumerate(index["class_names"])}
    assert index["image"] == {"short_side": 37, "format": "png", "quality": 95}  # round(32 * 256 / 224)
    for split, expected in listed.items():
        entry = index["splits"][split]
        assert entry["count"] == len(expected) and [s["count"] for s in entry["shards"]][0] == 200
        members = [m for shard in entry["shards"] for m in _members(out / shard["file"])]
        assert [name for name, _ in members] == [
            f"{i:08d}.{ext}" for i in range(len(expected)) for ext in ("png", "cls")
        ]
        for i, (rel, original) in enumerate(expected):
            image, label = members[2 * i][1], members[2 * i + 1][1]
            assert int(label.decode()) == new_label[original]
            reference = _resized_longhand(Image.open(places[0] / "images" / rel).convert("RGB"), 37)
            assert np.array_equal(np.asarray(Image.open(io.BytesIO(image))), np.asarray(reference)), (split, i)


def test_the_index_records_each_shard_checksum_size_and_image_offsets(exported):
    out, _ = exported
    index = json.loads((out / "shards.json").read_text())
    for shard in index["splits"]["val"]["shards"]:
        data = (out / shard["file"]).read_bytes()
        assert shard["sha256"] == hashlib.sha256(data).hexdigest() and shard["bytes"] == len(data)
        members = dict(_members(out / shard["file"]))
        for offset, length in shard["images"]:
            assert data[offset : offset + length] in members.values()
        first = shard["images"][0]
        assert data[first[0] : first[0] + first[1]].startswith(b"\x89PNG")


def test_the_shard_dataset_serves_the_exported_images_in_list_order(exported, places):
    out, listed = exported
    data = build_dataset("shards", data_dir=str(out), image_size=32, workers=0)
    assert data.name == "shards" and data.eval_splits == ("val", "test") and data.num_classes == 365
    assert data.split_size("train") == len(listed["train"]) and data.split_files("train") is None
    files = data._files("test", None)
    for i in (0, 199, 200, len(listed["test"]) - 1):  # either side of a shard boundary
        rel, _ = listed["test"][i]
        reference = _resized_longhand(Image.open(places[0] / "images" / rel).convert("RGB"), 37)
        assert np.array_equal(np.asarray(files[i][0]), np.asarray(reference))


def test_evaluation_on_lossless_shards_sees_the_pixels_evaluation_on_the_files_saw(exported, places):
    out, listed = exported
    shards = build_dataset("shards", data_dir=str(out), image_size=32, workers=0)._files("val", None)
    transform = imagenet_eval_transform(32)  # Resize(37): already that size on the shards, so left as it is
    paths, labels = zip(*listed["val"], strict=True)
    originals = ImageFiles(places[0] / "images", paths, labels, transform)
    for i in (0, 1, 364):
        assert torch.equal(transform(shards[i][0]), originals[i][0])


def test_fast_decode_gives_the_same_tensor_pixels(exported):
    out, _ = exported
    data = build_dataset("shards", data_dir=str(out), image_size=32, workers=0, fast_decode=True)
    fast, slow = data._files("train", None), build_dataset("shards", data_dir=str(out))._files("train", None)
    for i in (0, 5):
        assert torch.equal(fast[i][0], torch.from_numpy(np.array(slow[i][0])).permute(2, 0, 1))


def test_a_damaged_shard_is_refused_when_the_set_is_opened(exported, tmp_path):
    out, _ = exported
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in out.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    shard = copy / "val-000001.tar"
    data = bytearray(shard.read_bytes())
    data[1000] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match=r"val-000001\.tar is damaged") as info:
        build_dataset("shards", data_dir=str(copy))
    assert "\n" not in str(info.value)
    shard.unlink()
    with pytest.raises(ConfigError, match=r"val-000001\.tar is missing"):
        build_dataset("shards", data_dir=str(copy))


def test_a_shard_changed_after_verification_is_refused_when_read(exported, tmp_path):
    out, _ = exported
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in out.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    files = build_dataset("shards", data_dir=str(copy))._files("train", None)
    (copy / "train-000000.tar").write_bytes(b"\0" * 1024)
    with pytest.raises(ConfigError, match=r"train-000000\.tar changed after its checksum was verified"):
        files[0]


def test_export_refuses_a_folder_in_use_and_datasets_held_in_memory(places, tmp_path, capsys):
    root, _ = places
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("mine")
    assert main(["data", "export", "--out", str(used), *_source_flags(root)]) == 2
    assert "is not empty" in capsys.readouterr().err
    assert main(["data", "export", *_source_flags(root)]) == 2
    assert "needs --out" in capsys.readouterr().err
    assert main(["data", "export", "--out", str(tmp_path / "d"), "--dataset", "digits-lt"]) == 2
    assert "held in memory" in capsys.readouterr().err
    assert main(["train", "--dataset", "shards", "--data-dir", str(used)]) == 2
    assert "no shards.json" in capsys.readouterr().err


def test_jpg_and_npy_shards_read_back(places, tmp_path):
    root, listed = places
    for image_format in ("jpg", "npy"):
        out = tmp_path / image_format
        argv = ["data", "export", "--out", str(out), "--format", image_format, "--short-side", "24"]
        assert main([*argv, *_source_flags(root)]) == 0
        image, label = build_dataset("shards", data_dir=str(out))._files("val", None)[3]
        reference = _resized_longhand(Image.open(root / "images" / listed["val"][3][0]).convert("RGB"), 24)
        difference = np.abs(np.asarray(image, dtype=int) - np.asarray(reference, dtype=int))
        assert image.size == reference.size and difference.max() <= (0 if image_format == "npy" else 40)


RUN = ["--arch", "resnet32", "--loss", "ce", "--epochs", "2", "--warmup-epochs", "0", "--batch_size", "4",
       "--limit-batches", "3", "--image-size", "32", "--workers", "0", "--device", "cpu", "--quiet",
       "--no-compile"]  # fmt: skip


def test_a_run_on_shards_stopped_and_resumed_equals_the_uninterrupted_run(exported, tmp_path, monkeypatch):
    import fbl.engine.trainer as trainer

    out, _ = exported
    args = ["train", "--dataset", "shards", "--data-dir", str(out), *RUN]
    assert main([*args, "--out", str(tmp_path / "whole")]) == 0
    calls = {"n": 0}

    def asked_at_the_third_step(self):
        calls["n"] += 1
        return calls["n"] >= 3  # asked after each step but an epoch's last: epoch 0's two, then epoch 1's first

    monkeypatch.setattr(trainer.GracefulStop, "requested", asked_at_the_third_step)
    stopped = tmp_path / "stopped"
    assert main([*args, "--out", str(stopped)]) == 130
    assert load_checkpoint(stopped)["epoch"] == 1 and load_checkpoint(stopped)["partial"]["step"] == 1
    monkeypatch.undo()
    # --limit-batches and --workers say how a run is watched, so --resume takes them anew (else: all batches).
    assert main(["train", "--resume", str(stopped), "--quiet", "--limit-batches", "3", "--workers", "0"]) == 0
    whole, resumed = load_checkpoint(tmp_path / "whole")["model"], load_checkpoint(stopped)["model"]
    for key in whole:
        assert torch.equal(whole[key], resumed[key]), key
    metrics = [
        [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        for run in (tmp_path / "whole", stopped)
    ]
    assert [r["train_loss"] for r in metrics[0]] == [r["train_loss"] for r in metrics[1]]
    assert [r["eval"]["top1"] for r in metrics[0]] == [r["eval"]["top1"] for r in metrics[1]]
