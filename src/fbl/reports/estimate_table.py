r"""The report's "Lossless estimate" table: each run's lossless estimate beside its 1,000 lossless test images.

CIFAR-10 here has a JPEG-decoded test batch, so lossless accuracy comes from two places: the balanced
estimate on the lossless training images a run leaves unused (``summary.json``'s ``last_estimate``, see
:mod:`fbl.data.lossless_estimate_split`) and the 1,000 lossless test images (the extra split
:data:`LOSSLESS_TEST`). Both measure the same balanced top-1, so per run their difference
:math:`d = \hat{a}_e - \hat{a}_l` is compared with its standard error,

.. math:: z = d / \sqrt{\mathrm{SE}_e^2 + \mathrm{SE}_l^2},

and the two agree when :math:`|z| < 1.96`. The 1,000 images' balanced top-1 and SE use the estimate's
own formula (:func:`fbl.balanced_estimate.balanced_estimate`). Per method, the mean over seeds comes
with its 95% t-interval (:func:`fbl.statistics.seed_interval`). Runs without an estimate are left out,
and without any the table is not shown.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from fbl.balanced_estimate import balanced_estimate, balanced_estimate_of
from fbl.data.lossless_estimate_split import LOSSLESS_ESTIMATE
from fbl.reports.methods import Method
from fbl.reports.run_folder import Run
from fbl.reports.significance import format_interval
from fbl.reports.writers import Table
from fbl.statistics import seed_interval

#: The extra evaluation split of lossless test images (CIFAR-10's ``test_batch_lossless_1000``).
LOSSLESS_TEST = "test_lossless"
#: |z| below this: the estimate and the lossless test images agree (two-sided 5%).
AGREE_Z = 1.96
GROUPS = ("many", "medium", "few")
COLUMNS = [
    "Method", "Seed", "Estimate", "Many", "Medium", "Few", "Lossless 1,000", "JPEG test", "Δ (est − lossless)", "z",
    "Agree",
]  # fmt: skip
CAPTION = (
    "Per run, last epoch, percent: the lossless estimate (balanced top-1 ± its standard error, then many/medium/few "
    "± theirs, on the lossless training images the run neither trained nor validated on), the balanced top-1 ± SE "
    "on the 1,000 lossless test images (SE = √(Σ_c a_c(1−a_c)/n_c)/C; over the estimate's classes where it is "
    "partial), top-1 on the JPEG-decoded test set, and Δ = estimate − lossless with z = Δ/√(SE_e² + SE_l²), "
    "agreeing when |z| < 1.96; in the 'mean of n' rows ± is the mean SE, brackets the 95% t-interval of the mean "
    "over seeds, and Agree counts the runs that agree. The estimate exists because the test batch is JPEG-decoded "
    "(CIFAR-10 from ../shared, about 13 points lower) and the 1,000 lossless test images leave an SE of about 1.3 "
    "points, while the unused lossless training images come from the pool the test images were drawn from and "
    "measure the same balanced top-1 several times more precisely."
)


def run_estimate(run: Run) -> dict | None:
    """The run's lossless estimate (``summary.json`` ``last_estimate.lossless_estimate``), ``None`` without one."""
    return (run.summary.get("last_estimate") or {}).get(LOSSLESS_ESTIMATE)


def lossless_top1(metrics: dict, class_counts: Sequence[int], missing: Sequence[int] = ()) -> dict | None:
    """Balanced top-1 ± SE of a split's metrics (its classes less ``missing``); ``None`` without per-class sizes."""
    try:
        full = balanced_estimate_of(metrics, class_counts)
    except ValueError:  # a metrics dict without per_class_n or confusion (over 100 classes)
        return None
    if not missing:
        return full
    acc = [None if c in missing else a for c, a in enumerate(full["per_class_acc"])]
    sizes = [0 if c in missing else n for c, n in enumerate(full["per_class_n"])]
    return balanced_estimate(acc, sizes, class_counts)


def compare(estimate: dict | None, lossless: dict | None) -> dict:
    """``{"difference", "z", "agree"}`` of estimate − lossless; ``None`` where either (or both SEs) is missing."""
    if not estimate or not lossless or None in (estimate.get("top1"), lossless.get("top1")):
        return {"difference": None, "z": None, "agree": None}
    difference = estimate["top1"] - lossless["top1"]
    se = math.hypot(estimate.get("se") or 0.0, lossless.get("se") or 0.0)
    z = difference / se if se > 0 else None
    return {"difference": difference, "z": z, "agree": None if z is None else abs(z) < AGREE_Z}


