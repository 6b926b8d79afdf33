r"""The report's "Paired differences on the lossless estimate": is the best method really ahead of the others?

The lossless estimate (:mod:`fbl.reports.estimate_table`) is the headline for CIFAR-10 here; two methods'
estimates each carry a standard error of 0.25–0.5 points, but they are measured on the same images, so
their difference has a much smaller paired standard error (:func:`fbl.balanced_estimate.
paired_balanced_difference`: per image, one right and the other wrong; classes weighted as in the
balanced top-1). Every method is compared with the one whose mean estimate is highest, runs paired seed
by seed as in the test-set table (:func:`fbl.reports.significance.pair_runs`); a difference is real at
the 95% level when :math:`|z| \ge 1.96`. This measures how much the comparison would move on other images
drawn like these, for these trained models; how much it moves between seeds is the per-pair spread.

It needs each run's ``predictions/lossless_estimate.npz``, which training keeps; for runs trained before
that, ``fbl eval RUN --split lossless_estimate --keep-predictions`` adds it (and the image names of
:func:`fbl.predictions.paired_images` to a file kept without them). Runs whose estimates hold different
images (a validation split takes its images out of the estimate) are paired on the images all of them
hold: the Images column says how many; runs that cannot be paired are a note.
"""

from __future__ import annotations

from fbl.balanced_estimate import paired_balanced_difference
from fbl.data.lossless_estimate_split import LOSSLESS_ESTIMATE
from fbl.errors import ConfigError
from fbl.reports.aggregate import mean_std
from fbl.reports.estimate_table import estimate_rows, method_summary
from fbl.reports.methods import Method
from fbl.reports.significance import format_interval, pair_runs
from fbl.reports.writers import Table

#: |z| from here on: the difference is real at the 95% level (two-sided).
REAL_Z = 1.96
COLUMNS = ["Method", "Against", "Seeds paired", "Images", "Δ estimate", "Paired SE", "95% interval", "z", "Real"]
CAPTION = (
    "Last epoch, percentage points: each method's lossless estimate minus the best method's (highest mean "
    "estimate), on the images both hold, runs paired seed by seed; Δ is the mean over the pairs (± the std of the "
    "per-pair differences with several pairs), the paired SE = √(Σ_c s_c²/n_c)/C, with s_c² the variance over "
    "class c's images of +1 (only this method right), −1 (only the best right) or 0, averaged over the pairs; "
    "the interval is Δ ± 1.96 SE, and Real marks |z| ≥ 1.96: a difference that images like these would not undo."
)
KEEP_HINT = f"fbl eval RUN --split {LOSSLESS_ESTIMATE} --keep-predictions"


def best_method(methods: list[Method]) -> Method | None:
    """The method with the highest mean lossless estimate over its seeds; ``None`` without estimates."""
    rows = estimate_rows(methods)
    means = {
        label: method_summary([r for r in rows if r["method"] == label])["top1"]
        for label in dict.fromkeys(r["method"] for r in rows)
    }
    means = {label: mean for label, mean in means.items() if mean is not None}
    if not means:
        return None
    label = max(means, key=means.get)
    return next(m for m in methods if m.label == label)


def difference_rows(methods: list[Method]) -> tuple[list[dict], list[str]]:
    """``(rows, notes)``: every other method with estimates against :func:`best_method`.

    A row is ``{"method", "against", "pairs", **paired_balanced_difference}``; a method whose runs lack
    the estimate's predictions, or whose images cannot be paired, is a note instead.
    """
    best = best_method(methods)
    if best is None:
        return [], []
    rows, notes = [], []
    with_estimate = {r["method"] for r in estimate_rows(methods)}
    for method in methods:
        if method is best or method.label not in with_estimate:
            continue
        pairs = pair_runs(method.runs, best.runs)
        loaded = [(a.predictions(LOSSLESS_ESTIMATE), b.predictions(LOSSLESS_ESTIMATE)) for a, b in pairs]
        if not loaded or any(a is None or b is None for a, b in loaded):
            notes.append(f"{method.label} vs {best.label} on the lossless estimate: no predictions kept ({KEEP_HINT})")
            continue
        try:
            difference = paired_balanced_difference(loaded)
        except ConfigError as err:
            notes.append(f"{method.label} vs {best.label} on the lossless estimate not paired: {err}")
            continue
        rows.append({"method": method.label, "against": best.label, "pairs": [(a.seed, b.seed) for a, b in pairs],
                     **difference})  # fmt: skip
    return rows, notes


def difference_table(methods: list[Method]) -> tuple[Table | None, list[str]]:
    """The table of :func:`difference_rows` (``None`` without rows) and its notes."""
    rows, notes = difference_rows(methods)
    if not rows:
        return None, notes
    cells = [
        [
            r["method"],
            r["against"],
            ", ".join(f"{a}/{b}" if a != b else str(a) for a, b in r["pairs"]),
            f"{r['images']:,}",
            _with_spread(r["difference"], r["per_pair"]),
            f"{r['se']:.2f}",
            format_interval(r["interval"], signed=True),
            "–" if r["z"] is None else f"{r['z']:+.2f}",
            "yes" if r["z"] is not None and abs(r["z"]) >= REAL_Z else "no",
        ]  # fmt: skip
        for r in rows
    ]
    return Table(f"Paired differences on the lossless estimate, against {rows[0]['against']}", COLUMNS, cells,
                 CAPTION), notes  # fmt: skip


def _with_spread(difference: float, per_pair: list[float]) -> str:
    std = mean_std(per_pair)[1]
    return f"{difference:+.2f}" if std is None else f"{difference:+.2f} ± {std:.2f}"
