"""Shared fixtures. Data that lives in ``../shared`` must fail loudly under CI=true, never skip."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.shared_data import SHARED, missing_shared


@pytest.fixture(scope="session")
def cifar10_root(tmp_path_factory) -> Path:
    """A folder holding the real ``cifar-10-batches-py``, written once per session (about 5 s)."""
    script = SHARED / "data" / "cifar10" / "materialize.py"
    if not script.is_file():
        missing_shared("data/cifar10/materialize.py")
    root = tmp_path_factory.mktemp("cifar10")
    done = subprocess.run([sys.executable, str(script), str(root)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"{script} failed ({done.returncode}): {done.stderr.strip()}", pytrace=False)
    return root
