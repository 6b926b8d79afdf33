"""Images read from files (ImageNet-LT, iNaturalist 2018, Places-LT, ImageFolder trees) and their transforms.

:class:`ImageFiles` is a map-style dataset over ``root / path`` for each listed path. A file that is
missing, not a regular file (a FIFO named ``x.jpg`` would block the reader forever), reached through
a symbolic link that leaves the root, or cannot be decoded is a :class:`ConfigError` naming it, or,
with ``skip_bad=True``, a ``None`` sample that :class:`CollateSkippingBad` drops and counts.

Every PIL mode decodes to 8-bit RGB by what its samples mean (:func:`to_rgb`), not by PIL's
``convert("RGB")`` alone, which clips 16-bit grey to almost all white.

Fast decoding (``fast_decode=True``, ``--fast-decode``, the default of ``fbl train``): JPEGs in RGB or
grey are decoded by libjpeg-turbo through ``torchvision.io.decode_jpeg`` straight into a uint8 tensor
(the same library Pillow uses: the decoded pixels are identical), every other file through PIL as
above, and the crop, resize and flip run on uint8 tensors (:class:`TensorTrainTransform`,
:class:`TensorEvalTransform`). The random draws are those of torchvision's PIL transforms, in the same
order, so every crop box and flip is the same; only the resampling differs: torch's antialiased
bilinear uint8 kernel instead of Pillow's gives pixels within a few levels of 255 (measured in
``benchmarks/results/decode.md``). Together 1.3-1.7x the images/s per core on 500x375 JPEGs.
"""

from __future__ import annotations

import io
import logging
import multiprocessing
import os
import stat
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset, default_collate
from torchvision import transforms as T
from torchvision.transforms.v2 import functional as F2

try:  # deprecated in torchvision 0.29 in favour of torchcodec; without it every image is decoded by PIL
    from torchvision.io import ImageReadMode, decode_jpeg
except ImportError:  # pragma: no cover - a torchvision without image decoding
    ImageReadMode = decode_jpeg = None

from fbl.errors import ConfigError

# torchvision 0.29 warns on every decode that its image I/O will move to TorchCodec; we know (PIL is the
# fallback when it goes), and one warning per image would drown a run's log.
warnings.filterwarnings(
    "ignore", message="The image decoding and encoding capabilities of TorchVision", category=DeprecationWarning
)

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


@contextmanager
def _decode_errors(name) -> Iterator[None]:
    """Any decoder failure inside the block as one ConfigError line naming the image ``name``."""
    try:
        yield
    except ConfigError:
        raise
    except UnidentifiedImageError:  # its own text names the open file object, not the path
        raise ConfigError(f"Cannot read image {name}: not an image in a format Pillow can decode") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ConfigError(f"Cannot read image {name}: {' '.join(str(exc).split())}") from None
    except RuntimeError as exc:  # torchvision's decoder: "decode_jpeg, <its source file>:<line>, <reason>"
        raise ConfigError(f"Cannot read image {name}: {str(exc).rsplit(', ', 1)[-1].strip()}") from None


def read_rgb(path: Path) -> Image.Image:
    """The decoded RGB image at ``path`` (see :func:`to_rgb`); an unreadable file is one ConfigError naming it."""
    with _decode_errors(path), open_regular_file(path) as handle, Image.open(handle) as image:
        return to_rgb(image)  # decodes the whole file, so truncation shows up here


def decode_rgb(data: bytes, name) -> Image.Image:
    """:func:`read_rgb` of an encoded image held in memory; ``name`` is what an error names."""
    with _decode_errors(name), Image.open(io.BytesIO(data)) as image:
        return to_rgb(image)


def decode_rgb_tensor(data: bytes, name) -> torch.Tensor:
    """The image as a 3xHxW uint8 tensor with the pixels of :func:`decode_rgb`, decoded faster where it can be.

    Pillow reads only the header here; an RGB or grey JPEG is then decoded by libjpeg-turbo through
    ``torchvision.io.decode_jpeg`` (no PIL image in between), anything else (CMYK JPEGs, PNG, ...) by
    :func:`to_rgb`. EXIF orientation is ignored by both, as by :func:`read_rgb`.
    """
    with _decode_errors(name):
        with Image.open(io.BytesIO(data)) as image:
            if decode_jpeg is not None and image.format == "JPEG" and image.mode in ("RGB", "L"):
                return decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
            rgb = to_rgb(image)
    return torch.from_numpy(np.array(rgb)).permute(2, 0, 1)


def read_rgb_tensor(path: Path) -> torch.Tensor:
    """:func:`decode_rgb_tensor` of the file at ``path`` (a regular file, as :func:`read_rgb` requires)."""
    with _decode_errors(path), open_regular_file(path) as handle:
        data = handle.read()
    return decode_rgb_tensor(data, path)


class LabelledImages(Dataset):
    """``(transform(image), label)`` per index, from the subclass's :meth:`decoded`; an unreadable image
    is ``None`` with ``skip_bad`` (the collate drops and counts it), else its one-line ConfigError.
    Subclasses set ``labels``, ``transform`` and ``skip_bad``."""

    def decoded(self, index: int):
        raise NotImplementedError

    def __getitem__(self, index: int):
        try:
            image = self.decoded(index)
        except ConfigError as exc:
            if not self.skip_bad:
                raise
            logger.warning("Skipping: %s", exc)
            return None
        if self.transform is not None:
            image = self.transform(image)
        return image, self.labels[index]


