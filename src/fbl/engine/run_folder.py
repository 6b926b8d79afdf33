"""The run folder: the one place that writes (and reads back) what a training run leaves behind.

| file | content |
| --- | --- |
| ``config.yaml`` | the fully resolved configuration the run was started with; never rewritten by a resume |
| ``resumes.jsonl`` | one JSON object per resume: time, the epoch it resumed at, the config fields it changed |
| ``metrics.jsonl`` | one JSON object per epoch, appended as the epoch ends |
| ``splits.json`` | positions of the training (and validation) images in their source |
| ``summary.json`` | the last epoch (headline) and the selected epoch, labelled |
| ``checkpoints/last.pt``, ``best.pt`` | model, optimizer, epoch, config |
| ``tb/`` | TensorBoard events |
| ``.fbl-run`` | the list of files above that fbl wrote (:class:`~fbl.manifest.Manifest`) |

Every file is written through :mod:`fbl.atomic_files` (temp file, fsync, rename), so a full disk
or a kill leaves the previous file or the new one, never a torn one; ``metrics.jsonl`` and
``resumes.jsonl`` are appended to, and a torn last line (a kill mid-append) is dropped on reading.

The caller checks first and writes later: :meth:`RunFolder.check_new_run` and
:meth:`RunFolder.check_resumable` write nothing and raise a one-line ConfigError for a folder that
cannot be written or that holds a file named like one of fbl's that fbl did not write (a user's
own ``config.yaml``); :meth:`RunFolder.open_new` and :meth:`RunFolder.open_resumed` repeat the
checks and only then write. ``--overwrite`` (:meth:`RunFolder.clear`) removes the files the
manifest lists and nothing else. The trainer decides *what* to record; this class decides
*where and how*, so the report code and ``--resume`` read the same format that training writes.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path

import yaml

from fbl.atomic_files import append_line, check_writable_folder, temporary_prefix, write_atomic
from fbl.config import flatten
from fbl.engine.checkpoint import save_checkpoint
from fbl.errors import ConfigError
from fbl.manifest import RUN_MARKER, Manifest
from fbl.predictions import save_predictions

logger = logging.getLogger(__name__)

#: Headline metrics written to TensorBoard and printed each epoch.
HEADLINE_KEYS = ("top1", "top5", "many", "medium", "few")

CONFIG, RESUMES, METRICS = "config.yaml", "resumes.jsonl", "metrics.jsonl"
SPLITS, SUMMARY = "splits.json", "summary.json"
#: Every file name fbl writes in a run folder, relative to it (TensorBoard's are matched by EVENTS_PATTERN).
FBL_FILES = (CONFIG, RESUMES, METRICS, SPLITS, SUMMARY, "checkpoints/last.pt", "checkpoints/best.pt")
EVENTS_PATTERN = "events.out.tfevents.*"
SUBFOLDERS = ("checkpoints", "tb", "predictions")


class RunFolder:
    """Reads and writes one run folder at ``path``."""

    def __init__(self, path: str | Path, writer: bool = True):
        self.path = Path(path)
        self.writes = writer  # in a distributed job only rank 0 writes; the others only read
        self._writer = None
        self._manifest = Manifest(self.path, RUN_MARKER, "run folder")

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    @property
    def resumes_path(self) -> Path:
        return self.path / RESUMES

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS

    @property
    def summary_path(self) -> Path:
        return self.path / SUMMARY

    def checkpoint_path(self, name: str = "last") -> Path:
        return self.path / "checkpoints" / f"{name}.pt"

    # ---- what the folder holds (reads only) -------------------------------------------------------

    def holds_a_run(self) -> bool:
        """Whether the folder already has a run's results or checkpoints in it."""
        return self.summary_path.exists() or self.metrics_path.exists() or self.checkpoint_path().exists()

    def written_by_fbl(self) -> bool:
        """Whether fbl wrote this folder: it has the marker, or (folders from before the marker) holds a run."""
        return self._manifest.exists() or self.holds_a_run()

    def fbl_named_files(self) -> list[str]:
        """Existing files (relative paths) named like one fbl writes, whoever wrote them."""
        named = [name for name in FBL_FILES if (self.path / name).is_file()]
        return named + sorted(self._event_files())

    def foreign_files(self) -> list[str]:
        """Files named like fbl's that fbl did not write: a run here would overwrite or mix with them."""
        owned = self._owned()
        return [name for name in self.fbl_named_files() if name not in owned]

    def _owned(self) -> set[str]:
        if self._manifest.exists():
            return self._manifest.files()
        # A run folder written before the marker existed: every fbl-named file in it is taken as fbl's.
        return set(self.fbl_named_files()) if self.holds_a_run() else set()

    def _event_files(self) -> set[str]:
        tb = self.path / "tb"
        return {f"tb/{p.name}" for p in tb.glob(EVENTS_PATTERN) if p.is_file()} if tb.is_dir() else set()

    # ---- checks: all of them before anything is written --------------------------------------------

    def check_new_run(self, overwrite: bool = False) -> None:
        """Raise a one-line ConfigError unless a new run may start here; writes nothing.

        Refused: a path that is a file, lies under a file or is read-only; a folder holding a file
        named like fbl's that fbl did not write (with or without ``overwrite``); a folder that
        holds a run, unless ``overwrite``.
        """
        self._check_writable()
        self._refuse_foreign_files()
        if self.holds_a_run() and not overwrite:
            raise ConfigError(
                f"{self.path} already holds a run; continue it with --resume {self.path}, "
                "pick another --out, or pass --overwrite to replace it"
            )

    def check_resumable(self) -> None:
        """Raise a one-line ConfigError unless the run here can be resumed (written to); writes nothing."""
        if not self.path.is_dir():
            raise ConfigError(f"cannot resume in {self.path}: it is not a folder")
        self._check_writable()
        self._refuse_foreign_files()

    def _check_writable(self) -> None:
        check_writable_folder(self.path, "run folder")
        for name in SUBFOLDERS:
            if (self.path / name).exists() or (self.path / name).is_symlink():
                check_writable_folder(self.path / name, f"{name} folder of the run")

    def _refuse_foreign_files(self) -> None:
        foreign = self.foreign_files()
        if foreign:
            more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
            raise ConfigError(
                f"{self.path / foreign[0]}{more} was not written by fbl: a run in {self.path} would overwrite it; "
                "move it away or pick another --out"
            )

    # ---- opening the folder for writing ---------------------------------------------------------------

    def open_new(self, config: dict, overwrite: bool = False) -> None:
        """Start a new run: check, remove fbl's files of an earlier run, write ``config.yaml``, open TensorBoard."""
        if not self.writes:
            return
        self.check_new_run(overwrite)
        if self.written_by_fbl():
            self.clear()  # a previous run (--overwrite), or fbl's leftovers of one killed before its first epoch
        self._make_folder()
        self._manifest.record(CONFIG)
        write_atomic(self.config_path, _yaml(config))
        self._open_tensorboard(purge_step=0)

    def open_resumed(self, config: dict, start_epoch: int) -> dict:
        """Continue the run at ``start_epoch``; returns the record appended to ``resumes.jsonl``.

        ``config.yaml`` (how the run was started) is left as it is; the fields of ``config`` that
        differ from it (and from earlier resumes) are recorded in the resume's record instead.
        """
        if not self.writes:
            return {}
        self.check_resumable()
        record = self._resume_record(config, start_epoch)  # reads config.yaml: a damaged one stops here
        self._adopt_files_of_an_older_fbl()
        if not self.config_path.is_file():  # lost: what the run continues with is the best record left
            logger.warning("%s has no %s; writing the resumed run's config", self.path, CONFIG)
            self._manifest.record(CONFIG)
            write_atomic(self.config_path, _yaml(config))
        self._truncate_metrics(start_epoch)
        self._open_tensorboard(purge_step=start_epoch)
        self._append_resume(record)
        return record

    def _make_folder(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"could not create the run folder {self.path}: {exc.strerror or exc}") from exc

    def _adopt_files_of_an_older_fbl(self) -> None:
        """A run folder from before the marker: list its fbl-named files, so ``--overwrite`` can remove them later."""
        if not self._manifest.exists() and self.holds_a_run():
            self._manifest.record(*self._owned())

    def _open_tensorboard(self, purge_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter  # imported late: it is slow to import

        tb = self.path / "tb"
        before = self._event_files()
        try:
            self._writer = SummaryWriter(log_dir=str(tb), purge_step=purge_step)
        except OSError as exc:
            raise ConfigError(f"could not write TensorBoard events in {tb}: {exc.strerror or exc}") from exc
        # The event file's name is TensorBoard's choice (time, host, pid): listed once it exists.
        self._manifest.record(*sorted(self._event_files() - before))

    # ---- removing a run --------------------------------------------------------------------------

    def clear(self) -> None:
        """Remove fbl's files of a previous run (``--overwrite``), and nothing else.

        Removed: the files the manifest lists (or, in a run folder from before the manifest, the
        files named like fbl's), fbl's temporary files, ``checkpoints/`` and ``tb/`` once empty,
        and the marker. A user's other files, in the folder or in its subfolders, stay.
        """
        if not self.writes:
            return
        owned = self._owned()
        for relative in sorted(owned):
            _remove(self.path / relative)
        for relative in {*owned, *FBL_FILES, RUN_MARKER}:
            target = self.path / relative
            if target.parent.is_dir():
                for leftover in target.parent.glob(f"{temporary_prefix(target.name)}*.tmp"):
                    _remove(leftover)
        for name in SUBFOLDERS:
            try:
                (self.path / name).rmdir()
            except OSError:
                pass  # not there, or holds a user's files
        self._manifest.remove()

    # ---- writing during the run ----------------------------------------------------------------------

    def append_metrics(self, record: dict) -> None:
        """One epoch's record: a line in ``metrics.jsonl`` and scalars in TensorBoard."""
        if not self.writes:
            return
        self._manifest.record(METRICS)
        append_line(self.metrics_path, json.dumps(record))
        if self._writer is not None:
            self._log_tensorboard(record)

    def save_checkpoint(self, state: dict, name: str = "last") -> None:
        if not self.writes:
            return
        self._manifest.record(f"checkpoints/{name}.pt")
        save_checkpoint(state, self.checkpoint_path(name))

    def write_splits(self, indices: dict) -> None:
        """``splits.json``: positions of the training (and validation) images; not rewritten when unchanged."""
        if not self.writes:
            return
        text = json.dumps(indices)
        path = self.path / SPLITS
        if self._manifest.owns(SPLITS) and path.is_file() and path.read_text() == text:
            return
        self._manifest.record(SPLITS)
        write_atomic(path, text)

    def write_predictions(self, split: str, predictions) -> None:
        """``predictions/<split>.npz``: every image's label and prediction at the last epoch (paired tests)."""
        if not self.writes:
            return
        self._manifest.record(f"predictions/{split}.npz")
        save_predictions(self.path, split, predictions)

    def write_summary(self, summary: dict) -> None:
        if not self.writes:
            return
        self._manifest.record(SUMMARY)
        write_atomic(self.summary_path, json.dumps(summary, indent=2))

    def close(self) -> None:
        """Flush and close TensorBoard; a failed final write (disk full) is one ConfigError line."""
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.close()
            except OSError as exc:
                raise ConfigError(
                    f"could not write TensorBoard events in {self.path / 'tb'}: {exc.strerror or exc}"
                ) from exc

    # ---- reading back -------------------------------------------------------------------------------

    def read_metrics(self) -> list[dict]:
        """Every complete record of ``metrics.jsonl``, in order."""
        return _read_jsonl(self.metrics_path)

    def read_resumes(self) -> list[dict]:
        """Every complete record of ``resumes.jsonl``, oldest first."""
        return _read_jsonl(self.resumes_path)

    def read_config(self) -> dict:
        """``config.yaml``: the configuration the run was started with."""
        try:
            config = yaml.safe_load(self.config_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"could not read {self.config_path} ({type(exc).__name__})") from None
        if not isinstance(config, dict):
            raise ConfigError(f"{self.config_path} is not a mapping")
        return config

    def effective_config(self) -> dict:
        """``config.yaml`` with the changes of every resume applied, by flat option key: what the run's
        last part ran with."""
        config = flatten(self.read_config(), str(self.config_path))
        for record in self.read_resumes():
            config.update({name: change["to"] for name, change in record.get("changed", {}).items()})
        return config

    # ---- helpers ------------------------------------------------------------------------------------

    def _resume_record(self, config: dict, start_epoch: int) -> dict:
        config = flatten(json.loads(json.dumps(config)))  # the types the record holds once read back (tuples -> lists)
        before = self.effective_config() if self.config_path.is_file() else config
        missing = object()
        changed = {
            name: {"from": before.get(name), "to": value}
            for name, value in config.items()
            if before.get(name, missing) != value
        }
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return {"time": now, "start_epoch": start_epoch, "changed": changed}

    def _append_resume(self, record: dict) -> None:
        self._manifest.record(RESUMES)
        if self.resumes_path.is_file() and not self.resumes_path.read_bytes().endswith(b"\n"):
            # A kill mid-append tore the last line: keep the complete records, then append.
            kept = "".join(json.dumps(r) + "\n" for r in self.read_resumes())
            write_atomic(self.resumes_path, kept)
        append_line(self.resumes_path, json.dumps(record))

    def _truncate_metrics(self, start_epoch: int) -> None:
        """On resume, drop records of epochs that will be run again (written after the last checkpoint)."""
        if not self.metrics_path.exists():
            return
        kept = [json.dumps(r) for r in self.read_metrics() if r["epoch"] < start_epoch]
        write_atomic(self.metrics_path, "".join(line + "\n" for line in kept))

    def _log_tensorboard(self, record: dict) -> None:
        try:
            _add_scalars(self._writer, record)
            self._writer.flush()
        except OSError as exc:  # raised by TensorBoard's writer thread at the next call: a full disk, ...
            raise ConfigError(
                f"could not write TensorBoard events in {self.path / 'tb'}: {exc.strerror or exc}"
            ) from exc


def _add_scalars(writer, record: dict) -> None:
    epoch = record["epoch"]
    for key in ("lr", "alpha", "train_loss", "train_acc", "train_images_per_s"):
        if record.get(key) is not None:
            writer.add_scalar(key, record[key], epoch)
    for split in ("eval", "val"):
        for key in HEADLINE_KEYS:
            value = record.get(split, {}).get(key)
            if value is not None:
                writer.add_scalar(f"{split}/{key}", value, epoch)


def _yaml(config: dict) -> str:
    return yaml.safe_dump(config, sort_keys=False)


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise ConfigError(f"could not remove {path}: {exc.strerror or exc}") from exc


def _read_jsonl(path: Path) -> list[dict]:
    """Every complete record of a JSON-lines file that fbl appends to; a torn last line is dropped."""
    if not path.exists():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    records = []
    for number, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number < len(lines):
                raise ConfigError(f"{path}:{number} is not a JSON record") from None
            # A process killed mid-write leaves a torn last line; the epoch it described runs again.
            logger.warning("dropping the torn last line of %s", path)
    return records
