"""Reading one training run folder: ``config.yaml``, ``metrics.jsonl``, ``summary.json``, ``resumes.jsonl`` and, when
training kept them, the per-image predictions ``predictions/<split>.npz``.

Reports read run folders only (no checkpoints, no retraining). Fields added to the run folder
over time are optional here: :func:`require` turns a missing one into a one-line
:class:`~fbl.errors.ConfigError` that names the run folder and the field, so a figure that
needs it can be skipped with that message while the tables still work.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fbl.config import flatten
from fbl.errors import ConfigError
from fbl.predictions import Predictions, load_predictions

logger = logging.getLogger(__name__)

SUMMARY = "summary.json"
CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
RESUMES = "resumes.jsonl"

_MISSING = object()


@dataclass
class Run:
    """One finished run: its resolved config, one record per epoch, and its summary."""

    path: Path
    config: dict
    epochs: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    resumes: list[dict] = field(default_factory=list)

    @property
    def seed(self) -> Any:
        return self.config.get("seed")

    @property
    def last(self) -> dict:
        """Test metrics at the last epoch: the headline numbers."""
        return require(self, "last")

    def last_on(self, split: str) -> dict:
        """Metrics at the last epoch on an extra evaluation split (``summary.json``'s ``last_extra``)."""
        return require(self, f"last_extra.{split}")

    @property
    def selected(self) -> dict:
        """The selected epoch as ``{"epoch", "on", "test"}``: the epoch chosen on ``on`` and its test metrics.

        Newer runs write ``selected`` (chosen on a validation split when there is one); older runs
        only have ``best``, which was chosen on the test split.
        """
        chosen = self.summary.get("selected")
        if chosen is not None:
            return {"epoch": chosen.get("epoch"), "on": chosen.get("on", "val"), "test": require(self, "selected.test")}
        best = require(self, "best")
        return {"epoch": best.get("epoch"), "on": "test", "test": best}

    @property
    def class_counts(self) -> list[int]:
        return require(self, "class_counts")

    @property
    def reported_split(self) -> str:
        """The split the headline numbers are on (``test``; ``val`` for datasets without a test list)."""
        return self.summary.get("reported_on") or "test"

    def predictions(self, split: str | None = None) -> Predictions | None:
        """Per-image predictions at the last epoch on ``split`` (default the reported one); ``None`` for
        runs that did not keep them."""
        return load_predictions(self.path, split or self.reported_split)

    @property
    def provenance(self) -> dict | None:
        """How the run ran (``summary.json``'s ``provenance``); ``None`` for older runs."""
        return self.summary.get("provenance")


def require(run: Run, dotted: str) -> Any:
    """``run.summary`` at a dotted path (``"last.calibration"``), or a ConfigError naming run and field."""
    value: Any = run.summary
    for key in dotted.split("."):
        value = value.get(key, _MISSING) if isinstance(value, dict) else _MISSING
        if value is _MISSING or value is None:
            raise ConfigError(
                f"run {run.path}: {SUMMARY} has no '{dotted}' (a run folder from an older version of training)"
            )
    return value


def load_run(path: str | Path) -> Run:
    """Read the run folder at ``path``; a torn (unparsable) last line of ``metrics.jsonl`` is ignored."""
    path = Path(path)
    summary_path, config_path = path / SUMMARY, path / CONFIG
    if not summary_path.is_file():
        raise ConfigError(f"{path} is not a finished run folder: it has no {SUMMARY}")
    if not config_path.is_file():
        raise ConfigError(f"run {path} has no {CONFIG}")
    summary = _read_json(summary_path)
    try:
        config = yaml.safe_load(config_path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"run {path}: {CONFIG} is not valid YAML ({err.__class__.__name__})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"run {path}: {CONFIG} is not a mapping")
    if not isinstance(summary, dict):
        raise ConfigError(f"run {path}: {SUMMARY} is not a JSON object")
    config = flatten(config, f"run {path}: {CONFIG}")  # either layout; reports read options by their flat keys
    return Run(
        path=path,
        config=config,
        epochs=_read_jsonl(path / METRICS),
        summary=summary,
        resumes=_read_jsonl(path / RESUMES),
    )


def find_run_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """Run folders among ``paths``: each is a run folder or a folder searched recursively for them.

    A run folder is a folder holding ``summary.json``. The result is sorted within each given path
    and free of duplicates: a run folder reached twice (given twice, or also through a symbolic link)
    is one run, kept under the path it was first reached by, so no run is counted twice over seeds.
    """
    found: list[Path] = []
    seen: set[Path] = set()
    for given in map(Path, paths):
        if not given.exists():
            raise ConfigError(f"{given} does not exist")
        if (given / SUMMARY).is_file():
            candidates = [given]
        else:
            candidates = sorted(p.parent for p in given.rglob(SUMMARY))
            if not candidates:
                raise ConfigError(f"{given} holds no run folder (no {SUMMARY} found under it)")
        for candidate in candidates:
            if candidate.resolve() not in seen:
                seen.add(candidate.resolve())
                found.append(candidate)
    return found


def load_runs(paths: Iterable[str | Path]) -> list[Run]:
    """Every run folder found under ``paths`` (see :func:`find_run_dirs`), read."""
    return [load_run(p) for p in find_run_dirs(paths)]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path} is not valid JSON (line {err.lineno})") from None


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    lines = [(n, line) for n, line in enumerate(path.read_text().splitlines(), start=1) if line.strip()]
    records = []
    for i, (n, line) in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            # Training appends one line per epoch (per resume); a run killed mid-write leaves a torn last line.
            if i == len(lines) - 1:
                logger.warning("%s: ignoring the torn last line %d", path, n)
                break
            raise ConfigError(f"{path}: line {n} is not valid JSON") from None
    return records
