"""SADE's test-agnostic results of a run, and their file in the run folder: ``test_time_aggregation/<split>.json``.

``fbl eval RUN --test-time-aggregation`` takes minutes (ten forward passes of the ensemble per image), so
its table is kept beside the run's other results: ``fbl record`` copies it and ``fbl report`` shows it.
The file maps each test prior to ``{"images", "weights", "aggregated", "averaged"}``
(:func:`fbl.engine.test_time_aggregation.aggregate_under_priors`).
"""

from __future__ import annotations

import json
from pathlib import Path

from fbl.atomic_files import write_atomic
from fbl.errors import ConfigError
from fbl.manifest import Manifest

FOLDER = "test_time_aggregation"


def aggregation_path(run_dir: str | Path, split: str) -> Path:
    return Path(run_dir) / FOLDER / f"{split}.json"


def save_aggregation(run_dir: str | Path, split: str, table: dict) -> Path:
    """Write ``table`` for ``split`` in ``run_dir``, whole or not at all (listed in the run's marker first, so
    ``--overwrite`` removes it with the run's other files)."""
    path = aggregation_path(run_dir, split)
    Manifest(run_dir).record_if_marked(path.relative_to(run_dir).as_posix())
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, json.dumps(table, indent=1) + "\n", "the test-time aggregation table")


def load_aggregation(run_dir: str | Path, split: str) -> dict | None:
    """The table saved for ``split`` in ``run_dir``; ``None`` when there is none."""
    path = aggregation_path(run_dir, split)
    if not path.is_file():
        return None
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path} is not readable JSON ({err.__class__.__name__}); run fbl eval again") from None
    if not isinstance(table, dict):
        raise ConfigError(f"{path} is not a JSON object; run fbl eval again")
    return table
