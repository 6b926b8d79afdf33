"""How a run ran: the machine, the software, the code's version and the execution settings actually used.

A number in a report is only as good as knowing what produced it. :func:`provenance` returns a plain
dict for ``summary.json`` (``fbl report`` shows it per run): world size and devices, CPU model and
whether it multiplies bfloat16 in hardware (AMX-BF16, AVX512-BF16), thread count, the Python, torch,
torchvision, CUDA and cuDNN versions, fbl's version and git commit (with whether the package's files
differed from it), the precision, memory format and compile mode actually used, and start and end time.
A run stopped and resumed is trained in parts; the record is the finishing process's and ``parts`` lists
every part's times, epochs, machine, threads, commit and execution (:func:`training_part`).

In a distributed job it is taken on rank 0: ``devices`` are the GPUs rank 0's node shows, and
``world_size`` says how many processes there were.
"""

from __future__ import annotations

import logging
import platform
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

import fbl
from fbl.engine.execution import CompiledOrEager, Execution

logger = logging.getLogger(__name__)

_GIT_TIMEOUT_S = 5


def provenance(
    execution: Execution | None,
    world_size: int = 1,
    device: torch.device | str | None = None,
    *,
    started_at: float | None = None,
    model: torch.nn.Module | None = None,
    code: dict | None = None,
) -> dict:
    """The record of how this process ran, ending now.

    Args:
        execution: the resolved fast-path settings (``None``: fp32 eager, as ``fbl eval`` runs).
        world_size: processes in the job.
        device: this process's device (default: ``execution``'s).
        started_at: ``time.time()`` when the run (or this resumed part of it) started.
        model: the module the loops called; tells whether ``torch.compile`` fell back to eager.
        code: :func:`git_state` as read when the process started (default: read now). A checkout can
            move on while a long run trains; the code the run executes is what it imported.
    """
    ended_at = time.time()
    device = torch.device(device if device is not None else (execution.device if execution else "cpu"))
    record = {
        "started_at": _iso(started_at),
        "ended_at": _iso(ended_at),
        "seconds": None if started_at is None else round(ended_at - started_at, 3),
        "world_size": int(world_size),
        "device": str(device),
        "device_name": device_name(device),
        "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if torch.cuda.is_available()
        else [],
        **cpu_description(),
        "threads": torch.get_num_threads(),
        **software_versions(),
        **(code if code is not None else git_state()),
    }
    record.update(execution_settings(execution, model))
    return record


#: What each part of a run keeps of its process's record (a resumed run is trained in several parts:
#: ``summary.json``'s ``provenance.parts``, oldest first; the checkpoint carries the finished ones).
PART_KEYS = (
    "started_at", "ended_at", "seconds", "world_size", "device", "device_name", "threads",
    "git_commit", "git_dirty", "precision", "compile",
)  # fmt: skip


def training_part(record: dict, epochs: tuple[int, int], started_at: float) -> dict:
    """One part of a run, ending now: ``record``'s :data:`PART_KEYS` (its times brought up to now) and
    ``epochs``, the ``[first, end)`` epochs it trained (0-based; ``end`` = epochs complete)."""
    ended_at = time.time()
    times = {"ended_at": _iso(ended_at), "seconds": round(ended_at - started_at, 3)}
    return {**{key: record.get(key) for key in PART_KEYS}, **times, "epochs": list(epochs)}


def unrecorded_part(epochs: tuple[int, int]) -> dict:
    """The epochs a run trained before parts were recorded (a checkpoint from an older fbl)."""
    return {"epochs": list(epochs), "recorded": False}


def _iso(seconds: float | None) -> str | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds")


def device_name(device: torch.device) -> str:
    """``"NVIDIA H200"`` for a GPU; the CPU's model name for the CPU."""
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(device)
    return cpu_description()["cpu"] if device.type == "cpu" else device.type


def cpu_description(cpuinfo: str | None = None) -> dict:
    """``cpu`` (model name), ``cpu_amx_bf16`` and ``cpu_avx512_bf16`` (hardware bfloat16), from /proc/cpuinfo.

    Without /proc/cpuinfo (macOS, Windows) the model is :func:`platform.processor` and the flags ``None``.
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return {"cpu": platform.processor() or platform.machine(), "cpu_amx_bf16": None, "cpu_avx512_bf16": None}
    fields = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())  # the first processor's entry
    flags = set(fields.get("flags", fields.get("Features", "")).split())
    model = fields.get("model name") or fields.get("Model") or platform.processor() or platform.machine()
    return {"cpu": model, "cpu_amx_bf16": "amx_bf16" in flags, "cpu_avx512_bf16": "avx512_bf16" in flags}


def software_versions() -> dict:
    """Python, torch, torchvision, CUDA (torch's build) and cuDNN versions, and fbl's own."""
    try:
        import torchvision

        vision = torchvision.__version__
    except ImportError:
        vision = None
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": vision,
        "cuda": torch.version.cuda,
        "cudnn": cudnn,
        "fbl": fbl.__version__,
    }


def git_state(package_dir: Path | None = None) -> dict:
    """``git_commit`` of the checkout fbl runs from and ``git_dirty``: whether the package's files (tracked
    or new) differ from it. Both ``None`` when fbl is not run from a git checkout (an installed wheel)."""
    package_dir = Path(package_dir or Path(fbl.__file__).resolve().parent)
    unknown = {"git_commit": None, "git_dirty": None}
    # The package file must be tracked by the repository found: a wheel installed into a virtual
    # environment that happens to sit inside some checkout is not that checkout's code.
    if _git(package_dir, "ls-files", "--error-unmatch", "__init__.py") is None:
        return unknown
    commit = _git(package_dir, "rev-parse", "HEAD")
    status = _git(package_dir, "status", "--porcelain", "--", ".")
    if commit is None or status is None:
        return unknown
    return {"git_commit": commit.strip(), "git_dirty": bool(status.strip())}


def _git(folder: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=_GIT_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def execution_settings(execution: Execution | None, model: torch.nn.Module | None = None) -> dict:
    """``precision``, ``channels_last`` and ``compile``: ``"compiled"``, ``"eager"``, or ``"eager (compile
    failed)"`` when the model's ``torch.compile`` fell back to eager at its first call."""
    execution = execution or Execution(torch.device("cpu"))
    mode = "compiled" if execution.compile else "eager"
    if isinstance(model, CompiledOrEager) and not model._use_compiled:  # the fallback is decided at run time
        mode = "eager (compile failed)"
    return {"precision": execution.precision, "channels_last": execution.channels_last, "compile": mode}
