"""Test-agnostic numbers of each method: accuracy under SADE's eleven test priors, from run folders.

The uncorrected accuracy under a prior is :math:`\\sum_c \\pi_c \\mathrm{acc}_c` of the last epoch's
per-class test accuracies (:mod:`fbl.label_shift`), so every run folder has it, old ones included.
The prior-corrected accuracy needs the evaluation's logits and is read from ``last.test_priors``;
runs from before it was recorded give ``None`` there. Where a run has a lossless estimate (CIFAR-LT,
``last_estimate``), the same sums of its per-class accuracies give each prior's accuracy on lossless
images, with the standard error of :func:`fbl.label_shift.prior_weighted_standard_error`.
"""

from __future__ import annotations

from fbl.aggregation_record import load_aggregation
from fbl.label_shift import (
    SADE_PRIORS,
    accuracy_under_priors,
    prior_weighted_accuracy,
    prior_weighted_standard_error,
)
from fbl.reports.aggregate import mean_std
from fbl.reports.estimate_table import run_estimate
from fbl.reports.methods import Method
from fbl.reports.run_folder import Run, require

PRIOR_NAMES = tuple(prior.name for prior in SADE_PRIORS)
FORMS = ("uncorrected", "corrected")


def run_prior_accuracies(run: Run) -> dict[str, dict[str, float | None]]:
    """``{prior name: {"uncorrected", "corrected"}}`` of one run at its last epoch (percent)."""
    table = accuracy_under_priors(require(run, "last.per_class_acc"), run.class_counts)
    stored = run.last.get("test_priors") or {}
    for name, row in table.items():
        row["corrected"] = (stored.get(name) or {}).get("corrected")
    return table


def method_prior_rows(methods: list[Method]) -> list[dict]:
    """Per method: ``{"method", "n", "uncorrected": {prior: (mean, std)}, "corrected": {prior: (mean, std)}}``
    over its seeds (std ``None`` with one seed; ``(None, None)`` where no run has the number)."""
    rows = []
    for method in methods:
        per_run = [run_prior_accuracies(run) for run in method.runs]
        row = {"method": method.label, "n": len(method.runs)}
        for form in FORMS:
            row[form] = {name: mean_std([r[name][form] for r in per_run]) for name in PRIOR_NAMES}
        rows.append(row)
    return rows


def run_estimate_priors(run: Run) -> dict[str, dict[str, tuple[float | None, float | None]]] | None:
    """``{form: {prior name: (accuracy, standard error)}}`` on the run's lossless estimate (``None`` without
    one): ``uncorrected`` from its per-class accuracies, with the SE; ``corrected`` (the prior correction,
    without an SE) where training recorded it (``last_estimate.<split>.test_priors``)."""
    estimate = run_estimate(run)
    if estimate is None or "per_class_n" not in estimate:
        return None
    accuracy, sizes = estimate["per_class_acc"], estimate["per_class_n"]
    uncorrected = {}
    for prior in SADE_PRIORS:
        weights = prior.weights(run.class_counts)
        uncorrected[prior.name] = (
            prior_weighted_accuracy(accuracy, weights),
            prior_weighted_standard_error(accuracy, sizes, weights),
        )
    recorded = estimate.get("test_priors") or {}
    return {
        "uncorrected": uncorrected,
        "corrected": {name: ((recorded.get(name) or {}).get("corrected"), None) for name in PRIOR_NAMES},
    }


def estimate_prior_rows(methods: list[Method]) -> list[dict]:
    """Per run with an estimate and per form (uncorrected, then corrected where recorded) ``{"method", "seed",
    "form", "priors"}``, then per method and form that several runs have the same with ``"seed": "mean of n"``:
    the mean accuracy and the mean standard error over those n runs (a run that recorded no corrected
    numbers counts in the uncorrected mean only)."""
    rows = []
    for method in methods:
        per_run = _per_run_estimate_priors(method)
        for seed, priors in per_run:
            rows += [
                {"method": method.label, "seed": seed, "form": form, "priors": priors[form]}
                for form in FORMS
                if _recorded(priors[form])
            ]
        for form, (means, n) in _form_means(per_run).items():
            if n > 1:
                rows.append({"method": method.label, "seed": f"mean of {n}", "form": form, "priors": means})
    return rows


def method_estimate_prior_rows(methods: list[Method]) -> list[dict]:
    """Per method with an estimate: ``{"method", "uncorrected": {prior: (accuracy, SE)}, "corrected": ..., "n":
    {form: runs}}``, each form the mean over the n runs that have it (:func:`estimate_prior_rows`' numbers;
    ``None`` where none has)."""
    rows = []
    for method in methods:
        per_run = _per_run_estimate_priors(method)
        if per_run:
            means = _form_means(per_run)
            rows.append({"method": method.label, **{form: means[form][0] for form in FORMS},
                         "n": {form: means[form][1] for form in FORMS}})  # fmt: skip
    return rows


def _per_run_estimate_priors(method: Method) -> list[tuple[str, dict]]:
    """``(seed, run_estimate_priors(run))`` for the method's runs that have a lossless estimate."""
    return [(str(run.seed), priors) for run in method.runs if (priors := run_estimate_priors(run)) is not None]


def _form_means(per_run: list[tuple[str, dict]]) -> dict[str, tuple[dict | None, int]]:
    """Per form, the mean over the runs that recorded it (``None`` where none did) and how many they are."""
    means = {}
    for form in FORMS:
        having = [priors[form] for _, priors in per_run if _recorded(priors[form])]
        means[form] = (_mean_priors(having) if having else None, len(having))
    return means


def _recorded(priors: dict[str, tuple[float | None, float | None]]) -> bool:
    return any(value is not None for value, _ in priors.values())


def _mean_priors(having: list[dict]) -> dict[str, tuple[float | None, float | None]]:
    """Per prior, the mean accuracy and the mean standard error over runs' ``{prior: (accuracy, SE)}``."""
    return {name: tuple(mean_std([p[name][i] for p in having])[0] for i in (0, 1)) for name in PRIOR_NAMES}


#: The two rows of SADE's test-agnostic protocol (``fbl eval --test-time-aggregation``): learnt weights, plain average.
AGGREGATION_FORMS = ("aggregated", "averaged")


def method_aggregation_rows(methods: list[Method], split: str | None = None) -> list[dict]:
    """Per method whose runs kept a test-time aggregation table of ``split`` (default: their reported split):
    ``{"method", "n", "aggregated": {prior: (mean, std)}, "averaged": {...}}`` over those runs."""
    rows = []
    for method in methods:
        tables = [load_aggregation(run.path, split or run.reported_split) for run in method.runs]
        tables = [table for table in tables if table]
        if not tables:
            continue
        row = {"method": method.label, "n": len(tables)}
        for form in AGGREGATION_FORMS:
            row[form] = {name: mean_std([(t.get(name) or {}).get(form) for t in tables]) for name in PRIOR_NAMES}
        rows.append(row)
    return rows


def short_prior_name(name: str) -> str:
    """``"forward-50"`` -> ``"F50"``, ``"uniform"`` -> ``"U"``, ``"backward-2"`` -> ``"B2"`` (table and axis labels)."""
    if name == "uniform":
        return "U"
    direction, _, rho = name.partition("-")
    return direction[:1].upper() + rho
