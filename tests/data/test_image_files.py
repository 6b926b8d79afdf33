import os
import threading

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import transforms as T
from torchvision.transforms import functional as TF

from fbl.data.image_files import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CollateSkippingBad,
    ImageFiles,
    UnreadableImage,
    imagenet_eval_transform,
    imagenet_train_transform,
    read_rgb,
    to_rgb,
)
from fbl.errors import ConfigError

PATHS = ["train/a/0.jpg", "train/a/1.jpg", "train/b/2.jpg", "train/b/3.png"]
LABELS = [0, 0, 1, 1]


def make_image(seed, size=(40, 40), mode="RGB"):
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "L": 1}[mode]
    pixels = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode)


@pytest.fixture
def root(tmp_path):
    for i, path in enumerate(PATHS):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        make_image(i, mode="L" if i == 1 else "RGB").save(tmp_path / path)  # one greyscale file
    return tmp_path


def test_items_are_rgb_tensors_and_labels(root):
    dataset = ImageFiles(root, PATHS, LABELS, transform=T.ToTensor())
    assert len(dataset) == 4 and dataset.targets == LABELS
    image, label = dataset[1]
    assert image.shape == (3, 40, 40) and label == 0  # greyscale converted to RGB
    assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])
    png, label = dataset[3]
    reference = torch.from_numpy(np.array(make_image(3))).permute(2, 0, 1).float() / 255  # PNG is lossless
    assert label == 1 and torch.equal(png, reference)


def test_transforms_shapes_with_a_small_crop(root):
    torch.manual_seed(0)
    train = ImageFiles(root, PATHS, LABELS, transform=imagenet_train_transform(crop_size=32))
    evaluate = ImageFiles(root, PATHS, LABELS, transform=imagenet_eval_transform(crop_size=32))
    batch, labels = next(iter(DataLoader(train, batch_size=4)))
    assert batch.shape == (4, 3, 32, 32) and batch.dtype == torch.float32 and labels.tolist() == LABELS
    assert evaluate[0][0].shape == (3, 32, 32)


def test_eval_transform_against_longhand(root):
    image = Image.open(root / PATHS[3]).convert("RGB")
    got = imagenet_eval_transform(crop_size=32)(image)
    resized = TF.resize(image, 37)  # round(32 * 256 / 224) = 37, short side
    assert resized.size == (37, 37)
    crop = TF.center_crop(resized, 32)
    x = torch.from_numpy(np.array(crop)).permute(2, 0, 1).float() / 255
    expected = (x - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
    torch.testing.assert_close(got, expected)


def test_imagenet_transform_settings():
    crop, flip, _, normalize = imagenet_train_transform().transforms
    assert crop.size == (224, 224) and crop.scale == (0.08, 1.0) and crop.ratio == (3 / 4, 4 / 3)
    assert isinstance(flip, T.RandomHorizontalFlip) and flip.p == 0.5
    assert tuple(normalize.mean) == (0.485, 0.456, 0.406) and tuple(normalize.std) == (0.229, 0.224, 0.225)
    resize, center, _, _ = imagenet_eval_transform().transforms
    assert resize.size == 256 and center.size == (224, 224)


def test_missing_and_corrupt_files_name_the_file(root):
    (root / "train/b/2.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    dataset = ImageFiles(root, PATHS + ["train/c/gone.jpg"], LABELS + [2])
    with pytest.raises(ConfigError, match=r"Cannot read image .*train/b/2\.jpg") as info:
        dataset[2]
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=r"Cannot read image .*train/c/gone\.jpg"):
        dataset[4]


def test_truncated_jpeg_is_an_error(root):
    data = (root / PATHS[0]).read_bytes()
    (root / PATHS[0]).write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError, match=r"train/a/0\.jpg"):
        ImageFiles(root, PATHS, LABELS)[0]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_skip_bad_drops_and_counts(root, num_workers, caplog):
    (root / "train/a/1.jpg").write_bytes(b"garbage")
    paths = PATHS + ["train/c/gone.jpg"]
    dataset = ImageFiles(root, paths, LABELS + [2], transform=T.ToTensor(), skip_bad=True)
    with caplog.at_level("WARNING", logger="fbl.data.image_files"):
        assert dataset[1] is None
    assert "train/a/1.jpg" in caplog.text
    collate = CollateSkippingBad()
    loader = DataLoader(dataset, batch_size=2, collate_fn=collate, num_workers=num_workers)
    batches = list(loader)  # [0, 1], [2, 3], [4]: the last batch is all bad
    assert batches[2] is None
    assert [b[1].tolist() for b in batches[:2]] == [[0], [1, 1]]
    assert batches[0][0].shape == (1, 3, 40, 40)
    assert collate.skipped == 2  # counted in the worker processes too


def test_lengths_must_match(root):
    with pytest.raises(ValueError, match="one label per path"):
        ImageFiles(root, PATHS, LABELS[:2])


# ---- every PIL mode to 8-bit RGB, against values worked out by hand -------------------------------


