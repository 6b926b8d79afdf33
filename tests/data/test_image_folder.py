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
