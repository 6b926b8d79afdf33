"""``fbl data check``: read every image of a dataset's splits before a long run, and say what is wrong."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch.utils.data import DataLoader, Dataset

from fbl.data.contract import LongTailDataset
from fbl.data.image_files import read_rgb
from fbl.data.workers import cap_workers
from fbl.errors import ConfigError


class _Probe(Dataset):
    """Decodes one image fully; returns ``None`` if it is readable, else ``(path, reason)``."""

    def __init__(self, paths: list[Path]):
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        try:
            read_rgb(self.paths[index])
        except ConfigError as exc:
            return str(self.paths[index]), str(exc)
        return None


def check_dataset(
    data: LongTailDataset, splits=None, workers: int = 4, progress: Callable = lambda it, **_: it
) -> dict:
    """Per split: image count and the unreadable images (path, reason).

    In-memory datasets (CIFAR, digits-lt) were fully read and validated when built; image-file
    datasets have every image of every split decoded here, in ``workers`` processes.
    """
    known = ["train", *data.eval_splits]
    names = known if splits is None else list(splits)
    unknown = [split for split in names if split not in known]
    if unknown:
        raise ConfigError(f"{data.name} has no split {', '.join(map(repr, unknown))}; it has: {', '.join(known)}")
    report = {}
    for split in names:
        entry = {"images": data.split_size(split), "bad": []}
        files = data.split_files(split)
        if files is not None:
            probe = _Probe(files)
            loader = DataLoader(probe, batch_size=None, num_workers=cap_workers(workers))
            entry["bad"] = [r for r in progress(loader, total=len(probe), desc=f"check {split}") if r is not None]
        report[split] = entry
    return report