def _palette(mode, indices, colours, alpha=None):
    image = Image.new(mode, (len(indices), 1))
    image.putpalette([value for colour in colours for value in colour])
    for x, index in enumerate(indices):
        image.putpixel((x, 0), index if alpha is None else (index, alpha[x]))
    return image


def _grey_transparent():
    image = _palette("P", [0, 1], [(10, 20, 30), (200, 100, 50)])
    image.info["transparency"] = 0  # palette entry 0 is transparent (PNG tRNS)
    return image


# (how to make the image, file format it round-trips through or None, expected RGB pixels by hand).
# Alpha over white: round((c a + 255 (255 - a)) / 255); 16-bit grey: round(v / 257); float grey: round(255 v).
MODES = {
    "1": (lambda: Image.frombytes("1", (2, 1), bytes([0b01000000])), "PNG", [(0, 0, 0), (255, 255, 255)]),
    "L": (lambda: Image.new("L", (1, 1), 77), "PNG", [(77, 77, 77)]),
    "P": (lambda: _palette("P", [1, 0], [(10, 20, 30), (200, 100, 50)]), "PNG", [(200, 100, 50), (10, 20, 30)]),
    "P-transparent": (_grey_transparent, "PNG", [(255, 255, 255), (200, 100, 50)]),
    # 10 * 100 / 255 + 255 * 155 / 255 = 158.92; 20 -> 162.84; 30 -> 166.76
    "PA": (lambda: _palette("PA", [0], [(10, 20, 30)], alpha=[100]), None, [(159, 163, 167)]),
    # 100 * 128 / 255 + 127 = 177.2
    "LA": (lambda: Image.new("LA", (1, 1), (100, 128)), "PNG", [(177, 177, 177)]),
    # alpha 0 -> white, 255 -> the colour, 51 -> c / 5 + 204
    "RGBA": (
        lambda: Image.fromarray(np.array([[[200, 40, 0, 0], [200, 40, 0, 255], [200, 40, 0, 51]]], np.uint8)),
        "PNG",
        [(255, 255, 255), (200, 40, 0), (244, 212, 204)],
    ),
    # 255 (1 - C/255)(1 - K/255): 245 * 215 / 255 = 206.57, 235 * 215 / 255 = 198.14, 225 * 215 / 255 = 189.71
    "CMYK": (lambda: Image.new("CMYK", (1, 1), (10, 20, 30, 40)), "TIFF", [(207, 198, 190)]),
    # 0, 257 / 257 = 1, 1000 / 257 = 3.89, 65535 / 257 = 255 (clipping to 255 made 257 and up white)
    "I;16": (lambda: Image.fromarray(np.array([[0, 257, 1000, 65535]], np.uint16)), "PNG", [0, 1, 4, 255]),
    # 300 / 257 = 1.17; 70000 clips to 255; negative clips to 0
    "I": (lambda: Image.fromarray(np.array([[0, 300, 70000, -5]], np.int32)), "TIFF", [0, 1, 255, 0]),
    # 255 * 0.25 = 63.75; 1.0 -> 255; above 1 and below 0 clip
    "F": (lambda: Image.fromarray(np.array([[0.0, 0.25, 1.0, 2.0, -1.0]], np.float32)), "TIFF", [0, 64, 255, 255, 0]),
    "RGB": (lambda: Image.new("RGB", (1, 1), (1, 2, 3)), "PNG", [(1, 2, 3)]),
}


def _expected_rgb(pixels):
    return np.array([[p if isinstance(p, tuple) else (p, p, p) for p in pixels]], dtype=np.uint8)


@pytest.mark.parametrize("case", list(MODES))
def test_every_mode_decodes_to_the_right_rgb(case, tmp_path):
    make, file_format, pixels = MODES[case]
    image = make()
    assert image.mode == case.split("-")[0]
    expected = _expected_rgb(pixels)
    converted = to_rgb(image)
    assert converted.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(converted), expected)
    if file_format is not None:  # the same through a file, as training reads it
        path = tmp_path / f"image.{file_format.lower()}"
        image.save(path, format=file_format)
        assert Image.open(path).mode == image.mode  # the file keeps the mode under test
        np.testing.assert_array_equal(np.asarray(read_rgb(path)), expected)


# ---- what is not a regular file, and links that leave the root -----------------------------------


def finishes_within(seconds, call):
    """``call()``'s result or exception, or a test failure if it is still blocked after ``seconds``."""
    outcome = {}

    def run():
        try:
            outcome["value"] = call()
        except BaseException as exc:  # noqa: BLE001 -- handed back to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"still blocked after {seconds} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@pytest.fixture
def unblock_fifo():
    """Opens each registered FIFO for writing after the test, so a reader a regression left blocked returns."""
    fifos = []
    yield fifos.append
    for fifo in fifos:
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:  # no reader waiting: nothing to unblock
            pass


