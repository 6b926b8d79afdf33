"""Pre-resized image shards: what ``fbl data export`` writes and ``--dataset shards`` reads.

A one-time conversion of an image-file dataset (split lists or a folder tree) into a folder of
WebDataset-style tar shards, the format the ecosystem streams across nodes:

* ``{split}-{n:06d}.tar``: for the ``i``-th image of a split (in list order), ``{key}.jpg`` (or
  ``.png`` / ``.npy``, a uint8 HxWx3 array) followed by ``{key}.cls`` (its label as decimal text),
  with ``key = f"{i:08d}"``. Labels are the dataset's own (split lists re-indexed by training count).
* ``shards.json``: format and version, the source dataset, the image settings, class names and
  training counts, and per split its shards with count, size, sha256 and, per image, the offset and
  length of its bytes in the tar, so training reads any image directly (samplers and exact resumes
  need random access; nothing is streamed in order).

Pre-resizing stores each image with its shorter side resized to ``short_side`` (default 256 for
224-pixel crops), with evaluation's own ``Resize`` (Pillow, bilinear, antialiased; the longer side
``int(short_side * long / short)``). Evaluation's ``Resize(256)`` then leaves the image as it is, so
with ``png`` or ``npy`` evaluation sees exactly the pixels it saw before, and with ``jpg`` (quality 95)
a second JPEG generation of them (about 2 levels of 255 on average; ``benchmarks/results/decode.md``).
Training's RandomResizedCrop draws its boxes from the same distribution relative to the image (area
fraction 0.08-1 and aspect ratio 3/4-4/3 do not depend on resolution; offsets are uniform), though
not the same box for the same seed (offsets are drawn on the smaller grid), and resamples them from
the stored image: a box wider than ``short_side`` pixels in the original has fewer source pixels,
detail above the stored resolution is gone. An original with a shorter side below ``short_side`` is
enlarged to it.

The sha256 of every shard is checked when a shard set is opened (:func:`verify_shards`); the readers
then check that no shard's size or modification time changed since.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from fbl.atomic_files import atomic_output, check_writable_folder, write_atomic
from fbl.data.image_files import ImageFiles, UnreadableImage
from fbl.data.workers import cap_workers
from fbl.errors import ConfigError

logger = logging.getLogger(__name__)

INDEX_NAME = "shards.json"
FORMAT, VERSION = "fbl-shards", 1
IMAGE_FORMATS = ("jpg", "png", "npy")
#: Images per shard by default: about 175 MB of 256-pixel JPEGs, in the range streaming readers like.
SHARD_SIZE = 5000
#: Plain POSIX tar headers (no PAX records): names are short, and every reader knows them.
USTAR = tarfile.USTAR_FORMAT


def resize_short_side(image: Image.Image, short_side: int) -> Image.Image:
    """``image`` with its shorter side ``short_side``: evaluation's ``T.Resize(short_side)`` (bilinear, antialiased)."""
    return T.Resize(short_side)(image)


def encode_image(image: Image.Image, image_format: str, quality: int = 95) -> bytes:
    """The bytes of ``{key}.{image_format}``: JPEG at ``quality``, PNG, or a ``.npy`` uint8 HxWx3 array."""
    buffer = io.BytesIO()
    if image_format == "npy":
        np.save(buffer, np.asarray(image, dtype=np.uint8), allow_pickle=False)
    elif image_format == "png":
        image.save(buffer, format="PNG", compress_level=1)  # decoding speed does not depend on the level
    else:
        image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


class _Encoded(Dataset):
    """``(encoded pre-resized image, label)`` of each image of ``files``, made in DataLoader workers."""

    def __init__(self, files: ImageFiles, short_side: int, image_format: str, quality: int):
        self.files, self.short_side, self.image_format, self.quality = files, short_side, image_format, quality

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        try:
            image = resize_short_side(self.files.read(index), self.short_side)
        except ConfigError as exc:  # returned, not raised: the main process raises it as one line
            return UnreadableImage(str(exc))
        return encode_image(image, self.image_format, self.quality), self.files.labels[index]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0  # no time stamp: the same input gives the same bytes
    tar.addfile(info, io.BytesIO(data))


def write_shard(path: Path, items: list[tuple[str, str, bytes, int]]) -> dict:
    """Write ``(key, ext, data, label)`` items as one tar (atomically); its index entry.

    The entry: ``file``, ``count``, ``bytes``, ``sha256``, ``labels`` and ``images`` (``[offset,
    length]`` of each image's bytes in the file, read back from the written tar's own headers).
    """
    with (
        atomic_output(path, "shard") as handle,
        tarfile.open(fileobj=handle, mode="w", format=tarfile.USTAR_FORMAT) as tar,
    ):
        for key, ext, data, label in items:
            _add_member(tar, f"{key}.{ext}", data)
            _add_member(tar, f"{key}.cls", str(label).encode())
    with tarfile.open(path) as tar:
        where = {member.name: [member.offset_data, member.size] for member in tar}
    return {
        "file": path.name, "count": len(items), "bytes": path.stat().st_size, "sha256": sha256_file(path),
        "labels": [label for *_, label in items], "images": [where[f"{key}.{ext}"] for key, ext, *_ in items],
    }  # fmt: skip


