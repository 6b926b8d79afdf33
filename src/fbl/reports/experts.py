"""The report's "Experts" section: each expert of a multi-expert model beside the ensemble it forms.

Training writes ``summary.json``'s ``experts`` for multi-expert models (RIDE, SADE, BalPoE, the FBL
experts; :func:`fbl.engine.expert_metrics.evaluate_experts`): per expert, top-1, many/medium/few,
the worst class and the mean per-class feature norm of each shot group, on the reported split at the
last epoch. Here each (method, expert) is one row, mean ± std over seeds like every other table,
with the ensemble's own row (the method's headline numbers) first, so a reader sees what aggregating
the experts buys. Which expert is which comes from the run's config through :data:`EXPERT_NAMES`,
one entry per ensemble loss. Runs without ``experts`` (single models, older run folders) add no row;
with none at all there is no section and no figure (:func:`expert_groups_figure`).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fbl.balanced_estimate import ESTIMATE_KEYS
from fbl.data.lossless_estimate_split import LOSSLESS_ESTIMATE
from fbl.data.shot_groups import SHOT_NAMES, shot_groups
from fbl.errors import ConfigError
from fbl.losses import LOSSES, loss_class
from fbl.registry import normalize_name
from fbl.reports.aggregate import format_mean_std, mean_std
from fbl.reports.estimate_table import run_estimate
from fbl.reports.figures import literal_text, panel_grid, save_figure, series_color
from fbl.reports.methods import Method
from fbl.reports.run_folder import Run
from fbl.reports.writers import Table

#: Accuracy columns of a row, in order (percent).
ACCURACY_KEYS = ("top1", "many", "medium", "few", "worst")
ACCURACY_TITLES = {"top1": "Top-1", "many": "Many", "medium": "Medium", "few": "Few", "worst": "Worst class"}
ENSEMBLE = "ensemble"


@dataclass(frozen=True)
class ExpertNames:
    """How a loss's experts are told apart.

    ``setting`` names the option holding one value per expert, read from the run's ``loss_options``,
    else its config, else the loss constructor's default (the order in which training builds the
    loss); each value is written with ``template``. ``fixed`` names the experts outright. With
    neither, or a value count that is not the number of experts, they are numbered from 1.
    """

    template: str = "{}"
    setting: str | None = None
    fixed: tuple[str, ...] = ()


#: Expert names per ensemble loss (canonical name); a loss not listed numbers its experts.
EXPERT_NAMES = {
    "fbl-experts": ExpertNames("λ={:g}", setting="expert_lambdas"),
    "balpoe": ExpertNames("τ={:g}", setting="taus"),
    "sade": ExpertNames(fixed=("forward-LT", "uniform", "backward-LT")),
    "ride": ExpertNames(),
}


def expert_labels(config: dict, num_experts: int) -> list[str]:
    """One label per expert from a run's (flat) config: ``["λ=15", "λ=30", "λ=60"]``, ``["expert 1", ...]``."""
    loss = str(config.get("loss", ""))
    loss = LOSSES.canonical(loss) if loss in LOSSES else normalize_name(loss)  # an alias names the same experts
    names = EXPERT_NAMES.get(loss, ExpertNames())
    values = list(names.fixed) or _setting_values(loss, names.setting, config)
    if len(values) != num_experts:
        return [f"expert {k + 1}" for k in range(num_experts)]
    return [names.template.format(value) for value in values]


def _setting_values(loss: str, setting: str | None, config: dict) -> list:
    if setting is None:
        return []
    options = config.get("loss_options") or {}
    if isinstance(options, dict) and setting in options:
        value = options[setting]
    elif setting in config:
        value = config[setting]
    else:
        try:
            value = inspect.signature(loss_class(loss)).parameters[setting].default
        except (ConfigError, KeyError):  # a loss this fbl no longer has, or one without the setting
            return []
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    return values if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) else []


def group_norms(per_class_norm: Sequence[float | None], groups: dict[str, list[int]]) -> dict[str, float | None]:
    r"""Mean per-class feature norm of each shot group, :math:`\frac{1}{|G|}\sum_{c \in G} \overline{\|f\|}_c`,
    over the classes with a value, as training computes an expert's ``feature_norm``."""
    means = {}
    for group in SHOT_NAMES:
        values = [per_class_norm[c] for c in groups.get(group, []) if per_class_norm[c] is not None]
        means[group] = sum(values) / len(values) if values else None
    return means


def _ensemble_numbers(run: Run) -> dict:
    """The ensemble's own numbers in an expert entry's shape: ``run.last`` plus its group feature norms and
    its lossless estimate."""
    last = run.last
    groups = run.summary.get("groups") or shot_groups(run.class_counts)
    norms = last.get("per_class_feature_norm")
    estimate = run_estimate(run)
    return {
        **{k: last.get(k) for k in ACCURACY_KEYS},
        "feature_norm": group_norms(norms, groups) if norms else {},
        "estimates": {LOSSLESS_ESTIMATE: estimate} if estimate else {},
    }


def _row(method: Method, expert: str, entries: list[dict]) -> dict:
    """Mean and std over seeds of one expert's (or the ensemble's) entries."""
    row = {"method": method.label, "expert": expert, "n": len(entries)}
    for key in ACCURACY_KEYS:
        row[f"{key}_mean"], row[f"{key}_std"] = mean_std([e.get(key) for e in entries])
    for group in SHOT_NAMES:
        norms = [(e.get("feature_norm") or {}).get(group) for e in entries]
        row[f"norm_{group}_mean"], row[f"norm_{group}_std"] = mean_std(norms)
    shares = [None if e.get("routed_share") is None else 100.0 * e["routed_share"] for e in entries]
    row["seen_mean"], row["seen_std"] = mean_std(shares)
    estimates = [(e.get("estimates") or {}).get(LOSSLESS_ESTIMATE) or {} for e in entries]
    for key in ESTIMATE_KEYS:
        row[f"estimate_{key}_mean"], row[f"estimate_{key}_std"] = mean_std([e.get(key) for e in estimates])
    return row


