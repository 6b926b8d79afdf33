"""The image-file dataset's loaders and the ImageFolder builder: errors from worker processes, worker caps, splits."""

import logging
import os

import numpy as np
import pytest
from PIL import Image
from torchvision import transforms as T

import fbl.data.workers as workers_module
from fbl.data.image_files import ImageFiles
from fbl.data.image_list_data import ImageBatchLoader, build_image_folder
from fbl.data.workers import cap_workers
from fbl.errors import ConfigError


def write_png(path, shade=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), shade, dtype=np.uint8)).save(path)


@pytest.mark.parametrize("workers", [0, 2])
def test_an_unreadable_image_is_one_line_from_worker_processes_too(tmp_path, workers):
    paths = [f"img/{i}.png" for i in range(4)]
    for path in paths:
        write_png(tmp_path / path)
    (tmp_path / paths[2]).write_bytes(b"not an image")
    files = ImageFiles(tmp_path, paths, [0, 0, 1, 1], transform=T.ToTensor())
    loader = ImageBatchLoader(files, 2, seed=0, train=False, sampler=None, workers=workers, device="cpu")
    with pytest.raises(ConfigError) as info:
        list(loader)
    message = str(info.value)
    # Raised in a worker, DataLoader would have wrapped it in "Caught ConfigError in DataLoader worker
    # process 0. Original Traceback (most recent call last): ..." over twenty lines.
    assert message == f"Cannot read image {tmp_path / paths[2]}: not an image in a format Pillow can decode"


@pytest.mark.filterwarnings("ignore:This DataLoader will create")  # the 6 "usable" CPUs are pretended
def test_workers_are_capped_at_the_usable_cpus_and_the_cap_is_logged_once(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(workers_module, "usable_cpus", lambda: 6)
    monkeypatch.setattr(workers_module, "_warned", set())
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert cap_workers(0) == 0 and cap_workers(6) == 6
    with caplog.at_level(logging.WARNING, logger="fbl.data.workers"):
        files = ImageFiles(tmp_path, ["a.png"], [0])
        for _ in range(3):  # train, val and test loaders of one run
            loader = ImageBatchLoader(files, 1, seed=0, train=True, sampler=None, workers=48, device="cpu")
            assert loader.loader.num_workers == 6
    assert caplog.messages == [
        "--workers 48 is more than the 6 CPUs this process may use; each loader starts 6 workers"
    ]
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # torchrun: four ranks on this machine share the CPUs
    assert cap_workers(48) == 1 and cap_workers(1) == 1


def folder_tree(root, splits):
    for split, per_class in splits.items():
        for cls, count in enumerate(per_class):
            for k in range(count):
                write_png(root / split / f"c{cls}" / f"{k}.png", shade=40 * cls)
    return root


def test_a_folder_without_val_or_test_images_is_refused_when_built(tmp_path):
    root = folder_tree(tmp_path, {"train": (3, 1)})
    with pytest.raises(ConfigError) as info:
        build_image_folder(root)
    assert str(info.value) == (
        f"{root} has no val/ or test/ images, and a run is selected and reported on one: add "
        "ROOT/val/<class>/... or ROOT/test/<class>/... with the class folders of train/"
    )
    (root / "val" / "c0").mkdir(parents=True)  # class folders without images are no better
    with pytest.raises(ConfigError, match="has no val/ or test/ images"):
        build_image_folder(root)


def test_an_empty_eval_split_is_dropped_with_a_warning(tmp_path, caplog):
    root = folder_tree(tmp_path, {"train": (3, 1), "test": (1, 1)})
    (root / "val" / "c0").mkdir(parents=True)
    data = build_image_folder(root)
    assert data.eval_splits == ("test",) and data.class_counts == [3, 1] and data.split_size("test") == 2
    assert f"{root / 'val'} has no images; it is not evaluated" in caplog.text


def test_allow_outside_root_reaches_the_reader_of_a_folder_dataset(tmp_path_factory):
    root = folder_tree(tmp_path_factory.mktemp("root"), {"train": (1,), "val": (1,)})
    outside = tmp_path_factory.mktemp("outside")
    write_png(outside / "far.png", shade=200)
    os.symlink(outside / "far.png", root / "train" / "c0" / "far.png")
    with pytest.raises(ConfigError, match="outside the data root"):
        build_image_folder(root)
    data = build_image_folder(root, workers=0, allow_outside_root=True, image_size=8)
    assert data.allow_outside_root and data.split_size("train") == 2
    images, labels = next(iter(data.eval_loader("train", 4, device="cpu")))
    assert images.shape == (2, 3, 8, 8) and labels.tolist() == [0, 0]