def _check_export_options(out: Path, shard_size: int, short_side: int, image_format: str, quality: int) -> None:
    if shard_size < 1 or short_side < 1:
        raise ConfigError(f"Expected --shard-size and --short-side >= 1 but got {shard_size} and {short_side}")
    if image_format not in IMAGE_FORMATS:
        raise ConfigError(f"Unknown shard image format {image_format!r}; choose one of: {', '.join(IMAGE_FORMATS)}")
    if not 1 <= quality <= 100:
        raise ConfigError(f"Expected --quality in 1..100 but got {quality}")
    check_writable_folder(out, "export folder")
    if out.is_dir() and any(out.iterdir()):
        raise ConfigError(f"{out} is not empty; fbl data export writes into a new or empty folder")


def _export_split(files: ImageFiles, out: Path, split: str, options: dict, workers: int, progress) -> list[dict]:
    encoded = _Encoded(files, options["short_side"], options["format"], options["quality"])
    loader = DataLoader(encoded, batch_size=None, num_workers=cap_workers(workers))
    shards, pending = [], []
    for index, item in enumerate(progress(loader, total=len(encoded), desc=f"export {split}")):
        if isinstance(item, UnreadableImage):
            raise ConfigError(f"{item.message} (fbl data check lists every unreadable image)")
        pending.append((f"{index:08d}", options["format"], *item))
        if len(pending) == options["shard_size"] or index == len(encoded) - 1:
            shards.append(write_shard(out / f"{split}-{len(shards):06d}.tar", pending))
            pending = []
    return shards


def export_shards(
    data, out, *, shard_size: int = SHARD_SIZE, short_side: int = 256, image_format: str = "jpg",
    quality: int = 95, workers: int = 4, source: dict | None = None, progress: Callable = lambda it, **_: it,
) -> dict:  # fmt: skip
    """Write every split of image-file dataset ``data`` (an ``ImageListData``) into ``out`` as shards; the index.

    Images are read, resized and encoded in ``workers`` DataLoader processes and written in split
    order. An unreadable image stops the export with its one-line error. ``shards.json`` is written
    last, so a folder without it is an unfinished export.
    """
    out = Path(out)
    splits = getattr(data, "splits", None)
    if splits is None:
        raise ConfigError(f"{data.name} is held in memory; fbl data export converts image-file datasets")
    _check_export_options(out, shard_size, short_side, image_format, quality)
    out.mkdir(parents=True, exist_ok=True)
    options = {"short_side": short_side, "format": image_format, "quality": quality, "shard_size": shard_size}
    index = {
        "format": FORMAT, "version": VERSION, "source": {"dataset": data.name, **(source or {})},
        "image": {key: options[key] for key in ("short_side", "format", "quality")},
        "class_names": list(data.class_names), "class_counts": list(data.class_counts), "splits": {},
    }  # fmt: skip
    for split, (paths, labels) in splits.items():
        files = ImageFiles(data.root, paths, labels, allow_outside=data.allow_outside_root)
        shards = _export_split(files, out, split, options, workers, progress)
        index["splits"][split] = {"count": len(paths), "shards": shards}
    write_atomic(out / INDEX_NAME, json.dumps(index) + "\n", "shard index")
    return index


def load_index(folder) -> dict:
    """The checked ``shards.json`` of ``folder``, or one ConfigError line saying what is wrong."""
    path = Path(folder) / INDEX_NAME
    if not path.is_file():
        raise ConfigError(f"{folder} holds no {INDEX_NAME}; write shards with fbl data export --out {folder}")
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"Cannot read {path}: {' '.join(str(exc).split())}") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT or index.get("version") != VERSION:
        raise ConfigError(f"{path} is not a version-{VERSION} fbl shard index")
    if "train" not in index.get("splits", {}):
        raise ConfigError(f"{path} has no train split")
    return index


def verify_shards(folder, index: dict) -> dict[str, tuple[int, int]]:
    """Check the sha256 of every shard against ``index``; ``{file: (size, mtime_ns)}`` of what was checked.

    A missing or damaged shard is one ConfigError line. The readers compare each shard's size and
    modification time with the returned stamps when they open it, so the hashes are computed once
    per run, in the main process, not once per DataLoader worker.
    """
    stamps = {}
    for split in index["splits"].values():
        for shard in split["shards"]:
            path = Path(folder) / shard["file"]
            if not path.is_file():
                raise ConfigError(f"Shard {path} is missing; export the dataset again (fbl data export)")
            stat = path.stat()
            if stat.st_size != shard["bytes"] or sha256_file(path) != shard["sha256"]:
                raise ConfigError(
                    f"Shard {path} is damaged: its sha256 differs from the one {INDEX_NAME} records; "
                    "export the dataset again (fbl data export)"
                )
            stamps[shard["file"]] = (stat.st_size, stat.st_mtime_ns)
    return stamps


def open_shard(path: Path, stamp: tuple[int, int]) -> int:
    """A read-only descriptor of shard ``path``, or a ConfigError if it changed since :func:`verify_shards`."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise ConfigError(f"Cannot open shard {path}: {exc.strerror or exc}") from None
    stat = os.fstat(fd)
    if (stat.st_size, stat.st_mtime_ns) != tuple(stamp):
        os.close(fd)
        raise ConfigError(f"Shard {path} changed after its checksum was verified; start the run again")
    return fd
