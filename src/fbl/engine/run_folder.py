"""The run folder: the one place that writes (and reads back) what a training run leaves behind.

| file | content |
| --- | --- |
| ``config.yaml`` | the fully resolved configuration |
| ``metrics.jsonl`` | one JSON object per epoch, appended as the epoch ends |
| ``summary.json`` | the last epoch (headline) and the selected epoch, labelled |
| ``checkpoints/last.pt``, ``best.pt`` | model, optimizer, epoch, config; atomic writes |
| ``tb/`` | TensorBoard events |

The trainer decides *what* to record; this class decides *where and how*, so the report code and
``--resume`` read the same format that training writes.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import yaml

from fbl.engine.checkpoint import save_checkpoint
from fbl.errors import ConfigError

logger = logging.getLogger(__name__)

#: Headline metrics written to TensorBoard and printed each epoch.
HEADLINE_KEYS = ("top1", "top5", "many", "medium", "few")


class RunFolder:
    """Reads and writes one run folder at ``path``."""

    def __init__(self, path: str | Path, writer: bool = True):
        self.path = Path(path)
        self.writes = writer  # in a distributed job only rank 0 writes; the others only read
        self._writer = None

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    def checkpoint_path(self, name: str = "last") -> Path:
        return self.path / "checkpoints" / f"{name}.pt"

    def holds_a_run(self) -> bool:
        """Whether the folder already has a run's results or checkpoints in it."""
        return self.summary_path.exists() or self.metrics_path.exists() or self.checkpoint_path().exists()

    def clear(self) -> None:
        """Remove a previous run's files (``--overwrite``), so two runs never mix in one folder."""
        if not self.writes:
            return
        import shutil

        for name in ("summary.json", "metrics.jsonl", "splits.json", "config.yaml"):
            (self.path / name).unlink(missing_ok=True)
        for folder in ("checkpoints", "tb"):
            shutil.rmtree(self.path / folder, ignore_errors=True)

    def open(self, config: dict, start_epoch: int) -> None:
        """Create the folder, write ``config.yaml``, drop metrics of epochs that will run again, open TensorBoard."""
        if not self.writes:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        self._truncate_metrics(start_epoch)
        from torch.utils.tensorboard import SummaryWriter  # imported late: it is slow to import

        self._writer = SummaryWriter(log_dir=str(self.path / "tb"), purge_step=start_epoch)

    def append_metrics(self, record: dict) -> None:
        """One epoch's record: a line in ``metrics.jsonl`` and scalars in TensorBoard."""
        if not self.writes:
            return
        with self.metrics_path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self._writer is not None:
            self._log_tensorboard(record)

    def save_checkpoint(self, state: dict, name: str = "last") -> None:
        if not self.writes:
            return
        save_checkpoint(state, self.checkpoint_path(name))

    def write_splits(self, indices: dict) -> None:
        """``splits.json``: positions of the training (and validation) images in their source."""
        if not self.writes:
            return
        (self.path / "splits.json").write_text(json.dumps(indices))

    def write_summary(self, summary: dict) -> None:
        if not self.writes:
            return
        self.summary_path.write_text(json.dumps(summary, indent=2))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def read_metrics(self) -> list[dict]:
        """Every complete record of ``metrics.jsonl``, in order."""
        if not self.metrics_path.exists():
            return []
        lines = [line for line in self.metrics_path.read_text().splitlines() if line.strip()]
        records = []
        for number, line in enumerate(lines, 1):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                if number < len(lines):
                    raise ConfigError(f"{self.metrics_path}:{number} is not a JSON record") from None
                # A process killed mid-write leaves a torn last line; the epoch it described runs again.
                logger.warning("dropping the torn last line of %s", self.metrics_path)
        return records

    def _truncate_metrics(self, start_epoch: int) -> None:
        """On resume, drop records of epochs that will be run again (written after the last checkpoint)."""
        if not self.metrics_path.exists():
            return
        kept = [json.dumps(r) for r in self.read_metrics() if r["epoch"] < start_epoch]
        self.metrics_path.write_text("".join(line + "\n" for line in kept))

    def _log_tensorboard(self, record: dict) -> None:
        epoch = record["epoch"]
        for key in ("lr", "alpha", "train_loss", "train_acc", "train_images_per_s"):
            if record.get(key) is not None:
                self._writer.add_scalar(key, record[key], epoch)
        for split in ("eval", "val"):
            for key in HEADLINE_KEYS:
                value = record.get(split, {}).get(key)
                if value is not None:
                    self._writer.add_scalar(f"{split}/{key}", value, epoch)
        self._writer.flush()
