import os

import pytest

from fbl.data.image_folder import scan_image_folder
from fbl.errors import ConfigError


def touch(root, *paths):
    for path in paths:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(b"")  # the scan looks at names only


def test_scan_train_val_and_labels_from_sorted_train_folders(tmp_path):
    touch(
        tmp_path,
        "train/zebra/1.jpg",
        "train/zebra/0.JPEG",
        "train/ant/a.png",
        "train/ant/sub/b.jpg",
        "train/ant/notes.txt",
        "train/mole/m.webp",
        "val/zebra/v.jpg",
        "val/ant/w.jpg",
        "train/loose.jpg",
    )
    found = scan_image_folder(tmp_path)
    assert found.class_names == ["ant", "mole", "zebra"] and found.num_classes == 3
    assert set(found.splits) == {"train", "val"}  # no test folder
    paths, labels = found.splits["train"]
    assert paths == [
        "train/ant/a.png",
        "train/ant/sub/b.jpg",
        "train/mole/m.webp",
        "train/zebra/0.JPEG",
        "train/zebra/1.jpg",
    ]
    assert labels.tolist() == [0, 0, 1, 2, 2] and str(labels.dtype) == "int64"
    paths, labels = found.splits["val"]
    assert paths == ["val/ant/w.jpg", "val/zebra/v.jpg"] and labels.tolist() == [0, 2]


def test_val_class_not_in_train_is_an_error(tmp_path):
    touch(tmp_path, "train/ant/a.jpg", "test/ant/b.jpg", "test/bee/c.jpg")
    with pytest.raises(ConfigError, match=r"test has class folder\(s\) not in .*train: bee"):
        scan_image_folder(tmp_path)


def test_missing_train_and_empty_classes(tmp_path):
    with pytest.raises(ConfigError, match="not a folder"):
        scan_image_folder(tmp_path)
    (tmp_path / "train").mkdir()
    with pytest.raises(ConfigError, match="No class folders"):
        scan_image_folder(tmp_path)
    touch(tmp_path, "train/ant/a.jpg", "train/bee/readme.txt")
    with pytest.raises(ConfigError, match=r"train/bee has no images"):
        scan_image_folder(tmp_path)


# ---- what is not an image, and where links may lead ----------------------------------------------


def test_fifo_hidden_and_broken_entries_are_not_images(tmp_path, caplog):
    touch(tmp_path, "train/ant/a.jpg", "train/ant/._a.jpg", "train/ant/.hidden/b.jpg", "val/ant/v.jpg")
    os.mkfifo(tmp_path / "train/ant/pipe.jpg")
    (tmp_path / "train/ant/broken.jpg").symlink_to(tmp_path / "nowhere.jpg")
    with caplog.at_level("INFO", logger="fbl.data.image_folder"):
        found = scan_image_folder(tmp_path)  # lists names only: a FIFO is never opened, so nothing blocks
    assert found.splits["train"].paths == ["train/ant/a.jpg"]
    assert "Skipped 2 entries named like images that are not regular files" in caplog.text
    assert "Skipped 1 hidden files named like images (macOS ._* metadata, say), e.g. train/ant/._a.jpg" in caplog.text


def six_image_class_with_a_loop(tmp_path):
    touch(tmp_path, *[f"train/ant/{i}.jpg" for i in range(6)], "train/bee/b.jpg", "val/ant/v.jpg")
    (tmp_path / "train/ant/loop").symlink_to("..", target_is_directory=True)  # the reported 6 -> 446 images
    (tmp_path / "train/ant/self").symlink_to(".", target_is_directory=True)
    (tmp_path / "train/ant/bees").symlink_to("../bee", target_is_directory=True)


def test_link_loops_and_links_into_other_classes_are_skipped(tmp_path, caplog):
    six_image_class_with_a_loop(tmp_path)
    found = scan_image_folder(tmp_path)
    paths, labels = found.splits["train"]
    assert paths == [f"train/ant/{i}.jpg" for i in range(6)] + ["train/bee/b.jpg"]
    assert labels.tolist() == [0] * 6 + [1]
    assert f"Skipping {tmp_path / 'train/ant/loop'}: the link leads to {tmp_path / 'train'}" in caplog.text
    assert f"Skipping {tmp_path / 'train/ant/self'}: it is {tmp_path / 'train/ant'}, already scanned" in caplog.text
    assert f"Skipping {tmp_path / 'train/ant/bees'}: the link leads into another class folder" in caplog.text


def test_a_link_inside_the_root_to_unscanned_images_is_followed(tmp_path):
    touch(tmp_path, "train/ant/a.jpg", "store/more/m.jpg", "store/more/n.png")
    (tmp_path / "train/ant/more").symlink_to(tmp_path / "store/more", target_is_directory=True)
    assert scan_image_folder(tmp_path).splits["train"].paths == [
        "train/ant/a.jpg",
        "train/ant/more/m.jpg",
        "train/ant/more/n.png",
    ]


@pytest.mark.parametrize("link", ["train/ant/far", "train/ant/far.jpg", "train/far", "val"])
def test_links_out_of_the_root_are_refused_unless_allowed(tmp_path_factory, link):
    root, outside = tmp_path_factory.mktemp("root"), tmp_path_factory.mktemp("outside")
    touch(root, "train/ant/a.jpg")
    touch(outside, "far.jpg", "ant/o.jpg")
    target = {"train/ant/far.jpg": outside / "far.jpg", "val": outside}.get(link, outside)
    (root / link).symlink_to(target, target_is_directory=target.is_dir())
    with pytest.raises(ConfigError) as info:
        scan_image_folder(root)
    leaving = root / link if link != "val" else root / "val/ant"
    assert str(info.value) == (
        f"{leaving} leads through a symbolic link to {os.path.realpath(target if link != 'val' else outside / 'ant')}, "
        f"outside the data root {root} (--allow-outside-root follows such links)"
    )
    allowed = scan_image_folder(root, allow_outside=True).splits
    followed = {"train/ant/far": 3, "train/ant/far.jpg": 2, "train/far": 3, "val": 2}  # a.jpg + what the link adds
    assert sum(len(files.paths) for files in allowed.values()) == followed[link]


def test_two_class_folders_that_are_one_folder_are_refused(tmp_path):
    touch(tmp_path, "train/ant/a.jpg")
    (tmp_path / "val").mkdir()
    (tmp_path / "val/ant").symlink_to(tmp_path / "train/ant", target_is_directory=True)  # val would be train
    with pytest.raises(ConfigError, match=r"val/ant and .*train/ant are the same folder"):
        scan_image_folder(tmp_path)
