"""Decode + augment throughput of the image-file datasets (ImageNet-LT / iNaturalist / Places-LT path).

    .venv/bin/python benchmarks/image_pipeline.py --images 2000 --workers 0,1,2

Generates a JPEG tree in a temporary folder (photographs' size: 500x375, quality 90, random
smooth content), then times the loader ``fbl train`` uses for these datasets — ImageFiles +
RandomResizedCrop(224) + flip + ToTensor + Normalize in DataLoader workers, per-sample seeding — for
each worker count, side by side in one process. Prints images/s and images/s per worker; asserts
nothing. On a GPU machine the question is whether the workers keep up with the accelerator at
batch 512; multiply the per-worker rate by the workers you have.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fbl.data.image_files import ImageFiles, imagenet_train_transform
from fbl.data.image_list_data import ImageBatchLoader


def write_tree(root: Path, count: int, size=(500, 375)) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        # Smooth random content (upsampled noise) compresses like a photograph, not like static.
        small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize(size, Image.BILINEAR)
        rel = f"class_{i % 10}/{i}.jpg"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        image.save(root / rel, quality=90)
        paths.append(rel)
    return paths


def images_per_second(loader: ImageBatchLoader, epochs: int) -> float:
    rates = []
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        seen, started = 0, time.perf_counter()
        for images, _ in loader:
            seen += images.shape[0]
        rates.append(seen / (time.perf_counter() - started))
    return max(rates)  # the first epoch also starts the workers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--workers", default="0,1,2")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)  # decoding runs in the workers; the main process only collates
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        paths = write_tree(root, args.images)
        print(f"{args.images} JPEGs of 500x375 written in {time.perf_counter() - started:.1f} s; "
              f"batch {args.batch_size}, RandomResizedCrop(224) + flip + normalise")  # fmt: skip
        print("| workers | images/s | images/s per worker |\n| ---: | ---: | ---: |")
        for workers in (int(w) for w in args.workers.split(",")):
            files = ImageFiles(root, paths, [0] * len(paths), imagenet_train_transform(224))
            loader = ImageBatchLoader(
                files, args.batch_size, seed=0, train=True, sampler=None, workers=workers, device="cpu"
            )
            rate = images_per_second(loader, args.epochs)
            print(f"| {workers} | {rate:.0f} | {rate / max(workers, 1):.0f} |")


if __name__ == "__main__":
    main()
