"""How each run ran, as report rows: the ``provenance`` record training writes into ``summary.json``.

Runs from before it was recorded have none and get no row (see :mod:`fbl.engine.provenance`).
"""

from __future__ import annotations

from collections.abc import Sequence

from fbl.reports.run_folder import Run

COLUMNS = ("Run", "Started (UTC)", "Duration", "Processes", "Device", "CPU", "Threads", "Software", "Code", "Ran as")


#: The CPU's hardware bfloat16 units, as the record names them.
BF16_UNITS = (("AMX-BF16", "cpu_amx_bf16"), ("AVX512-BF16", "cpu_avx512_bf16"))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _cpu(record: dict) -> str:
    units = [name for name, key in BF16_UNITS if record.get(key)]
    known = record.get("cpu_amx_bf16") is not None
    bf16 = f" ({', '.join(units)})" if units else (" (no bf16 units)" if known else "")
    return f"{record.get('cpu') or '?'}{bf16}"


def _software(record: dict) -> str:
    cuda = f", CUDA {record['cuda']}" if record.get("cuda") else ""
    return f"Python {record.get('python')}, torch {record.get('torch')}, torchvision {record.get('torchvision')}{cuda}"


def _code(record: dict) -> str:
    commit = record.get("git_commit")
    if not commit:
        return f"fbl {record.get('fbl')} (not a git checkout)"
    dirty = " + local changes" if record.get("git_dirty") else ""
    return f"fbl {record.get('fbl')} @ {commit[:10]}{dirty}"


def _device(record: dict) -> str:
    name = record.get("device_name")
    return f"{record.get('device')} ({name})" if name and name != record.get("cpu") else str(record.get("device"))


def provenance_rows(runs: Sequence[Run]) -> list[list[str]]:
    """One row per run that recorded its provenance, in :data:`COLUMNS` order."""
    rows = []
    for run in runs:
        record = run.provenance
        if not record:
            continue
        layout = "channels-last" if record.get("channels_last") else "NCHW"
        rows.append([
            str(run.path),
            str(record.get("started_at") or "–").replace("+00:00", ""),
            _duration(record.get("seconds")),
            str(record.get("world_size", "–")),
            _device(record),
            _cpu(record),
            str(record.get("threads", "–")),
            _software(record),
            _code(record),
            f"{record.get('precision')}, {layout}, {record.get('compile')}",
        ])  # fmt: skip
    return rows
