"""Real file-system failures for tests: a read-only folder and a tiny (quickly full) disk.

As a normal user a read-only folder is a ``chmod``; root ignores permission bits, so as root the
folder becomes a read-only tmpfs mount instead, and a full disk a 64 KiB tmpfs. Where neither
works (no root, no ``mount``, a container that forbids it) the test is skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

TINY_DISK_BYTES = 64 * 1024


def _mount_tmpfs(folder: Path, options: str) -> str | None:
    """Mount a tmpfs on ``folder``; returns why not, or None once mounted."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root to mount a tmpfs"
    if shutil.which("mount") is None:
        return "no mount command"
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True, text=True)
    return None if done.returncode == 0 else f"mount -t tmpfs -o {options} failed: {done.stderr.strip()}"


def _unmount(folder: Path) -> None:
    subprocess.run(["umount", str(folder)], check=True, capture_output=True)


@contextmanager
def read_only_folder(folder: Path):
    """``folder`` (created empty) that no process may write in, for the duration of the block."""
    folder.mkdir(parents=True, exist_ok=True)
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)
        return
    why = _mount_tmpfs(folder, "ro,size=64k")
    if why is not None:
        pytest.skip(f"running as root, chmod does not make a folder read-only, and {why}")
    try:
        yield folder
    finally:
        _unmount(folder)


@contextmanager
def tiny_disk(folder: Path):
    """``folder`` on a file system of :data:`TINY_DISK_BYTES`, so a larger write fails with ENOSPC."""
    folder.mkdir(parents=True, exist_ok=True)
    why = _mount_tmpfs(folder, f"size={TINY_DISK_BYTES}")
    if why is not None:
        pytest.skip(f"a real full disk {why}")
    try:
        yield folder
    finally:
        _unmount(folder)
