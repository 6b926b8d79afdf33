"""Numbers over seeds: the method table, sweep tables, and per-class / per-epoch means.

Everything is returned as plain dicts and lists so that other commands (``fbl compare``) can
print them. A method's value is the mean over its seeds with the sample standard deviation
(``ddof=1``); with one seed the standard deviation is ``None`` (shown as "–"). Top-1 also gets the 95%
t-interval of its mean over seeds (``top1_ci95``).
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Hashable, Mapping, Sequence

from fbl.errors import ConfigError
from fbl.reports.methods import Method, group_methods, varying_keys
from fbl.reports.run_folder import Run
from fbl.statistics import seed_interval

#: Columns of the method table, in order.
METRIC_KEYS = ("top1", "many", "medium", "few", "ece")
#: The other summaries long-tail papers report (worst-class accuracy, harmonic and geometric mean of the
#: per-class accuracies, macro-F1); runs from before they were recorded give ``None``.
LONG_TAIL_KEYS = ("worst", "hmean", "gmean", "macro_f1")
STAGES = ("last", "selected", "last:SPLIT")


def mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation of the values that are not ``None`` (std ``None`` below two)."""
    present = [float(v) for v in values if v is not None and not math.isnan(v)]
    if not present:
        return None, None
    return statistics.mean(present), statistics.stdev(present) if len(present) > 1 else None


def format_mean_std(mean: float | None, std: float | None) -> str:
    """``"41.20 ± 0.53"``; the std is "–" with one value, the whole cell "–" without any."""
    if mean is None:
        return "–"
    return f"{mean:.2f} ± {std:.2f}" if std is not None else f"{mean:.2f} ± –"


def highest_mean(scores: Mapping[Hashable, Sequence[float]]) -> tuple[Hashable, float]:
    """The key whose scores have the highest mean, with that mean; the first such key on a tie.

    The one rule by which validation chooses, in ``fbl compare`` and in the report's sweep table.
    """
    means = {key: statistics.mean(values) for key, values in scores.items()}
    best = max(means, key=means.__getitem__)
    return best, means[best]


def stage_metrics(run: Run, stage: str) -> tuple[dict, int | None, str | None]:
    """``(metrics, epoch, selected on)`` of a run at ``stage``: ``"last"`` or ``"selected"`` (test set),
    or ``"last:SPLIT"``: the last epoch on an extra evaluation split (e.g. ``last:test_lossless``)."""
    if stage == "last":
        last = run.last
        return last, last.get("epoch"), None
    if stage.startswith("last:"):
        return run.last_on(stage.removeprefix("last:")), run.last.get("epoch"), None
    if stage == "selected":
        selected = run.selected
        return selected["test"], selected["epoch"], selected["on"]
    raise ValueError(f"Expected stage in {STAGES} but got {stage!r}")


def method_row(method: Method, stage: str = "last") -> dict:
    """One row of the method table: ``method, n, seeds, stage, selected_on, epochs, <metric>_mean, <metric>_std``
    for the metrics of :data:`METRIC_KEYS` and :data:`LONG_TAIL_KEYS`, and ``top1_ci95``: the 95% t-interval of
    the mean top-1 over seeds (:func:`fbl.statistics.seed_interval`; ``None`` below two seeds)."""
    per_run = [stage_metrics(run, stage) for run in method.runs]
    on = sorted({o for _, _, o in per_run if o is not None})
    row = {
        "method": method.label,
        "n": len(method.runs),
        "seeds": method.seeds,
        "stage": stage,
        "selected_on": "/".join(on) if on else None,
        "epochs": [epoch for _, epoch, _ in per_run],
    }
    for key in (*METRIC_KEYS, *LONG_TAIL_KEYS):
        row[f"{key}_mean"], row[f"{key}_std"] = mean_std([metrics.get(key) for metrics, _, _ in per_run])
    row["top1_ci95"] = seed_interval([metrics.get("top1") for metrics, _, _ in per_run])
    return row


def method_table(runs: list[Run], stage: str = "last") -> list[dict]:
    """One row per method (runs equal but for the seed): mean ± std over seeds at ``stage``."""
    return [method_row(method, stage) for method in group_methods(runs)]


