"""The report's tables beyond mean ± std of the headline metrics: what a reader needs to trust a difference.

* long-tail summaries per method (worst-class accuracy, harmonic and geometric mean of per-class
  accuracy, macro-F1), mean ± std over seeds;
* accuracy under SADE's eleven test priors, without and with the prior correction, and with SADE's
  test-time aggregation where ``fbl eval --test-time-aggregation`` kept its table;
* per run, 95% bootstrap intervals over the test images;
* per run, the lossless estimate beside the 1,000 lossless test images, and per method its mean over
  seeds with a 95% t-interval (:mod:`fbl.reports.estimate_table`), and every method against the best on
  the estimate's images, with the paired standard error (:mod:`fbl.reports.estimate_differences`);
* each method against a reference method on the same images: paired bootstrap interval and McNemar;
* per run, how it ran (provenance).

Each table is left out when no run folder has what it needs (older runs), so an old report looks as
it did.
"""

from __future__ import annotations

from collections.abc import Sequence

from fbl.data.lossless_estimate_split import LOSSLESS_ESTIMATE
from fbl.reports.aggregate import LONG_TAIL_KEYS, format_mean_std, method_table
from fbl.reports.estimate_differences import difference_table
from fbl.reports.estimate_table import estimate_table, format_with_se
from fbl.reports.label_shift import (
    AGGREGATION_FORMS,
    FORMS,
    PRIOR_NAMES,
    estimate_prior_rows,
    method_aggregation_rows,
    method_prior_rows,
    short_prior_name,
)
from fbl.reports.methods import Method
from fbl.reports.provenance import COLUMNS as PROVENANCE_COLUMNS
from fbl.reports.provenance import provenance_rows
from fbl.reports.run_folder import Run
from fbl.reports.significance import (
    PAIRED_METRICS,
    format_difference,
    format_interval,
    format_p_values,
    paired_rows,
    run_intervals,
)
from fbl.reports.writers import Table

LONG_TAIL_TITLES = {"worst": "Worst class", "hmean": "H-mean", "gmean": "G-mean", "macro_f1": "Macro-F1"}
INTERVAL_TITLES = {"top1": "Top-1", "few": "Few", "worst": "Worst class", "macro_f1": "Macro-F1"}
PAIRED_TITLES = {"top1": "Δ Top-1", "few": "Δ Few", "macro_f1": "Δ Macro-F1"}


def evidence_tables(runs: list[Run], methods: list[Method]) -> tuple[list[Table], list[str]]:
    """``(tables, notes)`` in report order; notes say which pairs could not be compared."""
    paired, notes = _paired_table(methods)
    estimate_differences, estimate_notes = difference_table(methods)
    tables = [_long_tail_table(runs), *_prior_tables(methods), *_aggregation_tables(methods), _interval_table(methods)]
    tables += [estimate_table(methods), estimate_differences, _estimate_prior_table(methods)]
    tables += [paired, _provenance_table(runs)]
    return [t for t in tables if t is not None], notes + estimate_notes


def _long_tail_table(runs: list[Run]) -> Table | None:
    rows = method_table(runs, "last")
    if all(row[f"{k}_mean"] is None for row in rows for k in LONG_TAIL_KEYS):
        return None
    cells = [
        [r["method"], str(r["n"]), *(format_mean_std(r[f"{k}_mean"], r[f"{k}_std"]) for k in LONG_TAIL_KEYS)]
        for r in rows
    ]
    return Table(
        "Long-tail summaries (last epoch)",
        ["Method", "n", *(LONG_TAIL_TITLES[k] for k in LONG_TAIL_KEYS)],
        cells,
        "Test set, percent, mean ± std over n seeds: the lowest per-class accuracy, the harmonic and geometric "
        "mean of the per-class accuracies (0 when a class scores 0), and macro-F1 (mean over classes of "
        "2·hits / (test images + predictions)).",
    )


def _prior_tables(methods: list[Method]) -> list[Table]:
    rows = method_prior_rows(methods)
    columns = ["Method", "n", *(short_prior_name(name) for name in PRIOR_NAMES)]
    captions = {
        "uncorrected": "Accuracy (%) of the same models if the test classes followed each prior: Σ_c π_c · acc_c of "
        "the per-class test accuracies, exact (no subsampling). F: forward long-tailed (like training), U: uniform "
        "(= mean per-class accuracy), B: backward; the number is the imbalance ρ, π_c ∝ ρ^(-rank_c/(C-1)) "
        "(SADE, NeurIPS 2022). Mean ± std over n seeds.",
        "corrected": "As above, with the post-hoc correction for a known test prior: argmax of z + log π_test - "
        "log π_train (logits taken to estimate the training posterior). Mean ± std over n seeds.",
    }
    tables = []
    for form in FORMS:
        if all(row[form][name][0] is None for row in rows for name in PRIOR_NAMES):
            continue
        cells = [[row["method"], str(row["n"]), *(format_mean_std(*row[form][n]) for n in PRIOR_NAMES)] for row in rows]
        title = "Accuracy under test class priors" + (", prior-corrected" if form == "corrected" else "")
        tables.append(Table(title, columns, cells, captions[form]))
    return tables


