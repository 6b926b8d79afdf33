"""A report from finished run folders: tables over seeds and figures, as Markdown and HTML.

No model is loaded and nothing is retrained: everything comes from what training wrote.
Beside mean ± std over seeds, the report shows what long-tail papers report and what a reader needs
to tell a real difference from luck (:mod:`fbl.reports.evidence_tables`): worst-class accuracy,
harmonic/geometric mean of per-class accuracy and macro-F1; accuracy under SADE's test priors with and
without the prior correction (a table and a figure); per-run 95% intervals over the test images; each
method against a reference on the same images (paired bootstrap, McNemar); the lossless estimate beside the
1,000 lossless test images (CIFAR-LT here); the 95% t-interval of top-1 over seeds; and how each run ran.
For multi-expert models, each expert on its own beside the ensemble (:mod:`fbl.reports.experts`).
A figure that needs a field some run folder lacks (older runs) is left out with a one-line
note naming the run folder and the field, logged as a warning; the tables need only the
fields every run folder has.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path

from fbl.errors import ConfigError
from fbl.reports import figures
from fbl.reports.aggregate import METRIC_KEYS, extra_splits, format_mean_std, method_table, sweep_tables
from fbl.reports.evidence_tables import evidence_tables
from fbl.reports.experts import expert_groups_figure, expert_rows, experts_table
from fbl.reports.label_shift import method_estimate_prior_rows
from fbl.reports.methods import Method, group_methods
from fbl.reports.report_folder import ReportFolder
from fbl.reports.run_folder import Run, load_runs
from fbl.reports.significance import format_interval
from fbl.reports.writers import FigureFile, ReportContent, Table, write_html, write_markdown

logger = logging.getLogger(__name__)

#: ``(file stem, title, caption, draw(methods, path))`` of every figure, in report order.
FIGURES: list[tuple[str, str, str, Callable[[list[Method], Path], Path]]] = [
    (
        "per_class_accuracy",
        "Per-class test accuracy against training count",
        "Last epoch, mean over seeds; log x.",
        figures.per_class_accuracy,
    ),
    (
        "feature_norms_train",
        "Per-class mean feature norm, train set",
        "At the end of training, mean over seeds.",
        partial(figures.feature_norms, split="train"),
    ),
    (
        "feature_norms_test",
        "Per-class mean feature norm, test set",
        "Last epoch, mean over seeds.",
        partial(figures.feature_norms, split="test"),
    ),
    (
        "training_curves",
        "Training curves",
        "Mean over seeds at each epoch (counted from 1, as in the training log); test top-1 where evaluated.",
        figures.training_curves,
    ),
    (
        "reliability",
        "Reliability diagrams",
        "Test set at the last epoch, 15 equal-width confidence bins summed over seeds.",
        figures.reliability_diagrams,
    ),
    (
        "confusion",
        "Confusion matrices",
        (
            "Test set at the last epoch, rows = true class, normalised per row, counts summed over seeds "
            "(methods with at most 100 classes)."
        ),
        figures.confusion_matrices,
    ),
    (
        "test_priors",
        "Accuracy against the test class prior",
        (
            "Test accuracy if the test classes followed each of SADE's priors (F: forward long-tailed, U: uniform, "
            "B: backward; number: imbalance), mean over seeds; dashed: with the post-hoc prior correction."
        ),
        figures.accuracy_under_test_priors,
    ),
]

#: Drawn after :data:`FIGURES` only when some run has a lossless estimate; otherwise absent, without a note.
ESTIMATE_FIGURE = (
    "test_priors_estimate",
    "Accuracy against the test class prior, lossless estimate",
    (
        "As the figure above, from each run's per-class accuracies on the lossless estimate (lossless images it "
        "neither trained nor validated on), mean over seeds; bars: ± 1 standard error of the estimate's images; "
        "dashed: the prior correction, where training recorded it."
    ),
    figures.accuracy_under_test_priors_on_estimate,
)

#: Drawn after :data:`FIGURES` only when some run has per-expert numbers; otherwise absent, without a note.
EXPERTS_FIGURE = (
    "experts",
    "Experts by shot group",
    "Many / medium / few test accuracy of the ensemble (grey) and of each expert, last epoch, mean over seeds.",
    expert_groups_figure,
)

METRIC_TITLES = {"top1": "Top-1", "many": "Many", "medium": "Medium", "few": "Few", "ece": "ECE"}


def _epochs_text(epochs: list) -> str:
    """Epochs as people count them, from 1 as the training log does (run folders store the index from 0)."""
    known = sorted({e + 1 for e in epochs if e is not None})
    if not known:
        return "–"
    return str(known[0]) if len(known) == 1 else f"{known[0]}–{known[-1]}"


def _metric_cells(row: dict) -> list[str]:
    """Mean ± std per metric; top-1 also with its 95% t-interval over seeds (two seeds or more)."""
    cells = [format_mean_std(row[f"{k}_mean"], row[f"{k}_std"]) for k in METRIC_KEYS]
    if row.get("top1_ci95"):
        cells[METRIC_KEYS.index("top1")] += f" {format_interval(row['top1_ci95'])}"
    return cells


def _last_epoch_table(runs: list[Run], stage: str, title: str, caption: str) -> Table:
    return Table(
        title,
        ["Method", "n", "Epoch", *(METRIC_TITLES[k] for k in METRIC_KEYS)],
        [[r["method"], str(r["n"]), _epochs_text(r["epochs"]), *_metric_cells(r)] for r in method_table(runs, stage)],
        caption,
    )


def _method_tables(runs: list[Run]) -> list[Table]:
    metric_columns = [METRIC_TITLES[k] for k in METRIC_KEYS]
    tables = [
        _last_epoch_table(
            runs,
            "last",
            "Last epoch (headline)",
            "Test set, percent; mean ± sample std (ddof=1) over n seeds, brackets: 95% t-interval of top-1's mean "
            "over the seeds; epochs counted from 1, as in the training log.",
        )
    ]
    selected = method_table(runs, "selected")
    tables.append(
        Table(
            "Selected epoch",
            ["Method", "n", "Selected on", "Epoch", *metric_columns],
            [
                [r["method"], str(r["n"]), r["selected_on"] or "–", _epochs_text(r["epochs"]), *_metric_cells(r)]
                for r in selected
            ],
            "Test-set numbers at the epoch chosen on the split named in 'Selected on' "
            "(chosen on test: optimistic, not a held-out result).",
        )
    )
    for split in extra_splits(runs):
        caption = f"The extra evaluation split '{split}' the dataset offers, at the same epochs as the headline."
        tables.append(_last_epoch_table(runs, f"last:{split}", f"Last epoch on {split}", caption))
    tables.extend(_sweep_table(sweep, metric_columns) for sweep in sweep_tables(runs, "last"))
    return tables


def _sweep_table(sweep: dict, metric_columns: list[str]) -> Table:
    keys, seeds = sweep["keys"], sweep["chosen_on_seeds"]

    def val_cell(row: dict) -> str:
        cell = format_mean_std(row["val_top1_mean"], row["val_top1_std"])
        return f"{cell} (chosen)" if row["chosen"] else cell

    if seeds:
        how = (
            f"the chosen point has the highest validation top-1 over the seeds every point has "
            f"({', '.join(map(str, seeds))}), the rule of fbl compare; the test columns are reported, not chosen on."
        )
    else:
        how = "not every run has a validation split, so no point is chosen (the test set never chooses)."
    return Table(
        f"Sweep: {sweep['loss']} over {', '.join(keys)}",
        [*keys, "Method", "n", "Val top-1", *metric_columns],
        [[str(r[k]) for k in keys] + [r["method"], str(r["n"]), val_cell(r), *_metric_cells(r)] for r in sweep["rows"]],
        f"Last epoch, one row per grid point; {how}",
    )


def _runs_table(methods: list[Method]) -> Table:
    return Table(
        "Runs",
        ["Method", "Seeds", "Run folders"],
        [[m.label, ", ".join(str(s) for s in m.seeds), ", ".join(str(r.path) for r in m.runs)] for m in methods],
    )


def _present(table: Table | None) -> list[Table]:
    return [] if table is None else [table]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def report_folder(out: str | Path) -> ReportFolder:
    """The report folder at ``out``, holding the figures of :data:`FIGURES`, :data:`ESTIMATE_FIGURE` and
    :data:`EXPERTS_FIGURE`; ``.check()`` it before long work."""
    return ReportFolder(out, [stem for stem, *_ in (*FIGURES, ESTIMATE_FIGURE, EXPERTS_FIGURE)])


def write_report(run_dirs: list[Path], out: Path) -> Path:
    """Write ``report.md``, ``report.html`` and one PNG per figure into ``out``; returns the HTML path.

    Each of ``run_dirs`` is a run folder (holding ``summary.json``) or a folder searched
    recursively for run folders. ``out`` is checked first (see :class:`ReportFolder`): a user's
    own ``report.md`` there is refused before anything is read.
    """
    folder = report_folder(out)
    folder.check()
    runs = load_runs(run_dirs)
    if not runs:
        raise ConfigError("no run folders given")
    methods = group_methods(runs)
    evidence, notes = evidence_tables(runs, methods)
    content = ReportContent(
        title="fbl report",
        intro=[f"{_count(len(runs), 'run')}, {_count(len(methods), 'method')}: {', '.join(m.label for m in methods)}."],
        tables=[*_method_tables(runs), *_present(experts_table(methods)), *evidence, _runs_table(methods)],
        notes=notes,
    )
    with folder.staging() as stage:
        drawn = _draw_figures(methods, stage, content.notes)
        placed = folder.publish([path for _, path, _ in drawn])
    content.figures = [
        FigureFile(title, path, caption) for (title, _, caption), path in zip(drawn, placed, strict=True)
    ]
    write_markdown(content, folder.path / "report.md")
    return write_html(content, folder.path / "report.html")


def _draw_figures(methods: list[Method], stage: Path, notes: list[str]) -> list[tuple[str, Path, str]]:
    """``(title, path, caption)`` of every figure drawn into ``stage``; one that lacks a field is a note instead."""
    drawn = []
    conditional = [
        *([ESTIMATE_FIGURE] if method_estimate_prior_rows(methods) else []),
        *([EXPERTS_FIGURE] if expert_rows(methods) else []),
    ]
    for stem, title, caption, draw in [*FIGURES, *conditional]:
        try:
            drawn.append((title, draw(methods, stage / f"{stem}.png"), caption))
        except ConfigError as err:
            note = f"{title} not drawn: {err}"
            logger.warning(note)
            notes.append(note)
    return drawn
