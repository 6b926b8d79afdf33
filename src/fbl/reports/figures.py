"""The report's figures, each drawn from run folders alone and saved as a small PNG.

Figures are built on :class:`matplotlib.figure.Figure` directly rather than through ``pyplot``:
no GUI backend is ever selected (``savefig`` renders with Agg), nothing global is switched for
the caller's process, and no figure is kept alive by pyplot's registry.

Each function takes the methods (see :func:`fbl.reports.methods.group_methods`) and a PNG path and
returns that path; the PNG is written whole or not at all (:func:`fbl.atomic_files.atomic_output`).
Text that comes from run folders (method labels) goes through :func:`literal_text`, so a ``$`` in a
label is a dollar sign, not the start of matplotlib mathtext (``$\\foo$`` would fail to draw).
A figure that needs a field a run folder lacks raises a one-line :class:`~fbl.errors.ConfigError`
naming the run folder and the field.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from fbl.atomic_files import atomic_output
from fbl.errors import ConfigError
from fbl.reports.aggregate import epoch_mean, per_class_mean
from fbl.reports.calibration import add_bins, bin_accuracy_confidence, expected_calibration_error
from fbl.reports.label_shift import (
    FORMS,
    PRIOR_NAMES,
    method_estimate_prior_rows,
    method_prior_rows,
    short_prior_name,
)
from fbl.reports.methods import Method
from fbl.reports.run_folder import require

DPI = 80
#: Training writes the confusion matrix only up to this many classes.
MAX_CONFUSION_CLASSES = 100
#: A legend with more entries goes beside the panels (:func:`_legend`), in a strip this wide.
MAX_LEGEND_ENTRIES_INSIDE = 6
LEGEND_WIDTH_INCHES = 3.5


def series_color(index: int) -> str:
    return f"C{index % 10}"


def save_figure(fig: Figure, path: Path) -> Path:
    with atomic_output(path, "figure") as handle:
        fig.savefig(handle, dpi=DPI, format="png")
    return path


def literal_text(text: str) -> str:
    """``text`` as matplotlib shows it literally: an unescaped ``$`` would start mathtext."""
    return str(text).replace("$", r"\$")


def _legend(ax, methods: list[Method]) -> None:
    """The axes' legend: over the plot when it is short, else beside the figure's panels, the figure widened to
    make room, so that a report of many runs (an uncorrected and a corrected line each) does not hide the lines."""
    if not methods:
        return
    handles, labels = ax.get_legend_handles_labels()
    if len(labels) <= MAX_LEGEND_ENTRIES_INSIDE:
        ax.legend(fontsize="small", frameon=False)
        return
    fig = ax.figure
    fig.set_figwidth(fig.get_figwidth() + LEGEND_WIDTH_INCHES)
    fig.legend(handles, labels, loc="outside right upper", fontsize="x-small", frameon=False)


def per_class_accuracy(methods: list[Method], path: Path) -> Path:
    """Per-class test accuracy at the last epoch against the class's training count (log x), mean over seeds."""
    fig = Figure(figsize=(6, 3.6), layout="constrained")
    ax = fig.add_subplot()
    for i, method in enumerate(methods):
        counts = require(method.runs[0], "class_counts")
        accuracy = per_class_mean(
            [require(run, "last.per_class_acc") for run in method.runs], f"per-class accuracies of {method.label}"
        )
        if len(counts) != len(accuracy):
            raise ConfigError(f"run {method.runs[0].path}: class_counts and last.per_class_acc differ in length")
        points = sorted((n, a) for n, a in zip(counts, accuracy, strict=False) if a is not None)
        ax.plot(
            [n for n, _ in points],
            [a for _, a in points],
            marker="o",
            markersize=3,
            color=series_color(i),
            label=literal_text(f"{method.label} (n={len(method.runs)})"),
        )
    ax.set_xscale("log")
    ax.set_xlabel("training images of the class")
    ax.set_ylabel("test top-1 accuracy (%)")
    _legend(ax, methods)
    return save_figure(fig, path)