def _estimate_prior_table(methods: list[Method]) -> Table | None:
    rows = estimate_prior_rows(methods)
    if not rows:
        return None
    cells = [
        [row["method"], row["seed"], row["form"], *(format_with_se(*row["priors"][name]) for name in PRIOR_NAMES)]
        for row in rows
    ]
    return Table(
        "Accuracy under test class priors, lossless estimate",
        ["Method", "Seed", "Form", *(short_prior_name(name) for name in PRIOR_NAMES)],
        cells,
        "As the tables above, Σ_c π_c · acc_c, on the per-class accuracies of the lossless estimate (lossless "
        "images the run neither trained nor validated on) instead of the test set: uncorrected, percent ± the "
        "standard error 100·√(Σ_c π_c² a_c(1−a_c)/n_c), and prior-corrected (z + log π_test − log π_train) where "
        "training recorded it; in the 'mean of n' rows the mean over seeds ± the mean SE.",
    )


def _aggregation_tables(methods: list[Method]) -> list[Table]:
    """SADE's protocol on the reported split, and on the lossless estimate where it was run there too."""
    tables = [_aggregation_table(methods), _aggregation_table(methods, LOSSLESS_ESTIMATE)]
    return [table for table in tables if table is not None]


def _aggregation_table(methods: list[Method], split: str | None = None) -> Table | None:
    rows = method_aggregation_rows(methods, split)
    if not rows:
        return None
    cells = [
        [row["method"], form, str(row["n"]), *(format_mean_std(*row[form][name]) for name in PRIOR_NAMES)]
        for row in rows
        for form in AGGREGATION_FORMS
    ]
    where = "" if split is None else f" on the {split.replace('_', ' ')}"
    return Table(
        f"Test-time aggregation (SADE's test-agnostic protocol){where}",
        ["Method", "Weights", "n", *(short_prior_name(name) for name in PRIOR_NAMES)],
        cells,
        f"Top-1 (%) on SADE's subsampled {split or 'test'} set of each prior (fbl eval RUN --split "
        f"{split or 'test'} --test-time-aggregation): aggregated, with the experts' weights learnt on that set's "
        "unlabelled images; averaged, the experts' plain average on the same images. Mean ± std over the n runs "
        "that kept the table.",
    )


def _interval_table(methods: list[Method]) -> Table | None:
    cells = []
    for method in methods:
        for run in method.runs:
            intervals = run_intervals(run)
            if intervals is None:
                continue
            last = run.last
            cells.append(
                [method.label, str(run.seed)]
                + [_value_with_interval(last.get(k), intervals.get(k)) for k in INTERVAL_TITLES]
            )
    if not cells:
        return None
    return Table(
        "Per-run 95% intervals over the test images",
        ["Method", "Seed", *INTERVAL_TITLES.values()],
        cells,
        "Last epoch; the interval is the bootstrap percentile interval (1,000 resamples of the test images): how "
        "much the number would move on another test set like this one. Variation between seeds is the ± std above.",
    )


def _value_with_interval(value: float | None, interval: Sequence[float] | None) -> str:
    return "–" if value is None else f"{value:.2f} {format_interval(interval)}"


def _paired_table(methods: list[Method]) -> tuple[Table | None, list[str]]:
    rows, notes = paired_rows(methods)
    if not rows:
        return None, notes
    cells = [
        [r["method"], r["reference"], ", ".join(f"{a}/{b}" if a != b else str(a) for a, b in r["pairs"])]
        + [format_difference(r[k]) for k in PAIRED_METRICS]
        + [format_p_values(r["mcnemar"])]
        for r in rows
    ]
    table = Table(
        f"Paired differences against {rows[0]['reference']}",
        ["Method", "Against", "Seeds paired", *(PAIRED_TITLES[k] for k in PAIRED_METRICS), "McNemar p (top-1)"],
        cells,
        "Last epoch, same test images, percentage points (method minus the one it is against): mean ± std over "
        "the seed pairs, then the 95% paired-bootstrap interval over the images (one draw of images for all "
        "pairs); * marks an interval that excludes 0, a difference that is real at the 95% level. McNemar's "
        "exact test per seed pair: small p means the two top-1 accuracies differ.",
    )
    return table, notes


def _provenance_table(runs: list[Run]) -> Table | None:
    rows = provenance_rows(runs)
    if not rows:
        return None
    return Table(
        "How each run ran",
        list(PROVENANCE_COLUMNS),
        rows,
        "Recorded by training: processes (world size), the device, the CPU and its hardware bfloat16 units, "
        "threads, versions, the commit of the code (+ local changes: the package's files differed from it), "
        "and the precision, memory format and compile mode actually used. A run stopped and resumed trains in "
        "parts: its start is the first part's, its duration their sum (≥: an older fbl did not record some "
        "parts; '(last part)': it recorded none but the last), Threads and Code list what each part used, and "
        "Device, where the parts ran on different devices or precisions, each stretch of them with its epochs "
        "('summary only': a part that trained none); CPU and Ran as are the finishing part's.",
    )