def expert_rows(methods: list[Method]) -> list[dict]:
    """For each method whose runs have ``experts``: the ensemble's row, then one row per expert.

    Each row: ``method``, ``expert`` (its label, or ``"ensemble"``), ``n`` (seeds), and
    ``<key>_mean`` / ``<key>_std`` over seeds for :data:`ACCURACY_KEYS` and ``norm_many`` /
    ``norm_medium`` / ``norm_few``. Only the runs with ``experts`` count, the ensemble's row included.
    """
    rows = []
    for method in methods:
        runs = [run for run in method.runs if run.summary.get("experts")]
        if not runs:
            continue
        by_expert: dict[int, list[dict]] = {}
        for run in runs:
            for position, entry in enumerate(run.summary["experts"]):
                by_expert.setdefault(int(entry.get("expert", position)), []).append(entry)
        labels = expert_labels(runs[0].config, len(by_expert))
        rows.append(_row(method, ENSEMBLE, [_ensemble_numbers(run) for run in runs]))
        rows.extend(_row(method, label, by_expert[k]) for label, k in zip(labels, sorted(by_expert), strict=True))
    return rows


def experts_table(methods: list[Method]) -> Table | None:
    """The "Experts" table, or ``None`` when no run has per-expert numbers."""
    rows = expert_rows(methods)
    if not rows:
        return None
    routed = any(r["seen_mean"] is not None for r in rows)
    estimated = any(r["estimate_top1_mean"] is not None for r in rows)
    cells = [
        [
            r["method"],
            r["expert"],
            str(r["n"]),
            *(format_mean_std(r[f"{k}_mean"], r[f"{k}_std"]) for k in ACCURACY_KEYS),
            *(format_mean_std(r[f"norm_{g}_mean"], r[f"norm_{g}_std"]) for g in SHOT_NAMES),
            *([format_mean_std(r["seen_mean"], r["seen_std"])] if routed else []),
            *([_estimate_cell(r)] if estimated else []),
        ]
        for r in rows
    ]
    caption = (
        "Each expert of a multi-expert model on its own, beside the ensemble (the model's aggregate logits, the "
        "headline numbers): test set at the last epoch, percent, mean ± std over n seeds; ‖f‖: mean over the "
        "group's classes of the per-class mean feature norm. Experts are named from the run's config (fbl-experts: "
        "their λ; BalPoE: their τ; SADE: the test prior each fits), else numbered from 1. The ensemble's feature is "
        "the experts' features concatenated, so its norm is the root of the sum of their squared norms."
    )
    if routed:
        caption += (
            " Seen: with RIDE's router, the share of test images it sends on to the expert (the ensemble's row is "
            "then the routed prediction; the shares summed, over 100, are the experts an image uses on average)."
        )
    if estimated:
        caption += (
            " Lossless estimate: the expert's (or ensemble's) balanced top-1 on the lossless estimate, mean ± std "
            "over seeds, then its many / medium / few."
        )
    columns = ["Method", "Expert", "n", *ACCURACY_TITLES.values(), *(f"‖f‖ {g}" for g in SHOT_NAMES)]
    columns += (["Seen (%)"] if routed else []) + (["Lossless estimate (many / medium / few)"] if estimated else [])
    return Table("Experts", columns, cells, caption)


def _estimate_cell(row: dict) -> str:
    """``"79.60 ± 0.21 (77.26 / 88.98 / –)"``: the estimate's mean ± std over seeds and its group means."""
    if row["estimate_top1_mean"] is None:
        return "–"
    groups = " / ".join("–" if row[f"estimate_{g}_mean"] is None else f"{row[f'estimate_{g}_mean']:.2f}"
                        for g in SHOT_NAMES)  # fmt: skip
    return f"{format_mean_std(row['estimate_top1_mean'], row['estimate_top1_std'])} ({groups})"


def expert_groups_figure(methods: list[Method], path: Path) -> Path:
    """Many / medium / few accuracy of the ensemble and of each expert, one panel per multi-expert method,
    mean over seeds (the numbers of :func:`expert_rows`)."""
    by_method: dict[str, list[dict]] = {}
    for row in expert_rows(methods):
        by_method.setdefault(row["method"], []).append(row)
    if not by_method:
        raise ConfigError("no run has per-expert numbers (summary.json 'experts')")
    fig, axes = panel_grid(len(by_method), size=3.2, max_cols=3)
    for ax, (label, rows) in zip(axes, by_method.items(), strict=False):
        width = 0.8 / len(rows)
        for i, row in enumerate(rows):
            heights = [row[f"{group}_mean"] or 0.0 for group in SHOT_NAMES]
            positions = [g - 0.4 + (i + 0.5) * width for g in range(len(SHOT_NAMES))]
            color = "0.3" if row["expert"] == ENSEMBLE else series_color(i - 1)
            ax.bar(positions, heights, width=width, color=color, label=literal_text(row["expert"]))
        ax.set_xticks(range(len(SHOT_NAMES)), SHOT_NAMES)
        ax.set_ylim(0, 100)
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(literal_text(f"{label} (n={rows[0]['n']})"), fontsize="small")
        ax.legend(fontsize="x-small", frameon=False)
    return save_figure(fig, path)
