import gzip
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from fbl.data.shot_groups import shot_groups
from fbl.data.split_list import (
    SPLIT_FILES,
    check_inside_root,
    class_order_by_count,
    find_split_file,
    load_lt_splits,
    read_split_list,
    remap_labels,
)
from fbl.errors import ConfigError
from tests.shared_data import missing_shared

LT_SPLITS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "lt_splits"


@pytest.fixture(scope="module")
def lists() -> Path:
    if not (LT_SPLITS / "Places_LT_train.txt.gz").is_file():
        missing_shared("data/lt_splits/Places_LT_train.txt.gz")
    return LT_SPLITS


def longhand_labels(path: Path) -> list[int]:
    with gzip.open(path, "rt") as f:
        return [int(line.split()[-1]) for line in f if line.strip()]


def longhand_order(train_labels: list[int], num_classes: int) -> np.ndarray:
    counts = {}
    for label in train_labels:
        counts[label] = counts.get(label, 0) + 1
    return np.argsort(-np.array([counts.get(c, 0) for c in range(num_classes)], dtype=np.int64))


@pytest.fixture(scope="module")
def places(lists):
    return load_lt_splits("place365", lists)


def test_places_lt_lists_match_the_published_facts(places):
    assert places.num_classes == 365 and places.eval_split == "test"
    sizes = {split: len(files.paths) for split, files in places.splits.items()}
    assert sizes == {"train": 62_500, "val": 7_300, "test": 36_500}
    counts = places.class_counts
    assert len(counts) == 365 and max(counts) == 4_980 and min(counts) == 5
    assert all(a >= b for a, b in zip(counts, counts[1:], strict=False))  # re-indexed from most to least frequent
    assert {name: len(classes) for name, classes in places.groups.items()} == {"many": 131, "medium": 163, "few": 71}
    assert places.groups == shot_groups(counts)
    assert (np.bincount(places.splits["val"].labels, minlength=365) == 20).all()
    assert (np.bincount(places.splits["test"].labels, minlength=365) == 100).all()
    assert places.splits["train"].labels.dtype == np.int64


def test_places_lt_class_map_equals_the_reference_argsort(places, lists):
    # Places-LT train has many tied counts; numpy's default argsort orders them differently from a
    # stable sort, so this comparison fails if the tie order is not the reference code's.
    train = longhand_labels(lists / "Places_LT_train.txt.gz")
    order = longhand_order(train, 365)
    np.testing.assert_array_equal(places.order, order)
    np.testing.assert_array_equal(class_order_by_count(train, 365), order)
    new_index = {int(original): k for k, original in enumerate(order)}
    for split in ("train", "test"):
        original = longhand_labels(lists / f"Places_LT_{split}.txt.gz")
        assert places.splits[split].labels.tolist() == [new_index[label] for label in original]


