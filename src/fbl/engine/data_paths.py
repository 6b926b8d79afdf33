"""Data folders recorded as absolute paths, so a run means the same data from any working directory.

``--data-dir ./data`` is relative to where ``fbl train`` was started; recorded verbatim in
``config.yaml`` and the checkpoint, ``fbl eval`` or ``--resume`` started from another folder would
find another dataset, or none. A training run therefore records the absolute paths; comparing two
configurations (``fbl compare`` deciding whether a finished run is the one asked for) normalises both
sides the same way, so ``./data`` and ``/home/me/data`` are the same folder when run from ``/home/me``.
"""

from __future__ import annotations

import os

from fbl.config import TrainConfig

#: Options naming a folder the data is read from.
DATA_PATH_KEYS = ("data_dir", "img_path")


def absolute_path(value: str | None) -> str | None:
    """``value`` as an absolute path against the current folder (``~`` expanded); ``None`` stays ``None``.

    Links are kept as they are (no ``realpath``): a data folder reached through a link stays recorded by it.
    """
    if value is None or value == "":
        return value
    return os.path.abspath(os.path.expanduser(str(value)))


def with_absolute_data_paths(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with ``data_dir`` and ``img_path`` absolute (see :func:`absolute_path`)."""
    flat = cfg.flat()
    return cfg.replace(**{key: absolute_path(flat[key]) for key in DATA_PATH_KEYS})
