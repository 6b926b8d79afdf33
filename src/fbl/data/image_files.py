"""Images read from files (ImageNet-LT, iNaturalist 2018, Places-LT, ImageFolder trees) and their transforms.

:class:`ImageFiles` is a map-style dataset over ``root / path`` for each listed path. A file that is
missing or cannot be decoded is a :class:`ConfigError` naming it, or, with ``skip_bad=True``, a
``None`` sample that :class:`CollateSkippingBad` drops and counts.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image
from torch.utils.data import Dataset, default_collate
from torchvision import transforms as T

from fbl.errors import ConfigError

logger = logging.getLogger(__name__)

#: The per-channel mean and std of ImageNet pixels in [0, 1], used by every torchvision ImageNet model.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def read_rgb(path: Path) -> Image.Image:
    """The decoded RGB image at ``path``; an unreadable file is one :class:`ConfigError` naming it."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")  # decodes the whole file, so truncation shows up here
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ConfigError(f"Cannot read image {path}: {' '.join(str(exc).split())}") from None


class ImageFiles(Dataset):
    """``(transform(RGB image), label)`` for each ``root / paths[i]``.

    Args:
        root: folder the paths are relative to.
        paths: image paths relative to ``root``.
        labels: one integer label per path.
        transform: applied to the PIL image; None returns the PIL image.
        skip_bad: return ``None`` for an unreadable image (logged with its path) instead of raising;
            pair with :class:`CollateSkippingBad`.
    """

    def __init__(
        self,
        root,
        paths: Sequence[str],
        labels: Sequence[int],
        transform: Callable | None = None,
        skip_bad: bool = False,
    ):
        if len(paths) != len(labels):
            raise ValueError(f"Expected one label per path but got {len(paths)} paths and {len(labels)} labels")
        self.root = Path(root)
        self.paths = list(paths)
        self.labels = [int(label) for label in labels]
        self.transform = transform
        self.skip_bad = skip_bad

    @property
    def targets(self) -> list[int]:
        """The labels, as torchvision datasets name them (what samplers take)."""
        return self.labels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        path = self.root / self.paths[index]
        try:
            image = read_rgb(path)
        except ConfigError as exc:
            if not self.skip_bad:
                raise
            logger.warning("Skipping: %s", exc)
            return None
        if self.transform is not None:
            image = self.transform(image)
        return image, self.labels[index]


class CollateSkippingBad:
    """A ``collate_fn`` that drops the ``None`` samples of ``ImageFiles(skip_bad=True)`` and counts them.

    The count lives in shared memory, so it includes what ``DataLoader`` worker processes dropped.
    A batch whose every sample is bad collates to ``None``; the loop should skip it.
    """

    def __init__(self):
        self._skipped = multiprocessing.Value("q", 0)

    @property
    def skipped(self) -> int:
        """Samples dropped so far, over all worker processes."""
        return self._skipped.value

    def __call__(self, batch: list):
        kept = [sample for sample in batch if sample is not None]
        if len(kept) < len(batch):
            with self._skipped.get_lock():
                self._skipped.value += len(batch) - len(kept)
        return default_collate(kept) if kept else None


def imagenet_train_transform(crop_size: int = 224) -> Callable:
    """RandomResizedCrop(crop, scale 0.08-1, ratio 3/4-4/3), horizontal flip, ToTensor, ImageNet Normalize."""
    return T.Compose(
        [
            T.RandomResizedCrop(crop_size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def imagenet_eval_transform(crop_size: int = 224, resize_size: int | None = None) -> Callable:
    """Resize the short side (default ``round(crop * 256 / 224)``, 256 for 224), CenterCrop, ToTensor, Normalize."""
    if resize_size is None:
        resize_size = round(crop_size * 256 / 224)
    return T.Compose(
        [
            T.Resize(resize_size),
            T.CenterCrop(crop_size),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
