"""Images read from files (ImageNet-LT, iNaturalist 2018, Places-LT, ImageFolder trees) and their transforms.

:class:`ImageFiles` is a map-style dataset over ``root / path`` for each listed path. A file that is
missing, not a regular file (a FIFO named ``x.jpg`` would block the reader forever), reached through
a symbolic link that leaves the root, or cannot be decoded is a :class:`ConfigError` naming it, or,
with ``skip_bad=True``, a ``None`` sample that :class:`CollateSkippingBad` drops and counts.

Every PIL mode decodes to 8-bit RGB by what its samples mean (:func:`to_rgb`), not by PIL's
``convert("RGB")`` alone, which clips 16-bit grey to almost all white.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import stat
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset, default_collate
from torchvision import transforms as T

from fbl.errors import ConfigError

logger = logging.getLogger(__name__)

#: The per-channel mean and std of ImageNet pixels in [0, 1], used by every torchvision ImageNet model.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Transparent pixels are composited onto white, as an image viewer shows them.
BACKGROUND = 255

_FILE_KINDS = {
    stat.S_IFDIR: "a folder",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def open_regular_file(path):
    """``path`` opened for binary reading, or a ConfigError if it is not a regular file (after symlinks).

    Opened non-blocking first: ``open()`` of a FIFO waits for a writer, forever, and a thread blocked
    there cannot even be stopped by SIGTERM's handler. The type is then checked on the open
    descriptor (no window between check and open), and a regular file is read as usual.
    """
    nonblocking = getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, os.O_RDONLY | nonblocking)
    try:
        kind = stat.S_IFMT(os.fstat(fd).st_mode)
        if kind != stat.S_IFREG:
            raise ConfigError(f"Cannot read image {path}: it is {_FILE_KINDS.get(kind, 'not a regular file')}")
        if nonblocking:
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def check_resolves_inside(path, real_root: str, root) -> None:
    """A ConfigError unless ``path``, with every symbolic link resolved, lies inside ``real_root``.

    ``real_root`` is ``os.path.realpath(root)``; ``root`` is named in the message. A link that leaves
    the root can pull any file on the machine into a class, so it is refused unless the user allowed
    files outside the root (``--allow-outside-root``).
    """
    real = os.path.realpath(path)
    if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
        raise ConfigError(
            f"{path} leads through a symbolic link to {real}, outside the image root {root} "
            "(--allow-outside-root permits it)"
        )


def _wide_grey_to_rgb(image: Image.Image) -> Image.Image:
    """16-bit (``I;16*``), 32-bit integer (``I``) and float (``F``) grey as 8-bit RGB.

    ``I;16`` and ``I`` samples are 16-bit levels (Pillow opens 16-bit PNG and TIFF grey as these):
    ``v -> round(v / 257)``, so 0 -> 0, 257 k -> k, 65535 -> 255. ``F`` samples are intensities in
    [0, 1] (as torchvision's ``ToTensor`` takes them): ``v -> round(255 v)``. Out-of-range values clip;
    NaN is 0.
    """
    samples = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0)
    scaled = samples * 255.0 if image.mode == "F" else samples / 257.0
    grey = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, "L").convert("RGB")


def _composite_on_background(image: Image.Image) -> Image.Image:
    """RGBA over :data:`BACKGROUND`: ``round((c a + B (255 - a)) / 255)`` per channel.

    Dropping alpha instead (PIL's ``convert("RGB")``) would show whatever colour the invisible
    pixels happen to store, often black.
    """
    rgba = np.asarray(image.convert("RGBA"), dtype=np.uint32)
    colour, alpha = rgba[..., :3], rgba[..., 3:]
    mixed = colour * alpha + BACKGROUND * (255 - alpha)
    return Image.fromarray(((mixed + 127) // 255).astype(np.uint8), "RGB")  # + 127: round, not floor


_WITH_ALPHA = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB by what its samples mean, whatever its PIL mode.

    ``1``, ``L``, ``P``, ``RGB``, ``CMYK``, ``YCbCr``: PIL's conversion (CMYK as
    ``255 (1 - C/255)(1 - K/255)``); 16/32-bit and float grey: :func:`_wide_grey_to_rgb`; modes with
    alpha, and palette or grey images with a transparent colour: composited onto white.
    """
    mode = image.mode
    if mode in ("I", "F") or mode.startswith("I;16"):
        return _wide_grey_to_rgb(image)
    if mode in _WITH_ALPHA or "transparency" in image.info:
        return _composite_on_background(image)
    return image.convert("RGB")


def read_rgb(path: Path) -> Image.Image:
    """The decoded RGB image at ``path`` (see :func:`to_rgb`); an unreadable file is one ConfigError naming it."""
    try:
        with open_regular_file(path) as handle, Image.open(handle) as image:
            return to_rgb(image)  # decodes the whole file, so truncation shows up here
    except ConfigError:
        raise
    except UnidentifiedImageError:  # its own text names the open file object, not the path
        raise ConfigError(f"Cannot read image {path}: not an image in a format Pillow can decode") from None
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
        allow_outside: read files whose real path (symbolic links resolved) is outside ``root``;
            by default such a file is unreadable (see :func:`check_resolves_inside`).
    """

    def __init__(
        self,
        root,
        paths: Sequence[str],
        labels: Sequence[int],
        transform: Callable | None = None,
        skip_bad: bool = False,
        allow_outside: bool = False,
    ):
        if len(paths) != len(labels):
            raise ValueError(f"Expected one label per path but got {len(paths)} paths and {len(labels)} labels")
        self.root = Path(root)
        self.paths = list(paths)
        self.labels = [int(label) for label in labels]
        self.transform = transform
        self.skip_bad = skip_bad
        self.allow_outside = allow_outside
        self._real_root = os.path.realpath(self.root)

    @property
    def targets(self) -> list[int]:
        """The labels, as torchvision datasets name them (what samplers take)."""
        return self.labels

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, index: int) -> Image.Image:
        """The RGB image of sample ``index``, or a ConfigError naming its file."""
        path = self.root / self.paths[index]
        if not self.allow_outside:
            # Checked at read time, where the file is opened anyway: resolving every path of a
            # 400k-image list up front would cost minutes on a network file system.
            check_resolves_inside(path, self._real_root, self.root)
        return read_rgb(path)

    def __getitem__(self, index: int):
        try:
            image = self.read(index)
        except ConfigError as exc:
            if not self.skip_bad:
                raise
            logger.warning("Skipping: %s", exc)
            return None
        if self.transform is not None:
            image = self.transform(image)
        return image, self.labels[index]


class UnreadableImage:
    """What a ``DataLoader`` worker returns for an image it cannot read, so the main process can raise.

    An exception raised in a worker reaches the main process re-raised with the worker's whole
    traceback in its message (twenty lines inside the CLI's one ``fbl: error:`` line); this carries
    only the one-line message, and :class:`CollateSkippingBad` passes it through as the batch.
    """

    def __init__(self, message: str):
        self.message = message

    def error(self) -> ConfigError:
        return ConfigError(self.message)


class CollateSkippingBad:
    """A ``collate_fn`` that drops the ``None`` samples of ``ImageFiles(skip_bad=True)`` and counts them.

    The count lives in shared memory, so it includes what ``DataLoader`` worker processes dropped.
    A batch whose every sample is bad collates to ``None``; the loop should skip it. A batch holding
    an :class:`UnreadableImage` collates to that sample, for the loop to raise.
    """

    def __init__(self):
        self._skipped = multiprocessing.Value("q", 0)

    @property
    def skipped(self) -> int:
        """Samples dropped so far, over all worker processes."""
        return self._skipped.value

    def __call__(self, batch: list):
        unreadable = next((sample for sample in batch if isinstance(sample, UnreadableImage)), None)
        if unreadable is not None:
            return unreadable
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
