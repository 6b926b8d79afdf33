"""Plain-text lines for the terminal (``fbl eval``, the end of ``fbl train``, ``fbl compare``): the headline
metrics table, long-tail
summaries with their 95% intervals, accuracy under the test priors, and a paired difference.

Each function takes the dicts evaluation and :mod:`fbl.reports.significance` return and prints nothing
for numbers a dict lacks, so it works on results of older versions too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fbl.errors import ConfigError
from fbl.reports.label_shift import FORMS, PRIOR_NAMES, short_prior_name
from fbl.reports.run_folder import Run
from fbl.reports.significance import format_difference, format_interval, format_p_values, paired_difference

SUMMARY_KEYS = (
    ("top1", "top-1"), ("few", "few"), ("worst", "worst class"), ("hmean", "h-mean"), ("gmean", "g-mean"),
    ("macro_f1", "macro-F1"),
)  # fmt: skip


def format_long_tail(metrics: dict) -> str:
    """``"top-1 70.12 [69.20, 71.05]  few 41.00 [...]  worst class 12.00 ..."``; intervals where ``ci95`` has them."""
    intervals = metrics.get("ci95") or {}
    parts = []
    for key, title in SUMMARY_KEYS:
        if metrics.get(key) is None:
            continue
        interval = f" {format_interval(intervals[key])}" if intervals.get(key) else ""
        parts.append(f"{title} {metrics[key]:.2f}{interval}")
    note = "  (95% intervals over the test images)" if intervals else ""
    return "  ".join(parts) + note if parts else ""


def format_test_priors(metrics: dict) -> str:
    """A small table: accuracy under each test prior, without and (where recorded) with the prior correction."""
    table = metrics.get("test_priors") or {}
    if not table:
        return ""
    names = [name for name in PRIOR_NAMES if name in table]
    lines = ["test prior   " + "".join(f"{short_prior_name(n):>7}" for n in names)]
    for form in (*FORMS, "subsampled"):  # subsampled: SADE's subsampled test sets (fbl eval)
        values = [table[n].get(form) for n in names]
        if all(v is None for v in values):
            continue
        lines.append(f"{form:<12} " + "".join(f"{v:7.2f}" if v is not None else "      -" for v in values))
    return "\n".join(lines)


def format_test_time_aggregation(metrics: dict) -> str:
    """SADE's test-agnostic table (``fbl eval --test-time-aggregation``): per test prior, top-1 on its subsampled
    images with the experts' learnt weights and with their plain average, and the learnt weights."""
    table = metrics.get("test_time_aggregation") or {}
    if not table:
        return ""
    names = [name for name in PRIOR_NAMES if name in table]
    lines = [
        "test-time aggregation (subsampled test sets)",
        "test prior   " + "".join(f"{short_prior_name(n):>7}" for n in names),
    ]
    lines.append("aggregated   " + "".join(f"{table[n]['aggregated']:7.2f}" for n in names))
    lines.append("averaged     " + "".join(f"{table[n]['averaged']:7.2f}" for n in names))
    for k in range(len(table[names[0]]["weights"])):
        lines.append(f"weight {k + 1:<5} " + "".join(f"{table[n]['weights'][k]:7.3f}" for n in names))
    return "\n".join(lines)


def format_paired(row: dict, metric: str = "top1") -> str:
    """``"fbl λ=60 - ce, top1: +1.92 ± 0.30 [+0.64, +3.31] * (McNemar p 0.0031)"`` from a
    :func:`~fbl.reports.significance.paired_rows` row (or :func:`~fbl.reports.significance.paired_difference`
    with ``method`` and ``reference`` added)."""
    tests = f" (McNemar p {format_p_values(row['mcnemar'])})" if metric == "top1" and row.get("mcnemar") else ""
    return f"{row.get('method', 'A')} - {row.get('reference', 'B')}, {metric}: {format_difference(row[metric])}{tests}"


def paired_lines(groups: Mapping[str, Sequence[Run]], reference: str | None = None, metric: str = "top1") -> list[str]:
    """One :func:`format_paired` line per group against ``reference`` (``"ce"`` when a group has that
    name, else the first); groups whose runs kept no predictions get no line."""
    if len(groups) < 2:
        return []
    reference = reference or ("ce" if "ce" in groups else next(iter(groups)))
    lines = []
    for label, runs in groups.items():
        if label == reference:
            continue
        try:
            difference = paired_difference(runs, groups[reference])
        except ConfigError as err:
            lines.append(f"{label} - {reference}: not paired ({err})")
            continue
        if difference is not None:
            lines.append(format_paired({"method": label, "reference": reference, **difference}, metric))
    return lines


def _fmt(value) -> str:
    return f"{value:6.2f}" if value is not None else "     -"


def format_metrics_table(rows: dict) -> str:
    """``rows`` maps a label to a metrics dict; one line each with the headline numbers."""
    width = max(len(label) for label in rows) + 2
    lines = [f"{'':{width}}{'top1':>7}{'top5':>7}{'many':>7}{'medium':>7}{'few':>7}"]
    for label, m in rows.items():
        lines.append(
            f"{label:{width}}" + "".join(f" {_fmt(m.get(k))}" for k in ("top1", "top5", "many", "medium", "few"))
        )
    return "\n".join(lines)


def format_summary(summary: dict) -> str:
    """The end-of-training table: the last epoch, any extra evaluation split at it, and the selected epoch."""
    best = summary["best"]
    rows = {"last epoch": summary["last"]}
    rows.update({f"last epoch, {split}": m for split, m in (summary.get("last_extra") or {}).items()})
    rows[f"best (epoch {best['epoch'] + 1})*"] = best  # counted from 1, as in the per-epoch log lines
    table = format_metrics_table(rows)
    return f"{table}\n* selected on {summary['best_selected_on']}\nrun folder: {summary['run_dir']}"
