"""Where ``../shared`` is, and what a test does when it is missing: fail under CI=true, else skip."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"


def missing_shared(what: str):
    message = f"{what} not found under {SHARED} (the shared folder beside the repository)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; CI must provide it", pytrace=False)
    pytest.skip(message)
