"""Input-pipeline throughput: the in-memory tensor loader vs torchvision's per-image transforms.

    .venv/bin/python ../shared/data/cifar10/materialize.py /tmp/cifar
    .venv/bin/python benchmarks/input_pipeline.py --data-dir /tmp/cifar

Both produce the same thing — CIFAR-10-LT (ratio 100) batches of 64, randomly cropped with 4-pixel
zero padding, flipped and normalised — one epoch each, measured side by side in one process on
the CPU. Prints images per second and the ratio; asserts nothing.
"""

from __future__ import annotations

import argparse
import time

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from fbl.data import TensorBatchLoader, build_dataset


class PerImageDataset(Dataset):
    """The usual research-code path: a PIL image per item, transformed one at a time."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, transform):
        self.images = images.permute(0, 2, 3, 1).numpy()  # N, H, W, C as PIL expects
        self.targets = targets.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.images[i])), self.targets[i]


def images_per_second(batches, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        seen, started = 0, time.perf_counter()
        for x, _y in batches():
            seen += x.shape[0]
        best = min(best, time.perf_counter() - started)
    return seen / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    args = parser.parse_args()
    torch.set_num_threads(2)
    data = build_dataset("cifar10", data_dir=args.data_dir, imb_factor=0.01)
    spec = data.augment

    tensor_loader = TensorBatchLoader(data.train_images, data.train_targets, 64, augment=spec, train=True, seed=0)

    def tensor_epoch():
        tensor_loader.set_epoch(0)
        return iter(tensor_loader)

    results = {"tensor loader (this package)": images_per_second(tensor_epoch, args.repeats)}
    transform = transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(spec.mean, spec.std),
        ]
    )
    dataset = PerImageDataset(data.train_images, data.train_targets, transform)
    for workers in args.workers:
        loader = DataLoader(dataset, batch_size=64, shuffle=True, num_workers=workers)
        results[f"torchvision per-image, {workers} workers"] = images_per_second(
            lambda loader=loader: iter(loader), args.repeats
        )

    baseline = results["tensor loader (this package)"]
    print(f"CIFAR-10-LT train epoch ({len(dataset)} images, batch 64), best of {args.repeats}")
    for name, rate in results.items():
        print(
            f"{name:40} {rate:10.0f} images/s   {baseline / rate:6.1f}x slower than the tensor loader"
            if rate != baseline
            else f"{name:40} {rate:10.0f} images/s"
        )


if __name__ == "__main__":
    main()