@pytest.mark.parametrize(
    "file, lines, num_classes",
    [
        ("ImageNet_LT_val.txt", 20_000, 1000),
        ("ImageNet_LT_test.txt", 50_000, 1000),
        ("iNaturalist18_val.txt", 24_426, 8142),
    ],
)
def test_balanced_evaluation_lists(lists, file, lines, num_classes):
    paths, labels = read_split_list(find_split_file(lists, file), num_classes=num_classes)
    assert len(paths) == lines
    per_class = np.bincount(labels, minlength=num_classes)
    assert len(per_class) == num_classes and (per_class == lines // num_classes).all()


def test_split_files_are_data():
    assert SPLIT_FILES["inat"].test is None and SPLIT_FILES["inat"].eval_split == "val"
    assert SPLIT_FILES["inat"].num_classes == 8142
    assert SPLIT_FILES["imagenet"].files() == {
        "train": "ImageNet_LT_train.txt",
        "val": "ImageNet_LT_val.txt",
        "test": "ImageNet_LT_test.txt",
    }
    assert SPLIT_FILES["place365"].num_classes == 365


def test_missing_training_list_is_named(lists):
    # ImageNet_LT_train is not in the shared folder: the error must say which file is missing.
    with pytest.raises(ConfigError, match=r"ImageNet_LT_train\.txt \(or ImageNet_LT_train\.txt\.gz\) not found"):
        load_lt_splits("imagenet", lists)


def test_find_split_file_prefers_plain_then_gz(tmp_path):
    (tmp_path / "a.txt.gz").write_bytes(gzip.compress(b"x.jpg 0\n"))
    assert find_split_file(tmp_path, "a.txt") == tmp_path / "a.txt.gz"
    (tmp_path / "a.txt").write_text("x.jpg 0\n")
    assert find_split_file(tmp_path, "a.txt") == tmp_path / "a.txt"


def write_list(tmp_path, text, name="list.txt"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reads_plain_and_gzip_and_ignores_blank_lines(tmp_path):
    text = "train/a b/1.jpg 2\n\n  \ntrain/c/2.jpg\t0\n"
    for path in (write_list(tmp_path, text), tmp_path / "list.txt.gz"):
        if path.suffix == ".gz":
            path.write_bytes(gzip.compress(text.encode()))
        paths, labels = read_split_list(path)
        assert paths == ["train/a b/1.jpg", "train/c/2.jpg"]  # split at the last whitespace run
        assert labels.tolist() == [2, 0] and labels.dtype == np.int64


@pytest.mark.parametrize(
    "line, message",
    [
        ("train/x.jpg", "expected 'relative/path label' but got 'train/x.jpg'"),
        ("train/x.jpg two", "expected an integer label but got 'two'"),
        ("train/x.jpg 1.5", "expected an integer label"),
        ("train/x.jpg -1", "expected a label in 0..2 but got -1"),
        ("train/x.jpg 3", "expected a label in 0..2 but got 3"),
        ("../x.jpg 0", "leaves the dataset root"),
        ("train/../../x.jpg 0", "leaves the dataset root"),
        ("/abs/x.jpg 0", "absolute '/abs/x.jpg'"),
        ("ok/a.jpg 0", "'ok/a.jpg' is listed again (first on line 1); list each image once"),
        ("./ok//a.jpg 0", "'./ok//a.jpg' is listed again (first on line 1)"),  # the same file, spelt otherwise
        ("ok/a.jpg 2", "'ok/a.jpg' has label 2 here but 0 on line 1"),
        ("train/._x.jpg 0", "'train/._x.jpg' is a macOS AppleDouble metadata file (._*), not an image"),
    ],
)
def test_bad_line_names_file_and_line(tmp_path, line, message):
    path = write_list(tmp_path, f"ok/a.jpg 0\n\n{line}\n")
    with pytest.raises(ConfigError) as info:
        read_split_list(path, num_classes=3)
    text = str(info.value)
    assert text.startswith(f"{path}:3: ") and message in text and "\n" not in text


def test_a_byte_order_mark_is_not_part_of_the_first_path(tmp_path):
    text = "\ufefftrain/a.jpg 1\ntrain/b.jpg 0\n"
    plain = tmp_path / "bom.txt"
    plain.write_bytes(text.encode("utf-8"))
    assert plain.read_bytes()[:3] == b"\xef\xbb\xbf"
    packed = tmp_path / "bom.txt.gz"
    packed.write_bytes(gzip.compress(text.encode("utf-8")))
    for path in (plain, packed):
        assert read_split_list(path).paths == ["train/a.jpg", "train/b.jpg"]


def test_a_fifo_as_split_list_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "list.txt"
    os.mkfifo(fifo)
    outcome = {}

    def read():
        try:
            read_split_list(fifo)
        except ConfigError as exc:
            outcome["error"] = str(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(30)
    if reader.is_alive():  # free the blocked reader before failing
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("reading a FIFO split list blocked")
    assert outcome["error"] == f"Cannot read split list {fifo}: not a regular file"


def test_negative_label_is_refused_without_num_classes(tmp_path):
    with pytest.raises(ConfigError, match=r"list\.txt:1: .*>= 0 but got -4"):
        read_split_list(write_list(tmp_path, "a.jpg -4\n"))


def test_allow_outside_lets_parent_and_absolute_paths_through(tmp_path):
    path = write_list(tmp_path, "../x.jpg 0\n/abs/y.jpg 1\n")
    assert read_split_list(path, allow_outside=True).paths == ["../x.jpg", "/abs/y.jpg"]


def test_missing_empty_and_corrupt_files(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.txt not found"):
        read_split_list(tmp_path / "nope.txt")
    with pytest.raises(ConfigError, match="has no entries"):
        read_split_list(write_list(tmp_path, "\n\n"))
    (tmp_path / "bad.txt.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ConfigError, match=r"Cannot read split list .*bad\.txt\.gz"):
        read_split_list(tmp_path / "bad.txt.gz")


def test_check_inside_root(tmp_path):
    assert check_inside_root("train/a/1.jpg", tmp_path) == tmp_path / "train" / "a" / "1.jpg"
    assert check_inside_root("./a/1.jpg", tmp_path) == tmp_path / "a" / "1.jpg"
    with pytest.raises(ConfigError, match=r"^list\.txt:7: .*leaves the dataset root"):
        check_inside_root("a/../../etc/passwd", tmp_path, where="list.txt:7")
    with pytest.raises(ConfigError, match="absolute"):
        check_inside_root("/etc/passwd", tmp_path)
    assert check_inside_root("../b.jpg", tmp_path / "r", allow_outside=True) == tmp_path / "r" / ".." / "b.jpg"


def test_class_order_and_remap_against_longhand():
    train = [2, 2, 2, 0, 1, 1, 3, 3, 3, 3]  # counts 1, 2, 3, 4
    order = class_order_by_count(train, 5)  # class 4 has no training lines
    assert order.tolist() == [3, 2, 1, 0, 4]
    assert remap_labels([3, 4, 0, 2], order).tolist() == [0, 4, 3, 1]
    counts = np.bincount(remap_labels(train, order), minlength=5)
    assert counts.tolist() == [4, 3, 2, 1, 0]
    with pytest.raises(ConfigError, match=r"0\.\.4"):
        remap_labels([5], order)
    with pytest.raises(ConfigError, match=r"0\.\.4"):
        class_order_by_count([0, 5], 5)


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)))
def test_any_file_either_parses_or_is_one_config_error(tmp_path, content):
    from fbl.data.split_list import read_split_list

    path = tmp_path / "list.txt"
    path.write_bytes(content)
    try:
        paths, labels = read_split_list(path, num_classes=10)
    except ConfigError as exc:
        assert "\n" not in str(exc)
    else:
        assert len(paths) == len(labels) and all(0 <= int(v) < 10 for v in labels)
