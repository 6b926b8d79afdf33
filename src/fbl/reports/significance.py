"""Which differences are real: per-run intervals over the test images, and paired tests between methods.

Both need the per-image predictions a run folder keeps in ``predictions/<split>.npz`` (see
:mod:`fbl.predictions`); runs without them (older ones) are left out, and a table with no run left
is not shown. Per run, the 95% interval is the bootstrap interval of :mod:`fbl.statistics`, read from
``summary.json`` (``last.ci95``) when training wrote it there, else computed from the predictions.

Between two methods, runs are paired seed by seed (the seeds both have; without shared seeds, in seed
order), every pair must hold the same test images with the same labels, and the difference is
resampled over images with one draw for all pairs (:func:`fbl.statistics.paired_bootstrap`). McNemar's
exact test is given per pair, for top-1.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from fbl.errors import ConfigError
from fbl.predictions import paired_images
from fbl.reports.aggregate import mean_std
from fbl.reports.methods import Method
from fbl.reports.run_folder import Run
from fbl.statistics import INTERVAL_METRICS, bootstrap_intervals, mcnemar, paired_bootstrap

logger = logging.getLogger(__name__)

#: Metrics whose paired difference the report shows.
PAIRED_METRICS = ("top1", "few", "macro_f1")


def run_intervals(run: Run) -> dict[str, list[float] | None] | None:
    """``{metric: [low, high]}`` of one run at its last epoch, or ``None`` without predictions."""
    stored = (run.summary.get("last") or {}).get("ci95")
    if stored:
        return stored
    predictions = run.predictions()
    if predictions is None:
        return None
    return bootstrap_intervals(predictions, run.class_counts, metrics=INTERVAL_METRICS)


def pair_runs(a: Sequence[Run], b: Sequence[Run]) -> list[tuple[Run, Run]]:
    """Runs of two methods paired by the seeds both have; without any, in seed order up to the shorter."""
    by_seed_b = {run.seed: run for run in b}
    shared = [run for run in a if run.seed in by_seed_b]
    if shared:
        return [(run, by_seed_b[run.seed]) for run in sorted(shared, key=lambda r: str(r.seed))]
    ordered = [sorted(runs, key=lambda r: str(r.seed)) for runs in (a, b)]
    return list(zip(*ordered, strict=False))


def paired_difference(a: Sequence[Run], b: Sequence[Run], metrics: Sequence[str] = PAIRED_METRICS) -> dict | None:
    """A - B over their paired runs: ``{"pairs": [(seed A, seed B)], "mcnemar": [...], metric: {...}}``.

    Each metric holds ``difference`` (mean over pairs), ``std`` (sample std of the per-pair
    differences, ``None`` for one pair), ``interval`` (95%, bootstrap over the images) and ``per_pair``.
    ``None`` when a run lacks predictions; paired on the images all of them hold
    (:func:`fbl.predictions.paired_images`: a ConfigError when that cannot be done).
    """
    pairs = pair_runs(a, b)
    loaded = [(ra.predictions(), rb.predictions()) for ra, rb in pairs]
    if not loaded or any(pa is None or pb is None for pa, pb in loaded):
        return None
    loaded = paired_images(loaded)
    result = paired_bootstrap(loaded, pairs[0][0].class_counts, metrics=metrics)
    for name in metrics:
        result[name]["std"] = mean_std(result[name]["per_pair"])[1]
    result["pairs"] = [(ra.seed, rb.seed) for ra, rb in pairs]
    result["mcnemar"] = [mcnemar(pa.correct, pb.correct) for pa, pb in loaded]
    return result


def reference_method(methods: Sequence[Method]) -> Method:
    """The method others are compared with: plain cross-entropy (``ce``) when there is one, else the first."""
    return next((m for m in methods if m.label == "ce"), methods[0])


def paired_rows(methods: Sequence[Method], reference: Method | None = None) -> tuple[list[dict], list[str]]:
    """``(rows, notes)``: each method against ``reference`` (:func:`reference_method` by default).

    A row is ``{"method", "reference", **paired_difference}``; a pair that cannot be compared is a note.
    """
    if len(methods) < 2:
        return [], []
    reference = reference or reference_method(methods)
    rows, notes = [], []
    for method in methods:
        if method is reference:
            continue
        try:
            difference = paired_difference(method.runs, reference.runs)
        except ConfigError as err:
            notes.append(f"{method.label} vs {reference.label} not paired: {err}")
            continue
        if difference is not None:
            rows.append({"method": method.label, "reference": reference.label, **difference})
    return rows, notes


def format_interval(interval: Sequence[float] | None, signed: bool = False) -> str:
    """``"[69.20, 71.05]"`` (``"[+0.64, +3.31]"`` signed); "–" without one."""
    if not interval:
        return "–"
    spec = "+.2f" if signed else ".2f"
    return f"[{interval[0]:{spec}}, {interval[1]:{spec}}]"


def excludes_zero(interval: Sequence[float] | None) -> bool:
    """Whether a difference's interval lies entirely on one side of 0 (the difference is real at that level)."""
    return bool(interval) and (interval[0] > 0 or interval[1] < 0)


def format_difference(entry: dict) -> str:
    """``"+1.92 ± 0.30 [+0.64, +3.31] *"``: mean ± std over pairs, 95% interval over images, ``*`` if it excludes 0."""
    if entry.get("difference") is None:
        return "–"
    std = f" ± {entry['std']:.2f}" if entry.get("std") is not None else ""
    mark = " *" if excludes_zero(entry.get("interval")) else ""
    return f"{entry['difference']:+.2f}{std} {format_interval(entry.get('interval'), signed=True)}{mark}"


def format_p_values(tests: Sequence[dict]) -> str:
    """McNemar p-values of the pairs, ``"0.0031, 0.21"``."""
    return ", ".join(f"{t['p_value']:.2g}" for t in tests) if tests else "–"