def extra_splits(runs: Sequence[Run]) -> list[str]:
    """Extra evaluation splits (beyond test and val) that every run reports at its last epoch."""
    names = [set(run.summary.get("last_extra") or {}) for run in runs]
    return sorted(set.intersection(*names)) if names else []


def sweep_tables(runs: list[Run], stage: str = "last") -> list[dict]:
    """For each loss run with more than one config: ``{"loss", "keys", "rows", "chosen_on_seeds"}``.

    ``keys`` are the config keys that differ between that loss's methods (e.g. ``["lambda_"]``);
    each row holds their values followed by the :func:`method_row` numbers, sorted by those values,
    plus ``val_top1_mean`` / ``val_top1_std`` (the validation split at the last epoch) and
    ``chosen``. The chosen row is the one ``fbl compare`` picks: the highest mean validation top-1,
    taken over the seeds every grid point has (``chosen_on_seeds``), so a point trained on more
    seeds is not favoured. Without a validation split in every run nothing is chosen (the test set
    never chooses): ``chosen`` is False everywhere and ``chosen_on_seeds`` empty.
    """
    by_loss: dict[str, list[Method]] = {}
    for method in group_methods(runs):
        by_loss.setdefault(str(method.config.get("loss")), []).append(method)
    tables = []
    for loss, methods in by_loss.items():
        if len(methods) < 2:
            continue
        keys = varying_keys(methods)
        chosen, seeds = _chosen_on_validation(methods)
        rows = []
        for m in methods:
            val_mean, val_std = mean_std([_val_top1(run) for run in m.runs])
            row = {**{k: m.config.get(k) for k in keys}, **method_row(m, stage)}
            rows.append({**row, "val_top1_mean": val_mean, "val_top1_std": val_std, "chosen": m is chosen})
        rows.sort(key=lambda row: [_sortable(row[k]) for k in keys])
        tables.append({"loss": loss, "keys": keys, "rows": rows, "chosen_on_seeds": seeds})
    return tables


def _val_top1(run: Run) -> float | None:
    return (run.summary.get("last_val") or {}).get("top1")


def _chosen_on_validation(methods: list[Method]) -> tuple[Method | None, list]:
    """The method with the highest mean last-epoch validation top-1 over the seeds all methods share."""
    if any(_val_top1(run) is None for m in methods for run in m.runs):
        return None, []
    shared = set.intersection(*({run.seed for run in m.runs} for m in methods))
    if not shared:
        return None, []
    scores = {i: [_val_top1(run) for run in m.runs if run.seed in shared] for i, m in enumerate(methods)}
    best, _ = highest_mean(scores)
    return methods[best], sorted(shared, key=_sortable)


def per_class_mean(run_lists: Sequence[Sequence[float | None]], what: str = "per-class values") -> list[float | None]:
    """Class-wise mean over runs, ignoring ``None`` (a class without samples); ``None`` where no run has a value."""
    lengths = {len(values) for values in run_lists}
    if len(lengths) != 1:
        raise ConfigError(f"{what} differ in number of classes between seeds of one method: {sorted(lengths)}")
    return [mean_std(column)[0] for column in zip(*run_lists, strict=False)]


def epoch_mean(runs: Sequence[Run], value: Callable[[dict], float | None]) -> tuple[list[int], list[float]]:
    """``(epochs, mean over runs)`` of ``value(record)`` for every epoch where at least one run has a value."""
    by_epoch: dict[int, list[float]] = {}
    for run in runs:
        for record in run.epochs:
            v = value(record)
            if v is not None and "epoch" in record:
                by_epoch.setdefault(int(record["epoch"]), []).append(float(v))
    epochs = sorted(by_epoch)
    return epochs, [statistics.mean(by_epoch[e]) for e in epochs]


def _sortable(value) -> tuple:
    if isinstance(value, bool) or value is None:
        return (0, str(value))
    if isinstance(value, (int, float)):
        return (1, value)
    return (2, json.dumps(value, sort_keys=True, default=str))
