"""Terminal lines of the long-tail numbers, the test-prior table and a paired difference."""

import numpy as np

from fbl.predictions import Predictions, save_predictions
from fbl.reports.console import format_long_tail, format_paired, format_test_priors, paired_lines
from fbl.reports.run_folder import Run


def test_long_tail_line_with_intervals():
    metrics = {"top1": 70.0, "few": 40.5, "worst": 12.0, "hmean": None, "macro_f1": 66.25}
    metrics["ci95"] = {"top1": [69.125, 71.0], "few": None}
    assert format_long_tail(metrics) == (
        "top-1 70.00 [69.12, 71.00]  few 40.50  worst class 12.00  macro-F1 66.25  (95% intervals over the test images)"
    )
    assert format_long_tail({}) == ""


def test_test_prior_table_lines():
    priors = {"forward-50": {"uncorrected": 80.0, "corrected": 82.5}, "uniform": {"uncorrected": 60.0}}
    metrics = {"test_priors": priors}
    assert format_test_priors(metrics).splitlines() == [
        "test prior       F50      U",
        "uncorrected    80.00  60.00",
        "corrected      82.50      -",
    ]
    assert format_test_priors({"top1": 1.0}) == ""


def test_paired_line():
    row = {
        "method": "fbl",
        "reference": "ce",
        "top1": {"difference": 1.5, "std": 0.25, "interval": [0.5, 2.5]},
        "mcnemar": [{"p_value": 0.0031}],
    }
    assert format_paired(row) == "fbl - ce, top1: +1.50 ± 0.25 [+0.50, +2.50] * (McNemar p 0.0031)"


def _run_with_predictions(folder, seed, right):
    labels = np.arange(100) % 2
    predictions = np.where(np.arange(100) < right, labels, 1 - labels)
    save_predictions(folder, "test", Predictions(np.arange(100), labels, predictions, 2))
    return Run(path=folder, config={"seed": seed}, summary={"class_counts": [200, 10], "reported_on": "test"})


def test_paired_lines_against_ce(tmp_path):
    groups = {
        "ce": [_run_with_predictions(tmp_path / "ce", 1, 50)],
        "fbl": [_run_with_predictions(tmp_path / "fbl", 1, 60)],
        "old": [Run(path=tmp_path / "old", config={"seed": 1}, summary={"class_counts": [200, 10]})],
    }
    (line,) = paired_lines(groups)
    # 10 more of 100 images right and none fewer: +10 points, McNemar p = 2 / 2**10
    assert line.startswith("fbl - ce, top1: +10.00 [+") and line.endswith(f"] * (McNemar p {2 / 2**10:.2g})")
