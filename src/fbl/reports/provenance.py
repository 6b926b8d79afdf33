"""How each run ran, as report rows: the ``provenance`` record training writes into ``summary.json``.

A run resumed after a stop ran in parts (``provenance.parts``): its row gives the first start, the summed
duration, the number of parts, every thread count and commit its parts used, in order, and, where its
parts ran on different devices or precisions, each stretch of them with the epochs it trained; the other
columns are the finishing part's.

Runs from before it was recorded have none and get no row (see :mod:`fbl.engine.provenance`).
"""

from __future__ import annotations

from collections.abc import Sequence

from fbl.reports.run_folder import Run

COLUMNS = (
    "Run", "Started (UTC)", "Duration", "Parts", "Processes", "Device", "CPU", "Threads", "Software", "Code", "Ran as"
)  # fmt: skip


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


def _code(record: dict, parts: list[dict]) -> str:
    """fbl's version and each distinct commit the run's parts ran, in order (one for a run in one part)."""
    commits = _distinct(parts, lambda part: (part.get("git_commit"), bool(part.get("git_dirty"))))
    if not any(commit for commit, _ in commits):
        return f"fbl {record.get('fbl')} (not a git checkout)"
    named = [f"{commit[:10] if commit else '?'}{' + local changes' if dirty else ''}" for commit, dirty in commits]
    return f"fbl {record.get('fbl')} @ {', '.join(named)}"


def _distinct(parts: list[dict], key) -> list:
    values = []
    for part in parts:
        if key(part) not in values:
            values.append(key(part))
    return values


def _timing(record: dict, run: Run) -> tuple[str, str, str]:
    """Started, duration and number of parts. A run resumed after a stop trains in parts: its start is the
    first part's and its duration their sum; epochs an older fbl trained before it recorded parts make
    the start unknown and the duration a lower bound; a run from before parts were recorded at all shows
    the finishing part's, said as such."""
    started = str(record.get("started_at") or "–").replace("+00:00", "")
    parts = record.get("parts")
    if not parts:
        count = 1 + len(run.resumes)
        if count == 1:
            return started, _duration(record.get("seconds")), "1"
        return f"{started} (last part)", f"{_duration(record.get('seconds'))} (last part)", str(count)
    recorded = [part for part in parts if part.get("recorded", True)]
    seconds = sum(part.get("seconds") or 0.0 for part in recorded)
    if len(recorded) < len(parts):
        missing = sum(part["epochs"][1] - part["epochs"][0] for part in parts if part not in recorded)
        return f"– ({missing} epochs unrecorded)", f"≥ {_duration(seconds)}", str(len(parts))
    return str(parts[0].get("started_at") or "–").replace("+00:00", ""), _duration(seconds), str(len(parts))


def _device(record: dict) -> str:
    name = record.get("device_name")
    return f"{record.get('device')} ({name})" if name and name != record.get("cpu") else str(record.get("device"))


def _where(record: dict, parts: list[dict]) -> str:
    """The device; for a run whose parts ran on different devices or precisions, each stretch of parts on one
    of them, in order, with the epochs it trained (a part that trained none only wrote the summary)."""
    stretches = []  # [(device, precision), first epoch, last epoch]
    for part in parts:
        where = (_device(part), part.get("precision"))
        first, last = part.get("epochs") or (None, None)
        if stretches and stretches[-1][0] == where:
            stretches[-1][2] = last
        else:
            stretches.append([where, first, last])
    if len({where for where, _, _ in stretches}) <= 1:
        return _device(record)
    return "; ".join(
        f"{device}, {precision}: {_epochs_trained(first, last)}" for (device, precision), first, last in stretches
    )


def _epochs_trained(first: int | None, last: int | None) -> str:
    if first is None or last is None:
        return "epochs ?"
    return f"epochs {first + 1}–{last}" if last > first else "summary only"


def provenance_rows(runs: Sequence[Run]) -> list[list[str]]:
    """One row per run that recorded its provenance, in :data:`COLUMNS` order."""
    rows = []
    for run in runs:
        record = run.provenance
        if not record:
            continue
        layout = "channels-last" if record.get("channels_last") else "NCHW"
        parts = [part for part in record.get("parts") or [record] if part.get("recorded", True)]
        threads = _distinct(parts, lambda part: part.get("threads", "–"))
        rows.append([
            str(run.path),
            *_timing(record, run),
            str(record.get("world_size", "–")),
            _where(record, parts),
            _cpu(record),
            ", ".join(map(str, threads)),
            _software(record),
            _code(record, parts),
            f"{record.get('precision')}, {layout}, {record.get('compile')}",
        ])  # fmt: skip
    return rows
