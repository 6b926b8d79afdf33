"""``fbl data check``: read every image of a dataset's splits before a long run, and say what is wrong."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch.utils.data import DataLoader, Dataset

from fbl.data.image_files import read_rgb
from fbl.errors import ConfigError


class _Probe(Dataset):
    """Decodes one image fully; returns ``None`` if it is readable, else ``(path, reason)``."""

    def __init__(self, root: Path, paths: list[str]):
        self.root, self.paths = root, paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        path = self.root / self.paths[index]
        try:
            read_rgb(path)
        except ConfigError as exc:
            return str(path), str(exc)
        return None


def check_dataset(data, splits=None, workers: int = 4, progress: Callable = lambda it, **_: it) -> dict:
    """Per split: image count, class count and the unreadable images (path, reason).

    In-memory datasets (CIFAR, digits-lt) were fully read and validated when built; image-file
    datasets have every image of every split decoded here, in ``workers`` processes.
    """
    names = ["train", *data.eval_splits] if splits is None else list(splits)
    report = {}
    for split in names:
        entry = {"images": data.split_size(split), "bad": []}
        files = getattr(data, "splits", {}).get(split)
        if files is not None:
            probe = _Probe(data.root, files.paths)
            loader = DataLoader(probe, batch_size=None, num_workers=workers)
            entry["bad"] = [r for r in progress(loader, total=len(probe), desc=f"check {split}") if r is not None]
        report[split] = entry
    return report