def test_a_fifo_named_like_an_image_is_refused_without_blocking(root, unblock_fifo):
    fifo = root / "train" / "a" / "pipe.jpg"
    os.mkfifo(fifo)
    unblock_fifo(fifo)
    dataset = ImageFiles(root, ["train/a/pipe.jpg"], [0])
    with pytest.raises(ConfigError) as info:
        finishes_within(30, lambda: dataset[0])
    assert str(info.value) == f"Cannot read image {fifo}: it is a FIFO (named pipe)"


def test_a_folder_named_like_an_image_is_refused(root):
    (root / "train" / "a" / "folder.jpg").mkdir()
    with pytest.raises(ConfigError, match=r"folder\.jpg: it is a folder$"):
        ImageFiles(root, ["train/a/folder.jpg"], [0])[0]


def test_symbolic_links_may_not_leave_the_root_unless_allowed(root, tmp_path_factory):
    outside = tmp_path_factory.mktemp("elsewhere")
    make_image(9).save(outside / "x.png")
    (root / "train" / "a" / "out.png").symlink_to(outside / "x.png")
    (root / "train" / "b" / "in.png").symlink_to(root / "train" / "b" / "3.png")  # stays inside: fine
    (root / "train" / "c").symlink_to(outside, target_is_directory=True)
    paths = ["train/a/out.png", "train/b/in.png", "train/c/x.png"]
    dataset = ImageFiles(root, paths, [0, 1, 2], transform=T.ToTensor())
    for index in (0, 2):
        with pytest.raises(ConfigError) as info:
            dataset[index]
        assert str(info.value) == (
            f"{root / paths[index]} leads through a symbolic link to {os.path.realpath(outside / 'x.png')}, "
            f"outside the image root {root} (--allow-outside-root permits it)"
        )
    assert dataset[1][0].shape == (3, 40, 40)
    allowed = ImageFiles(root, paths, [0, 1, 2], transform=T.ToTensor(), allow_outside=True)
    reference = torch.from_numpy(np.array(make_image(9))).permute(2, 0, 1).float() / 255
    assert torch.equal(allowed[0][0], reference) and torch.equal(allowed[2][0], reference)


def test_unreadable_image_passes_through_collate_as_itself():
    collate = CollateSkippingBad()
    bad = UnreadableImage("Cannot read image x.jpg: broken")
    good = (torch.zeros(3), 0)
    assert collate([good, bad, None]) is bad and collate.skipped == 0
    assert str(bad.error()) == "Cannot read image x.jpg: broken" and isinstance(bad.error(), ConfigError)


def _photo_jpeg(path, seed=0, size=(120, 90)):
    """Smooth content plus noise, saved as JPEG (what photographs compress like)."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)).resize(size, Image.BILINEAR)
    pixels = np.clip(np.asarray(small, dtype=np.int16) + rng.integers(-10, 11, (size[1], size[0], 3)), 0, 255)
    Image.fromarray(pixels.astype(np.uint8)).save(path, quality=90)


def test_fast_decoding_gives_the_pixels_pil_decodes(root):
    _photo_jpeg(root / "train/a/0.jpg")
    dataset = ImageFiles(root, PATHS, LABELS)
    for index in range(4):  # RGB JPEG (libjpeg-turbo through torchvision), grey JPEG, RGB JPEG, PNG (PIL)
        expected = torch.from_numpy(np.array(dataset.read(index))).permute(2, 0, 1)
        assert torch.equal(dataset.read_tensor(index), expected), index


def test_fast_transforms_draw_the_same_crops_and_flips_as_the_pil_ones(root):
    _photo_jpeg(root / "train/a/0.jpg")
    dataset = ImageFiles(root, PATHS, LABELS)
    pil, tensor = dataset.read(0), dataset.read_tensor(0)
    level = torch.tensor(IMAGENET_STD).view(3, 1, 1) * 255  # one level of 255 after Normalize
    for seed in range(20):
        torch.manual_seed(seed)
        reference = imagenet_train_transform(32)(pil)
        after_reference = torch.rand(1)
        torch.manual_seed(seed)
        fast = imagenet_train_transform(32, fast=True)(tensor)
        assert torch.rand(1) == after_reference  # the same number of draws
        assert ((fast - reference) / level).abs().max() <= 1.01, seed  # same box and flip; resampling within a level
    evaluated = imagenet_eval_transform(32, fast=True)(tensor)
    assert ((evaluated - imagenet_eval_transform(32)(pil)) / level).abs().max() <= 1.01


def test_fast_decoding_errors_name_the_file(root):
    (root / "train/b/2.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    _photo_jpeg(root / "train/a/0.jpg")
    data = (root / PATHS[0]).read_bytes()
    (root / PATHS[0]).write_bytes(data[: len(data) // 2])
    dataset = ImageFiles(root, PATHS, LABELS, fast_decode=True)
    for index, name in ((0, r"train/a/0\.jpg"), (2, r"train/b/2\.jpg")):
        with pytest.raises(ConfigError, match=rf"Cannot read image .*{name}") as info:
            dataset[index]
        assert "\n" not in str(info.value) and ".cpp" not in str(info.value)
