"""Wall-clock time of `make demo`'s training (CE and FBL on digits-lt), installation excluded.

    .venv/bin/python benchmarks/demo_time.py

The demo's budget is two minutes on 2 cores; this prints the measured time against it. A
benchmark, never a test: tests do not assert times.
"""

from __future__ import annotations

import tempfile
import time

from fbl.demo import run_demo

BUDGET_SECONDS = 120


def main() -> None:
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        run_demo(out=out)
        elapsed = time.perf_counter() - started
    verdict = "within" if elapsed < BUDGET_SECONDS else "OVER"
    print(f"demo training: {elapsed:.1f} s ({verdict} the {BUDGET_SECONDS} s budget)")


if __name__ == "__main__":
    main()
