"""Pack unfinished CIFAR-10-LT protocol runs and the images they train on for a machine that takes 64 MiB.

    python analysis/device_queue/pack.py SNAPSHOT DEST

``SNAPSHOT`` is what ``analysis/snapshot_unfinished_runs.py`` writes (the runs to continue; it may be
empty: new runs only). ``DEST`` gets ``runs/<run>.tar.gz`` for each of them, the long-tailed training images of
CIFAR-10-LT (lossless, as one PNG), the test images as ``../shared`` holds them, the labels, and
``unpack.py`` with the shared ``materialize.py`` it calls. A whole CIFAR-10 is about 120 MB of PNG;
the 12,406 training images of the imbalance-100 subset are 26 MB, so only they travel. The other
37,594 training images are the lossless estimate's, read at the end of a run only: they are zeros on the
device, so the summary made there is discarded (``run.sh`` leaves it behind) and made again here by
``--resume``, which re-summarises a finished run.
"""

from __future__ import annotations

import argparse
import json
import pickle
import shutil
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cifar10"
#: From ``../shared/data/cifar10``: labels of the 51,000 lossless images, the 1,000 lossless test images, the JPEGs.
SHARED_FILES = ("labels.json", "sprite_50.png", "test_jpeg.tar.gz", "materialize.py")
#: A preset of CIFAR-10-LT, imbalance 100, subset 0: its training images are every protocol run's (``splits.json``).
TRAIN_SPLIT_OF = "cifar10-lt-fbl-experts"


def long_tail_indices(data_dir: Path, preset: str = TRAIN_SPLIT_OF) -> np.ndarray:
    """The sorted training indices of ``preset``'s CIFAR-10-LT (no validation split), as fbl builds them."""
    from fbl.config import resolve_config
    from fbl.engine.experiment import build_data

    cfg = resolve_config(preset, None, {"data_dir": str(data_dir), "val_split": "none"})
    return np.asarray(sorted(build_data(cfg.data).split_indices()["train"]), dtype=np.int64)


def pack(snapshot: Path, dest: Path, data_dir: Path, shared: Path = SHARED) -> np.ndarray:
    dest.mkdir(parents=True, exist_ok=True)
    indices = long_tail_indices(data_dir)
    (dest / "runs").mkdir(exist_ok=True)
    for run in sorted(p.parent for p in snapshot.glob("*/splits.json")):
        if sorted(json.loads((run / "splits.json").read_text())["train"]) != indices.tolist():
            raise SystemExit(f"{run} trains on other images than CIFAR-10-LT's (imbalance 100): not packed")
        with tarfile.open(dest / "runs" / f"{run.name}.tar.gz", "w:gz") as tar:
            tar.add(run, arcname=run.name)
    batches = data_dir / "cifar-10-batches-py"
    rows = np.concatenate(
        [pickle.load(open(batches / f"data_batch_{i}", "rb"), encoding="latin1")["data"] for i in range(1, 6)]
    )
    tall = rows[indices].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).reshape(-1, 32, 3)
    Image.fromarray(tall).save(dest / "train_lt.png", optimize=True)
    np.save(dest / "train_lt_index.npy", indices)
    for name in SHARED_FILES:
        shutil.copyfile(shared / name, dest / name)
    shutil.copyfile(Path(__file__).with_name("unpack.py"), dest / "unpack.py")
    return indices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("snapshot", type=Path, help="analysis/snapshot_unfinished_runs.py's output")
    parser.add_argument("dest", type=Path)
    parser.add_argument("--data-dir", type=Path, default=Path("/work/data"), help="holds cifar-10-batches-py")
    args = parser.parse_args()
    indices = pack(args.snapshot, args.dest, args.data_dir)
    size = sum(p.stat().st_size for p in args.dest.rglob("*") if p.is_file()) / 2**20
    print(f"{args.dest}: {len(indices)} training images, {size:.1f} MiB")


if __name__ == "__main__":
    main()
