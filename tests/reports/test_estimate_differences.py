"""The report's paired differences on the lossless estimate, from hand-written run folders with predictions."""

import json
import math

import numpy as np
import yaml

from fbl.predictions import Predictions, save_predictions
from fbl.reports.estimate_differences import best_method, difference_table
from fbl.reports.methods import group_methods
from fbl.reports.run_folder import load_runs

from ._fake_runs import config

COUNTS = [500, 60, 10]
#: Estimate images: 40 of class 0, 100 of class 1, 200 of class 2.
LABELS = np.repeat([0, 1, 2], [40, 100, 200])


def _write_run(folder, loss, seed, right, estimate_top1, predictions=True, images=None):
    """A run whose estimate predictions are right exactly where ``right`` is true (else one class over);
    ``images``: the positions of LABELS it holds, named by those positions (default: all, unnamed)."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config(loss, seed), sort_keys=False))
    estimate = {"top1": estimate_top1, "se": 0.5, "per_class_acc": [0.0] * 3, "per_class_n": [40, 100, 200]}
    summary = {"last": {"top1": 50.0, "per_class_acc": [50.0] * 3, "epoch": 3}, "class_counts": COUNTS,
               "last_estimate": {"lossless_estimate": estimate}}  # fmt: skip
    (folder / "summary.json").write_text(json.dumps(summary))
    if predictions:
        predicted = np.where(right, LABELS, (LABELS + 1) % 3)
        held = np.arange(len(LABELS)) if images is None else images
        named = None if images is None else images
        predictions = Predictions(np.arange(len(held)), LABELS[held], predicted[held], 3, image=named)
        save_predictions(folder, "lossless_estimate", predictions)


def _right(rng, p_per_class):
    return rng.random(len(LABELS)) < np.asarray(p_per_class)[LABELS]


def _longhand(pairs):
    """Δ and SE, class by class: d_i averaged over the pairs, Δ = mean_c mean_i d_i, SE = sqrt(Σ_c var_c/n_c)/C."""
    d = np.mean([a.astype(float) - b.astype(float) for a, b in pairs], axis=0)
    means, variances = [], []
    for c in range(3):
        dc = d[LABELS == c]
        means.append(dc.mean())
        variances.append(((dc - dc.mean()) ** 2).mean() / len(dc))
    return 100 * sum(means) / 3, 100 * math.sqrt(sum(variances)) / 3


def test_each_method_against_the_best_on_the_estimate_longhand(tmp_path):
    rng = np.random.default_rng(0)
    fbl = {s: _right(rng, [0.8, 0.8, 0.9]) for s in (1, 2)}
    ce = {s: _right(rng, [0.95, 0.6, 0.4]) for s in (1, 2)}
    for seed in (1, 2):
        _write_run(tmp_path / "fbl" / f"s{seed}", "fbl", seed, fbl[seed], estimate_top1=83.0)
        _write_run(tmp_path / "ce" / f"s{seed}", "ce", seed, ce[seed], estimate_top1=65.0)
    methods = group_methods(load_runs([tmp_path]))
    assert best_method(methods).label.startswith("fbl")
    table, notes = difference_table(methods)
    assert notes == [] and table.title.endswith(f"against {best_method(methods).label}")
    (row,) = table.rows
    cells = dict(zip(table.columns, row, strict=True))
    difference, se = _longhand([(ce[s], fbl[s]) for s in (1, 2)])
    per_pair = [_longhand([(ce[s], fbl[s])])[0] for s in (1, 2)]
    assert cells["Seeds paired"] == "1, 2" and cells["Images"] == "340"
    assert cells["Δ estimate"] == f"{difference:+.2f} ± {np.std(per_pair, ddof=1):.2f}"
    assert cells["Paired SE"] == f"{se:.2f}"
    assert cells["95% interval"] == f"[{difference - 1.959964 * se:+.2f}, {difference + 1.959964 * se:+.2f}]"
    assert cells["z"] == f"{difference / se:+.2f}" and cells["Real"] == "yes"


def test_runs_without_estimate_predictions_are_a_note_with_the_command_that_adds_them(tmp_path):
    rng = np.random.default_rng(1)
    _write_run(tmp_path / "fbl" / "s1", "fbl", 1, _right(rng, [0.8] * 3), estimate_top1=80.0)
    _write_run(tmp_path / "ce" / "s1", "ce", 1, _right(rng, [0.8] * 3), estimate_top1=70.0, predictions=False)
    table, notes = difference_table(group_methods(load_runs([tmp_path])))
    assert table is None
    (note,) = notes
    assert "no predictions kept" in note and "fbl eval RUN --split lossless_estimate --keep-predictions" in note


def test_a_difference_within_the_paired_error_is_not_real(tmp_path):
    rng = np.random.default_rng(2)
    right = _right(rng, [0.8, 0.8, 0.8])
    other = right.copy()
    other[:2] = ~other[:2]  # two class-0 images of 40 change
    _write_run(tmp_path / "fbl" / "s1", "fbl", 1, right, estimate_top1=80.0)
    _write_run(tmp_path / "ce" / "s1", "ce", 1, other, estimate_top1=79.0)
    table, _ = difference_table(group_methods(load_runs([tmp_path])))
    cells = dict(zip(table.columns, table.rows[0], strict=True))
    assert cells["Real"] == "no"


def test_a_run_whose_validation_split_took_images_is_paired_on_the_images_both_hold(tmp_path):
    rng = np.random.default_rng(3)
    fbl, ce = _right(rng, [0.8, 0.8, 0.9]), _right(rng, [0.95, 0.6, 0.4])
    kept = np.flatnonzero(np.arange(len(LABELS)) % 5 != 0)  # its validation split took every fifth image
    _write_run(tmp_path / "fbl" / "s1", "fbl", 1, fbl, estimate_top1=83.0, images=np.arange(len(LABELS)))
    _write_run(tmp_path / "ce" / "s1", "ce", 1, ce, estimate_top1=65.0, images=rng.permutation(kept))
    table, notes = difference_table(group_methods(load_runs([tmp_path])))
    cells = dict(zip(table.columns, table.rows[0], strict=True))
    assert notes == [] and cells["Images"] == f"{len(kept):,}"
    labels = LABELS[kept]
    d = ce[kept].astype(float) - fbl[kept].astype(float)
    means = [d[labels == c].mean() for c in range(3)]
    se = 100 * math.sqrt(sum(d[labels == c].var() / (labels == c).sum() for c in range(3))) / 3
    assert cells["Δ estimate"] == f"{100 * sum(means) / 3:+.2f}" and cells["Paired SE"] == f"{se:.2f}"
