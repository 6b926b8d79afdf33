"""The one way fbl writes a file: whole or not at all, and a failure is one line.

:func:`atomic_output` writes a temporary file in the target's folder, flushes and fsyncs it,
renames it over the target (``os.replace``, atomic on POSIX and Windows) and fsyncs the folder, so
a crash, a kill or a full disk leaves either the previous file or the new one, never a torn mix
(a torn ``summary.json`` would mark an unfinished run finished). Any ``OSError`` on the way (disk
full, read-only file system, permission) becomes one :class:`~fbl.errors.ConfigError` line naming
the file and the reason; the previous file stays as it was and no temporary file is left.

Appends stay appends (:func:`append_line`, one ``metrics.jsonl`` record per epoch): a line that
cannot be written in full is cut off again, so the file keeps ending at a complete record.
:func:`check_writable_folder` refuses up front, before anything is computed or written, a folder
that could never be written (an existing file, a path under a file, a read-only folder).
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from fbl.errors import ConfigError

logger = logging.getLogger(__name__)


def temporary_prefix(name: str) -> str:
    """Temporary files of ``name`` are ``.<name>.<random>.tmp``: hidden, and recognisable as fbl's leftovers."""
    return f".{name}."


def fsync_directory(folder: Path) -> None:
    """Make a rename in ``folder`` durable.

    Best effort: Windows cannot open a folder and some file systems refuse fsync on one; the new
    file is in place either way.
    """
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        logger.debug("could not fsync folder %s: %s", folder, exc)
    finally:
        os.close(fd)


@functools.cache
def _umask() -> int:
    # Read once: os.umask can only be read by setting it, which would race with other threads later on.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def write_error(path: Path, exc: OSError, what: str | None = None) -> ConfigError:
    """The one-line error of a failed write of ``path`` (``what``: "checkpoint", ...), saying what is kept."""
    noun = what or "file"
    kept = f"the previous {noun} is kept" if path.is_file() else f"no {noun} was written"
    label = f"{what} {path}" if what else str(path)
    return ConfigError(f"could not write {label}: {_reason(exc)}; {kept}")


@contextmanager
def atomic_output(path: str | Path, what: str | None = None) -> Iterator[BinaryIO]:
    """A binary handle whose content replaces ``path`` only once all of it is on disk.

    An ``OSError`` raised while writing (by the caller's writes or by the flush, fsync or rename
    here) is re-raised as a one-line :class:`ConfigError`; any other exception propagates as it is.
    Either way the temporary file is removed and ``path`` keeps its previous content.
    The new file has the permissions of the file it replaces, else the usual ``0o666 & ~umask``.
    """
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = path.stat().st_mode & 0o7777 if path.is_file() else 0o666 & ~_umask()
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temporary_prefix(path.name), suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            if hasattr(os, "fchmod"):  # mkstemp makes the file private (0o600)
                os.fchmod(handle.fileno(), mode)
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise write_error(path, exc, what) from exc
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    fsync_directory(path.parent)


def write_atomic(path: str | Path, data: str | bytes, what: str | None = None) -> Path:
    """Replace ``path`` with ``data`` (text is written as UTF-8) through :func:`atomic_output`; returns ``path``."""
    path = Path(path)
    with atomic_output(path, what) as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def append_line(path: str | Path, line: str) -> None:
    """Append ``line`` and a newline to ``path`` and fsync it; a failed append is cut off again.

    An append is not atomic: a kill in the middle still leaves a torn last line, which readers of
    such files drop (and ``RunFolder`` repairs on resume). A write that *fails* (disk full) is
    truncated back here, so the file never ends in half a record while the process lives on.
    """
    path = Path(path)
    data = (line + "\n").encode("utf-8")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    except OSError as exc:
        raise ConfigError(f"could not append to {path}: {_reason(exc)}") from exc
    try:
        start = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:  # os.write may write only part of the data
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError as exc:
            _cut_back(fd, start)
            raise ConfigError(f"could not append to {path}: {_reason(exc)}; the file keeps its complete lines") from exc
    finally:
        os.close(fd)


def _cut_back(fd: int, size: int) -> None:
    try:
        os.ftruncate(fd, size)
    except OSError as exc:  # the torn line stays; readers drop a torn last line
        logger.debug("could not cut a failed append back: %s", exc)


def _nearest_existing(path: Path) -> Path:
    while not os.path.lexists(path) and path.parent != path:
        path = path.parent
    return path


def _read_only_reason(folder: Path) -> str | None:
    if os.access(folder, os.W_OK | os.X_OK):
        return None
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return f"{folder} is on a read-only file system"
    except (OSError, AttributeError):  # no statvfs on Windows
        pass
    return f"{folder} is not writable (permission denied)"


def check_writable_folder(path: str | Path, what: str = "folder") -> None:
    """Raise a one-line :class:`ConfigError` unless ``path`` is, or can be created as, a writable folder.

    Writes nothing: the caller checks before any work, so a bad ``--out`` costs no training time.
    ``what`` names the folder in the message ("run folder", "report folder", ...).
    """
    path = Path(path)
    if os.path.lexists(path) and not path.is_dir():
        kind = "a broken link" if path.is_symlink() and not path.exists() else "an existing file"
        raise ConfigError(f"cannot use {path} as the {what}: it is {kind}, not a folder")
    existing = _nearest_existing(path)
    if existing != path and not existing.is_dir():
        raise ConfigError(f"cannot create the {what} {path}: {existing} is a file, not a folder")
    reason = _read_only_reason(existing)
    if reason is not None:
        verb = "write in" if existing == path else "create"
        raise ConfigError(f"cannot {verb} the {what} {path}: {reason}")