def feature_norms(methods: list[Method], path: Path, split: str = "test") -> Path:
    """Per-class mean feature norm ``||f||`` against class index, mean over seeds.

    ``split="train"``: on the training set at the end of training (``train_feature_norms``);
    ``split="test"``: on the test set at the last epoch (``last.per_class_feature_norm``).
    """
    field = {"train": "train_feature_norms", "test": "last.per_class_feature_norm"}.get(split)
    if field is None:
        raise ValueError(f"Expected split 'train' or 'test' but got {split!r}")
    fig = Figure(figsize=(6, 3.6), layout="constrained")
    ax = fig.add_subplot()
    for i, method in enumerate(methods):
        norms = per_class_mean([require(run, field) for run in method.runs], f"{field} of {method.label}")
        shown = [(c, v) for c, v in enumerate(norms) if v is not None]
        ax.plot(
            [c for c, _ in shown],
            [v for _, v in shown],
            marker="o",
            markersize=3,
            color=series_color(i),
            label=literal_text(f"{method.label} (n={len(method.runs)})"),
        )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("class index")
    ax.set_ylabel(f"mean feature norm, {split} set")
    _legend(ax, methods)
    return save_figure(fig, path)


def training_curves(methods: list[Method], path: Path) -> Path:
    """Train loss, test top-1, curriculum factor α and learning rate against epoch, mean over seeds."""
    for method in methods:
        for run in method.runs:
            if not run.epochs:
                raise ConfigError(f"run {run.path}: metrics.jsonl is missing or empty")
    panels = [
        ("train loss", lambda r: r.get("train_loss")),
        ("test top-1 (%)", lambda r: (r.get("eval") or {}).get("top1")),
        ("α (curriculum factor)", lambda r: r.get("alpha")),
        ("learning rate", lambda r: r.get("lr")),
    ]
    fig = Figure(figsize=(9, 5.4), layout="constrained")
    axes = fig.subplots(2, 2, sharex=True).ravel()
    for ax, (title, value) in zip(axes, panels, strict=False):
        for i, method in enumerate(methods):
            epochs, values = epoch_mean(method.runs, value)
            if epochs:
                ax.plot([e + 1 for e in epochs], values, color=series_color(i), label=literal_text(method.label))
        ax.set_title(title, fontsize="medium")
    for ax in axes[2:]:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
    _legend(axes[0], methods)
    return save_figure(fig, path)


