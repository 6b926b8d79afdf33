"""Checkpoints written atomically and read without unpickling arbitrary code.

Writing: through :mod:`fbl.atomic_files`, like every file fbl writes (a temporary file in the same
folder is written, flushed and fsynced, renamed over the old checkpoint, and the folder is fsynced),
so a crash, a kill or a full disk leaves either the previous checkpoint or the new one, never a mix.
Reading: torch's weights-only unpickler (tensors and plain containers, nothing that runs code), and
any file that is not a checkpoint this code wrote is one :class:`~fbl.errors.ConfigError` line naming it.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from fbl.atomic_files import atomic_output
from fbl.errors import ConfigError

#: Layout of the dict :func:`save_checkpoint` is given by the trainer; raise it when that layout changes.
#: 1: the config flat; 2: the config by section (``fbl.config`` reads both).
CHECKPOINT_FORMAT_VERSION = 2

#: Keys every checkpoint the trainer writes has.
CHECKPOINT_KEYS = ("format_version", "epoch", "model", "optimizer", "config", "best", "torch_rng_state")


def weights_only(state: dict) -> dict:
    """A checkpoint's state without what only a resume reads (optimizer state, an interrupted epoch's sums):
    what ``fbl record`` keeps. It loads like any checkpoint; :func:`holds_weights_only` tells it apart."""
    return {**state, "optimizer": None, "partial": None}


def holds_weights_only(state: dict) -> bool:
    return state.get("optimizer") is None


class _RecordingWriter:
    """Passes writes to ``handle`` and keeps the OSError of a failed one.

    ``torch.save`` turns an exception raised by ``write`` into a RuntimeError whose text says only
    "unexpected pos"; the recorded error lets a full disk still be reported as a full disk.
    """

    def __init__(self, handle) -> None:
        self.handle = handle
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self.handle.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.handle.flush()


def save_checkpoint(state: dict, path: str | Path) -> None:
    """Write ``state`` to ``path`` so that a crash or a full disk never leaves half a file.

    The write goes through :func:`fbl.atomic_files.atomic_output`, the path of every file fbl
    writes. A failure to write (disk full, permission, ...) removes the temporary file, keeps the
    previous checkpoint at ``path`` as it was and raises a one-line :class:`~fbl.errors.ConfigError`.
    """
    with atomic_output(path, what="checkpoint") as handle:
        writer = _RecordingWriter(handle)
        try:
            torch.save(state, writer)
        except RuntimeError:
            if writer.error is None:
                raise
            raise writer.error from None


def resolve_checkpoint_path(path: str | Path) -> Path:
    """Accept a checkpoint file or a run folder (then its ``checkpoints/last.pt``)."""
    path = Path(path)
    if path.is_dir():
        last = path / "checkpoints" / "last.pt"
        if not last.is_file():
            raise ConfigError(
                f"{path} is not a run folder with a checkpoint: {last} does not exist (give a run folder or a .pt file)"
            )
        path = last
    if not path.is_file():
        raise ConfigError(f"Checkpoint {path} does not exist")
    return path


def _unreadable_reason(path: Path, exc: Exception) -> str:
    try:
        if path.stat().st_size == 0:
            return "empty file"
    except OSError:
        pass
    # torch names the refused callable as "GLOBAL module.name" (in several phrasings across versions).
    refused = re.search(r"\bGLOBAL ([A-Za-z_][\w.]*)", str(exc))
    if refused:
        return f"it references {refused.group(1)[:120]}, which weights-only loading refuses"
    return "truncated or not a torch file"


def _key_list(state: dict) -> str:
    keys = sorted(str(key)[:40] for key in state)
    return ", ".join(keys[:12]) + (f", ... ({len(keys)} in all)" if len(keys) > 12 else "")


def _check_state(state: object, path: Path) -> dict:
    """The loaded object is a dict in a layout this code wrote (and can read), or a one-line error."""
    if not isinstance(state, dict):
        raise ConfigError(f"{path} is not an fbl checkpoint: it holds a {type(state).__name__}, not a dict")
    version = state.get("format_version")
    known_version = isinstance(version, int) and not isinstance(version, bool)
    if known_version and version > CHECKPOINT_FORMAT_VERSION:
        raise ConfigError(
            f"{path} was written by a newer fbl (checkpoint format {version}; this fbl reads up to "
            f"format {CHECKPOINT_FORMAT_VERSION}): upgrade fbl to load it"
        )
    missing = [key for key in CHECKPOINT_KEYS if key not in state]
    if missing:
        raise ConfigError(
            f"{path} is not an fbl checkpoint: it has no {'/'.join(map(repr, missing))} (keys: {_key_list(state)})"
        )
    if not known_version or version < 1:
        raise ConfigError(f"{path} is not an fbl checkpoint: 'format_version' is {str(version)[:40]!r}")
    for key in ("model", "config"):
        if not isinstance(state[key], dict):
            raise ConfigError(f"{path} is not an fbl checkpoint: {key!r} is a {type(state[key]).__name__}, not a dict")
    return state


def load_checkpoint(path: str | Path) -> dict:
    """The dict :func:`save_checkpoint` wrote, loaded on the CPU with torch's weights-only unpickler."""
    path = resolve_checkpoint_path(path)
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"could not read checkpoint {path}: {exc.strerror or exc}") from exc
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    # Only torch.load runs here, and a damaged file makes it raise anything from EOFError to
    # OSError(EINVAL) or KeyError: all of it is about the file, none of it is a bug of ours.
    except Exception as exc:
        raise ConfigError(f"not a checkpoint fbl can load safely: {path} ({_unreadable_reason(path, exc)})") from exc
    return _check_state(state, path)
