"""Images/s per core of the ImageNet-style training input: decode + RandomResizedCrop(224) + flip + normalise.

    .venv/bin/python benchmarks/decode.py --images 300 --rounds 3

One process, one thread, no DataLoader: each variant reads and augments every image of a generated
set (500x375 JPEGs, quality 90, smooth content plus noise, like photographs), seeded per image as
the loaders seed it, variants alternating round-robin; the table gives the median images/s.

* ``pil``: today's path: PIL decode, ``to_rgb``, RandomResizedCrop, flip, ToTensor, Normalize.
* ``pil-draft``: the crop box is drawn first (from the header's size), then Pillow's reduced DCT
  decode (``draft``) at the largest scale 1/k that keeps the box at least 224 pixels on both sides,
  and the box (divided by k) is resized from that. A fixed ``draft("RGB", (224, 224))`` would have
  to serve the smallest crops too (8% of the area: a 106x141 box of a 500x375 image), which a
  reduced decode would give fewer source pixels than they have now; and for 500x375 images no box
  is 448 pixels on both sides, so k is always 1: this is ``pil`` plus a header read.
* ``tensor``: ``--fast-decode``: libjpeg-turbo via ``torchvision.io.decode_jpeg`` into a uint8 tensor,
  the same crop box and flip, torch's antialiased bilinear resize on uint8.
* ``shards-jpg``, ``shards-jpg-fast``, ``shards-npy-fast``: the same set exported with ``fbl data
  export`` (short side 256; JPEG quality 95 or raw ``.npy``), read from the tar shards with PIL or
  ``--fast-decode``.

Pixel differences are against ``pil`` in levels of 255 (max and mean over every value of the first
50 images): the training transform on the same draws for the decoding variants; for the shard
variants, whose crop offsets are drawn on a smaller grid (same distribution, other boxes),
evaluation's Resize(256) + CenterCrop(224) of the stored image against that of the original.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T

from fbl.data.image_files import (
    CROP_RATIO,
    CROP_SCALE,
    IMAGENET_STD,
    ImageFiles,
    imagenet_eval_transform,
    imagenet_train_transform,
    normalize_uint8,
    open_regular_file,
)
from fbl.data.image_list_data import ImageListData
from fbl.data.shard_data import ShardImages
from fbl.data.shards import export_shards, verify_shards
from fbl.data.split_list import LabelledFiles

CROP = 224


def write_photos(root: Path, count: int, size=(500, 375)) -> list[str]:
    """``count`` JPEGs: upsampled random colours (smooth) plus Gaussian noise (sigma 8), quality 90."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        small = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize(size, Image.BILINEAR)
        pixels = np.asarray(small, dtype=np.float32) + rng.normal(0, 8, (size[1], size[0], 3))
        rel = f"class_{i % 10}/{i}.jpg"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(root / rel, quality=90)
        paths.append(rel)
    return paths


