"""Shared fixtures. Data that lives in ``../shared`` must fail loudly under CI=true, never skip."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"


def _missing_shared(what: str):
    message = f"{what} not found under {SHARED} (the shared folder beside the repository)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; CI must provide it", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def cifar10_root(tmp_path_factory) -> Path:
    """A folder holding the real ``cifar-10-batches-py``, written once per session (about 5 s)."""
    script = SHARED / "data" / "cifar10" / "materialize.py"
    if not script.is_file():
        _missing_shared("data/cifar10/materialize.py")
    root = tmp_path_factory.mktemp("cifar10")
    done = subprocess.run([sys.executable, str(script), str(root)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"{script} failed ({done.returncode}): {done.stderr.strip()}", pytrace=False)
    return root
