"""How many ``DataLoader`` worker processes a loader starts: what ``--workers`` asks, at most one per usable CPU.

A run builds several image loaders (train, val, test, and the train split evaluated at the end),
each with its own persistent workers, so ``--workers 48`` on a 16-CPU machine started about 190
processes that only competed for the same CPUs. Under ``torchrun`` every local rank starts its own
loaders, so each gets its share of the CPUs.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)

_warned: set[tuple[int, int]] = set()


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, which taskset and cgroup cpusets narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def cap_workers(requested: int) -> int:
    """``requested`` worker processes, capped at the usable CPUs per local rank (at least 1); logs a cap once."""
    ranks_here = max(int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1), 1)
    limit = max(usable_cpus() // ranks_here, 1)
    if requested <= limit:
        return requested
    if (requested, limit) not in _warned:
        _warned.add((requested, limit))
        share = f" shared by {ranks_here} local ranks" if ranks_here > 1 else ""
        logger.warning(
            "--workers %d is more than the %d CPUs this process may use%s; each loader starts %d workers",
            requested, usable_cpus(), share, limit,
        )  # fmt: skip
    return limit