def estimate_rows(methods: list[Method]) -> list[dict]:
    """One dict per run with an estimate: ``method, seed, estimate, lossless, jpeg_top1`` and :func:`compare`'s keys."""
    rows = []
    for method in methods:
        for run in method.runs:
            estimate = run_estimate(run)
            if estimate is None:
                continue
            extra = (run.summary.get("last_extra") or {}).get(LOSSLESS_TEST)
            counts = run.summary.get("class_counts")
            missing = estimate.get("missing_classes") or ()
            lossless = lossless_top1(extra, counts, missing) if extra and counts else None
            jpeg = (run.summary.get("last") or {}).get("top1")
            row = {"method": method.label, "seed": run.seed, "estimate": estimate, "lossless": lossless}
            rows.append({**row, "jpeg_top1": jpeg, **compare(estimate, lossless)})
    return rows


def method_summary(rows: list[dict]) -> dict:
    """Over one method's :func:`estimate_rows`: means, mean SEs, 95% seed t-intervals, and how many runs agree."""
    estimates, lossless = [r["estimate"] for r in rows], [r["lossless"] or {} for r in rows]
    summary = {"n": len(rows), "agree": sum(r["agree"] is True for r in rows)}
    summary["compared"] = sum(r["agree"] is not None for r in rows)
    for key in ("top1", *GROUPS):
        summary[key] = _mean([e.get(key) for e in estimates])
        summary[f"{key}_se"] = _mean([e.get("se" if key == "top1" else f"{key}_se") for e in estimates])
    summary["top1_ci95"] = seed_interval([e.get("top1") for e in estimates])
    lossless_top1s, jpeg_top1s = [x.get("top1") for x in lossless], [r["jpeg_top1"] for r in rows]
    summary.update(
        lossless=_mean(lossless_top1s), lossless_se=_mean([x.get("se") for x in lossless]),
        lossless_ci95=seed_interval(lossless_top1s), jpeg_top1=_mean(jpeg_top1s), jpeg_ci95=seed_interval(jpeg_top1s),
        difference=_mean([r["difference"] for r in rows]),
    )  # fmt: skip
    return summary


def estimate_table(methods: list[Method]) -> Table | None:
    """The "Lossless estimate" table: a row per run with an estimate, then a row per method; ``None`` without any."""
    rows = estimate_rows(methods)
    if not rows:
        return None
    cells = [_run_cells(r) for r in rows]
    for label in dict.fromkeys(r["method"] for r in rows):
        cells.append(_summary_cells(label, method_summary([r for r in rows if r["method"] == label])))
    return Table("Lossless estimate", COLUMNS, cells, CAPTION)


def _run_cells(row: dict) -> list[str]:
    estimate, lossless = row["estimate"], row["lossless"] or {}
    classes = _classes_note(estimate)
    agree = "–" if row["agree"] is None else ("yes" if row["agree"] else "no")
    return [
        row["method"], str(row["seed"]), format_with_se(estimate.get("top1"), estimate.get("se")) + classes,
        *(format_with_se(estimate.get(g), estimate.get(f"{g}_se")) for g in GROUPS),
        format_with_se(lossless.get("top1"), lossless.get("se")) + (classes if lossless else ""),
        _number(row["jpeg_top1"]),
        _number(row["difference"], signed=True), _number(row["z"], signed=True), agree,
    ]  # fmt: skip


def _summary_cells(label: str, s: dict) -> list[str]:
    return [
        label, f"mean of {s['n']}", _with_interval(format_with_se(s["top1"], s["top1_se"]), s["top1_ci95"]),
        *(format_with_se(s[g], s[f"{g}_se"]) for g in GROUPS),
        _with_interval(format_with_se(s["lossless"], s["lossless_se"]), s["lossless_ci95"]),
        _with_interval(_number(s["jpeg_top1"]), s["jpeg_ci95"]), _number(s["difference"], signed=True), "–",
        f"{s['agree']}/{s['compared']}" if s["compared"] else "–",
    ]  # fmt: skip


def _classes_note(estimate: dict) -> str:
    """`` (9/10 classes)`` for a partial estimate (a class without lossless images of its own), else nothing."""
    missing, sizes = estimate.get("missing_classes") or [], estimate.get("per_class_n") or []
    return f" ({len(sizes) - len(missing)}/{len(sizes)} classes)" if missing and sizes else ""


def format_with_se(value: float | None, se: float | None) -> str:
    """``"79.60 ± 0.50"``; the value alone without an SE, "–" without a value."""
    if value is None:
        return "–"
    return f"{value:.2f} ± {se:.2f}" if se is not None else f"{value:.2f}"


def _with_interval(text: str, interval: Sequence[float] | None) -> str:
    """``text`` and its seed interval ``[low, high]``; ``text`` alone with one seed."""
    return f"{text} {format_interval(interval)}" if interval else text


def _number(value: float | None, signed: bool = False) -> str:
    return "–" if value is None else f"{value:{'+.2f' if signed else '.2f'}}"


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.mean(present) if present else None