class ImageFiles(LabelledImages):
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
        fast_decode: hand ``transform`` a 3xHxW uint8 tensor (:func:`read_rgb_tensor`) instead of a
            PIL image; pair with :class:`TensorTrainTransform` / :class:`TensorEvalTransform`.
    """

    def __init__(
        self,
        root,
        paths: Sequence[str],
        labels: Sequence[int],
        transform: Callable | None = None,
        skip_bad: bool = False,
        allow_outside: bool = False,
        fast_decode: bool = False,
    ):
        if len(paths) != len(labels):
            raise ValueError(f"Expected one label per path but got {len(paths)} paths and {len(labels)} labels")
        self.root = Path(root)
        self.paths = list(paths)
        self.labels = [int(label) for label in labels]
        self.transform = transform
        self.skip_bad = skip_bad
        self.allow_outside = allow_outside
        self.fast_decode = fast_decode
        self._real_root = os.path.realpath(self.root)

    @property
    def targets(self) -> list[int]:
        """The labels, as torchvision datasets name them (what samplers take)."""
        return self.labels

    def __len__(self) -> int:
        return len(self.paths)

    def _checked_path(self, index: int) -> Path:
        path = self.root / self.paths[index]
        if not self.allow_outside:
            # Checked at read time, where the file is opened anyway: resolving every path of a
            # 400k-image list up front would cost minutes on a network file system.
            check_resolves_inside(path, self._real_root, self.root)
        return path

    def read(self, index: int) -> Image.Image:
        """The RGB image of sample ``index``, or a ConfigError naming its file."""
        return read_rgb(self._checked_path(index))

    def read_tensor(self, index: int) -> torch.Tensor:
        """The RGB image of sample ``index`` as a 3xHxW uint8 tensor (same pixels as :meth:`read`)."""
        return read_rgb_tensor(self._checked_path(index))

    def decoded(self, index: int):
        return self.read_tensor(index) if self.fast_decode else self.read(index)


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


#: RandomResizedCrop's range of crop area (fraction of the image) and aspect ratio, as torchvision's ImageNet recipe.
CROP_SCALE, CROP_RATIO = (0.08, 1.0), (3 / 4, 4 / 3)


def imagenet_train_transform(crop_size: int = 224, fast: bool = False) -> Callable:
    """RandomResizedCrop(crop, scale 0.08-1, ratio 3/4-4/3), horizontal flip, ToTensor, ImageNet Normalize.

    ``fast``: the same on a uint8 tensor (:class:`TensorTrainTransform`), for ``ImageFiles(fast_decode=True)``.
    """
    if fast:
        return TensorTrainTransform(crop_size)
    return T.Compose(
        [
            T.RandomResizedCrop(crop_size, scale=CROP_SCALE, ratio=CROP_RATIO),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def imagenet_eval_transform(crop_size: int = 224, resize_size: int | None = None, fast: bool = False) -> Callable:
    """Resize the short side (default ``round(crop * 256 / 224)``, 256 for 224), CenterCrop, ToTensor, Normalize.

    ``fast``: the same on a uint8 tensor (:class:`TensorEvalTransform`).
    """
    if resize_size is None:
        resize_size = eval_resize_size(crop_size)
    if fast:
        return TensorEvalTransform(crop_size, resize_size)
    return T.Compose(
        [
            T.Resize(resize_size),
            T.CenterCrop(crop_size),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def eval_resize_size(crop_size: int) -> int:
    """The short side evaluation resizes to before its centre crop: ``round(crop * 256 / 224)`` (256 for 224)."""
    return round(crop_size * 256 / 224)


def normalize_uint8(image: torch.Tensor) -> torch.Tensor:
    """``(x / 255 - mean) / std`` per channel, the arithmetic of ``ToTensor`` then ``Normalize``, as float32."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return image.float().div(255).sub_(mean).div_(std)


class TensorTrainTransform:
    """:func:`imagenet_train_transform` on a 3xHxW uint8 tensor: the same random draws, so the same crop and flip.

    The crop box comes from ``T.RandomResizedCrop.get_params`` (which reads only the image size) and the
    flip from one ``torch.rand(1) < 0.5``, in that order, as the PIL transforms draw them. The box is
    resized with torch's antialiased bilinear kernel on uint8, which differs from Pillow's by a few levels.
    """

    def __init__(self, crop_size: int = 224):
        self.size = [crop_size, crop_size]

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        top, left, height, width = T.RandomResizedCrop.get_params(image, list(CROP_SCALE), list(CROP_RATIO))
        image = F2.resized_crop(image, top, left, height, width, self.size, antialias=True)
        if torch.rand(1) < 0.5:  # RandomHorizontalFlip(p=0.5)'s draw
            image = image.flip(-1)
        return normalize_uint8(image)


class TensorEvalTransform:
    """:func:`imagenet_eval_transform` on a 3xHxW uint8 tensor: short side to ``resize_size``, centre crop.

    A short side already at ``resize_size`` is left as it is, as Pillow leaves it, so pre-resized
    images (``fbl data export``) are cropped without resampling.
    """

    def __init__(self, crop_size: int = 224, resize_size: int = 256):
        self.crop, self.resize = [crop_size, crop_size], [resize_size]

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        image = F2.resize(image, self.resize, antialias=True)
        return normalize_uint8(F2.center_crop(image, self.crop))
