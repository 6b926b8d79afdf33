"""Keep a finished run: its results and its weights, without what only a resume needs (``fbl record``).

A run folder holds two checkpoints of model *and* optimizer state (about 4 MB each for a ResNet-32)
and TensorBoard events. To keep a run beside a paper's numbers (``results/``) the weights matter, so
that anything recorded can be evaluated again with a metric invented later; the optimizer's momentum
and the events do not. The kept folder has every result file of the run (config, metrics, resumes,
splits, summary, per-image predictions, test-time aggregation tables) and ``checkpoints/last.pt`` and
``best.pt`` with the model's weights bit for bit and ``optimizer: None`` — ``fbl eval`` and ``fbl report``
read it like the run itself, ``--stage2-from`` takes it, and ``--resume`` refuses it in one line.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from fbl.aggregation_record import FOLDER as AGGREGATIONS
from fbl.engine.checkpoint import load_checkpoint, save_checkpoint, weights_only
from fbl.engine.run_folder import CONFIG, METRICS, RESUMES, SPLITS, SUMMARY
from fbl.errors import ConfigError
from fbl.manifest import Manifest
from fbl.predictions import FOLDER as PREDICTIONS

#: The run's result files, copied as they are.
RESULT_FILES = (CONFIG, RESUMES, METRICS, SPLITS, SUMMARY)
CHECKPOINTS = ("last", "best")


def record_run(source: str | Path, dest: str | Path) -> list[str]:
    """Copy the finished run ``source`` to the new folder ``dest`` (see the module docstring).

    Returns the files written, relative to ``dest``. Raises a one-line ConfigError for a run that has not
    finished (no ``summary.json``) or a ``dest`` that exists and is not empty.
    """
    source, dest = Path(source), Path(dest)
    if not (source / SUMMARY).is_file() or not (source / "checkpoints" / "last.pt").is_file():
        raise ConfigError(f"{source} is not a finished run (it needs {SUMMARY} and checkpoints/last.pt)")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ConfigError(f"{dest} already exists and is not an empty folder; record into a new folder")
    files = [name for name in RESULT_FILES if (source / name).is_file()]
    for folder in (PREDICTIONS, AGGREGATIONS):
        files += sorted(p.relative_to(source).as_posix() for p in (source / folder).glob("*") if p.is_file())
    checkpoints = [f"checkpoints/{name}.pt" for name in CHECKPOINTS]
    checkpoints = [name for name in checkpoints if (source / name).is_file()]
    manifest = Manifest(dest)
    (dest / "checkpoints").mkdir(parents=True, exist_ok=True)
    manifest.record(*files, *checkpoints)
    for name in files:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / name, dest / name)
    for name in checkpoints:
        save_checkpoint(weights_only(load_checkpoint(source / name)), dest / name)
    return files + checkpoints