class DraftCrop:
    """``pil-draft``: draw the box on the header's size, decode at 1/k (``draft``), resize the box / k."""

    def __init__(self, root: Path, paths: list[str]):
        self.root, self.paths, self.reduced, self.reads = root, paths, 0, 0

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        self.reads += 1
        with open_regular_file(self.root / self.paths[index]) as handle, Image.open(handle) as image:
            top, left, height, width = T.RandomResizedCrop.get_params(image, list(CROP_SCALE), list(CROP_RATIO))
            k = 1
            while k < 8 and min(height, width) // (2 * k) >= CROP:
                k *= 2
            if k > 1:
                image.draft("RGB", (image.size[0] // k, image.size[1] // k))
                self.reduced += 1
            box = (left / k, top / k, (left + width) / k, (top + height) / k)
            rgb = image.convert("RGB")
        if k == 1:  # exactly torchvision's crop then resize
            out = rgb.crop((left, top, left + width, top + height)).resize((CROP, CROP), Image.BILINEAR)
        else:
            out = rgb.resize((CROP, CROP), Image.BILINEAR, box=box)
        if torch.rand(1) < 0.5:
            out = out.transpose(Image.FLIP_LEFT_RIGHT)
        return normalize_uint8(torch.from_numpy(np.array(out)).permute(2, 0, 1)), 0


def build_variants(root: Path, paths: list[str], shards: dict[str, Path]) -> dict:
    labels = [0] * len(paths)
    variants = {
        "pil": ImageFiles(root, paths, labels, imagenet_train_transform(CROP)),
        "pil-draft": DraftCrop(root, paths),
        "tensor": ImageFiles(root, paths, labels, imagenet_train_transform(CROP, fast=True), fast_decode=True),
    }
    for image_format, folder in shards.items():
        index = json.loads((folder / "shards.json").read_text())
        stamps, entry = verify_shards(folder, index), index["splits"]["train"]["shards"]
        fast = [True] if image_format == "npy" else [False, True]
        for f in fast:
            transform = imagenet_train_transform(CROP, fast=f)
            name = f"shards-{image_format}" + ("-fast" if f else "")
            variants[name] = ShardImages(folder, entry, image_format, stamps, transform, fast_decode=f)
    return variants


def run_once(dataset) -> float:
    started = time.perf_counter()
    for index in range(len(dataset)):
        torch.manual_seed(index)  # as the loaders seed each sample
        dataset[index]
    return len(dataset) / (time.perf_counter() - started)


def level_differences(variants: dict, count: int) -> dict:
    """Max and mean |difference| from ``pil`` in levels of 255 over the first ``count`` images.

    Decoding variants: the training transform on the same draws. Shard variants draw their crop
    offsets on a smaller grid (the same distribution, other boxes), so for them it is evaluation's
    Resize(256) + CenterCrop(224) of the stored image against that of the original: the pre-resizing's cost.
    """
    level = torch.tensor(IMAGENET_STD).view(3, 1, 1) * 255
    evaluate, out = imagenet_eval_transform(CROP), {}
    for name, dataset in variants.items():
        diffs = []
        for index in range(min(count, len(dataset))):
            torch.manual_seed(index)
            if name.startswith("shards"):
                stored = dataset.read(index)
                stored = Image.fromarray(stored.permute(1, 2, 0).numpy()) if torch.is_tensor(stored) else stored
                got, reference = evaluate(stored), evaluate(variants["pil"].read(index))
            else:
                got = dataset[index][0]
                torch.manual_seed(index)
                reference = variants["pil"][index][0]
            diffs.append(((got - reference) * level).abs())  # normalised units -> levels
        every = torch.stack(diffs)
        out[name] = (every.max().item(), every.mean().item())
    return out


def export_sets(root: Path, paths: list[str], into: Path) -> dict[str, Path]:
    data = ImageListData("folder", ["c"], [len(paths)], root, {"train": LabelledFiles(paths, np.zeros(len(paths)))})
    sets = {}
    for image_format in ("jpg", "npy"):
        sets[image_format] = into / image_format
        export_shards(data, sets[image_format], short_side=256, image_format=image_format, workers=0)
    return sets


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "photos"
        paths = write_photos(root, args.images)
        variants = build_variants(root, paths, export_sets(root, paths, Path(tmp) / "shards"))
        rates = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, dataset in variants.items():
                rates[name].append(run_once(dataset))
        diffs = level_differences(variants, 50)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"{args.images} JPEGs 500x375 q90; {args.rounds} rounds; 1 thread; {cpu}; {os.cpu_count()} CPUs; "
          f"Python {platform.python_version()}, torch {torch.__version__}; "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    base = statistics.median(rates["pil"])
    print("| variant | images/s per core (median) | x pil | max diff (levels) | mean diff (levels) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, values in rates.items():
        rate = statistics.median(values)
        print(f"| {name} | {rate:.0f} | {rate / base:.2f} | {diffs[name][0]:.1f} | {diffs[name][1]:.3f} |")
    draft = variants["pil-draft"]
    print(f"pil-draft: {draft.reduced} of {draft.reads} decodes could be reduced (box >= {2 * CROP} px both sides)")


if __name__ == "__main__":
    main()