def panel_grid(count: int, size: float = 2.8, max_cols: int = 4):
    cols = min(max_cols, count)
    rows = -(-count // cols)
    fig = Figure(figsize=(size * cols, size * rows + 0.3), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, axes


def reliability_diagrams(methods: list[Method], path: Path) -> Path:
    """Reliability diagram per method: per-bin accuracy against confidence, bins summed over seeds."""
    bins_per_method = [add_bins([require(run, "last.calibration") for run in m.runs]) for m in methods]
    fig, axes = panel_grid(len(methods))
    for ax, method, bins in zip(axes, methods, bins_per_method, strict=False):
        accuracy, confidence = bin_accuracy_confidence(bins)
        width = 1.0 / len(accuracy)
        lefts = [k * width for k in range(len(accuracy))]
        ax.bar(
            lefts,
            [a or 0.0 for a in accuracy],
            width=width,
            align="edge",
            edgecolor="black",
            linewidth=0.5,
            color="C0",
            label="accuracy",
        )
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
        shown = [(x + width / 2, c) for x, c in zip(lefts, confidence, strict=False) if c is not None]
        ax.plot([x for x, _ in shown], [c for _, c in shown], "o", color="C3", markersize=3, label="confidence")
        ece = expected_calibration_error(bins)
        ece_text = f"{ece:.2f}%" if ece is not None else "–"
        ax.set_title(literal_text(f"{method.label}\nECE {ece_text} (n={len(method.runs)})"), fontsize="small")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
    return save_figure(fig, path)


def confusion_matrices(methods: list[Method], path: Path) -> Path:
    """Row-normalised test confusion matrix per method (rows: true class), counts summed over seeds.

    Drawn for methods with at most 100 classes, the ones training writes ``confusion`` for.
    """
    shown = [m for m in methods if len(require(m.runs[0], "class_counts")) <= MAX_CONFUSION_CLASSES]
    if not shown:
        raise ConfigError(f"no confusion matrix: every method has more than {MAX_CONFUSION_CLASSES} classes")
    matrices = []
    for method in shown:
        per_run = [require(run, "last.confusion") for run in method.runs]
        size = len(per_run[0])
        total = [[sum(m[i][j] for m in per_run) for j in range(size)] for i in range(size)]
        matrices.append([[v / sum(row) if sum(row) else 0.0 for v in row] for row in total])
    fig, axes = panel_grid(len(shown))
    image = None
    for ax, method, matrix in zip(axes, shown, matrices, strict=False):
        image = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="Blues", interpolation="nearest")
        ax.set_title(literal_text(f"{method.label} (n={len(method.runs)})"), fontsize="small")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
    fig.colorbar(image, ax=list(axes[: len(shown)]), shrink=0.8, label="fraction of the true class")
    return save_figure(fig, path)


def accuracy_under_test_priors(methods: list[Method], path: Path) -> Path:
    """Test accuracy under SADE's test priors (forward-50 ... uniform ... backward-50), one line per method:
    solid without correction, dashed (same colour) with the prior correction where runs recorded it."""
    lines = []
    for i, row in enumerate(method_prior_rows(methods)):
        for form in FORMS:
            points = [(x, row[form][name][0], None) for x, name in enumerate(PRIOR_NAMES)]
            lines.append((i, f"{row['method']} (n={row['n']})", form, points))
    return _prior_lines(lines, "test top-1 accuracy (%)", methods, path)


def accuracy_under_test_priors_on_estimate(methods: list[Method], path: Path) -> Path:
    """As :func:`accuracy_under_test_priors`, on the lossless estimate's per-class accuracies, with ± 1 standard
    error bars (uncorrected); dashed, the prior correction where training recorded it."""
    lines = []
    for i, row in enumerate(method_estimate_prior_rows(methods)):
        for form in FORMS:
            if row[form] is not None:
                points = [(x, *row[form][name]) for x, name in enumerate(PRIOR_NAMES)]
                lines.append((i, f"{row['method']} (n={row['n'][form]})", form, points))
    return _prior_lines(lines, "top-1 on the lossless estimate (%)", methods, path)


def _prior_lines(lines: list[tuple], ylabel: str, methods: list[Method], path: Path) -> Path:
    """One line per ``(colour index, label, form, [(prior position, accuracy, SE or None)])``, points without an
    accuracy left out: solid uncorrected, dashed prior-corrected, error bars where every point has an SE."""
    fig = Figure(figsize=(7.2, 3.8), layout="constrained")
    ax = fig.add_subplot()
    for i, label, form, points in lines:
        points = [(x, y, se) for x, y, se in points if y is not None]
        if not points:
            continue
        xs, ys, ses = zip(*points, strict=True)
        bars = None if any(se is None for se in ses) else ses
        text = literal_text(label + (", prior-corrected" if form == "corrected" else ""))
        ax.errorbar(xs, ys, yerr=bars, fmt="--" if form == "corrected" else "-", marker="o", markersize=3,
                    capsize=2, color=series_color(i), label=text)  # fmt: skip
    ax.set_xticks(range(len(PRIOR_NAMES)), [short_prior_name(name) for name in PRIOR_NAMES])
    ax.axvline(PRIOR_NAMES.index("uniform"), color="grey", linewidth=0.5)
    ax.set_xlabel("test class prior (F: forward, U: uniform, B: backward long-tailed; number: imbalance)")
    ax.set_ylabel(ylabel)
    _legend(ax, methods)
    return save_figure(fig, path)
