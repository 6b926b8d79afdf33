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
    imagenet_eval_transform,
    imagenet_train_transform,
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
