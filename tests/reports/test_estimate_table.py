"""The report's "Lossless estimate" table and the method table's seed interval, from hand-written run folders."""

import json
import math

import pytest
import yaml

from fbl.reports.aggregate import method_table
from fbl.reports.estimate_table import compare, estimate_table, lossless_top1
from fbl.reports.evidence_tables import evidence_tables
from fbl.reports.label_shift import PRIOR_NAMES, method_estimate_prior_rows
from fbl.reports.methods import group_methods
from fbl.reports.run_folder import load_runs

from ._fake_runs import config

#: The method label of the fake FBL runs (λ = 60, from their config).
FBL = "fbl λ=60"
#: Three classes: many (500), medium (60), few (10) shots.
COUNTS = [500, 60, 10]
#: The 1,000-image lossless split of these runs: rows of 100, 50 and 20 images, right on 90, 40 and 10 of them.
LOSSLESS = {
    "top1": 140 / 170 * 100,  # over images; the table shows the balanced top-1
    "per_class_acc": [90.0, 80.0, 50.0],
    "confusion": [[90, 6, 4], [6, 40, 4], [5, 5, 10]],
}
#: Balanced top-1 and SE of LOSSLESS, longhand: mean of 90, 80, 50; sqrt(Σ a(1-a)/n) / 3 in percent.
LOSSLESS_TOP1 = (90 + 80 + 50) / 3
LOSSLESS_SE = 100 * math.sqrt(0.9 * 0.1 / 100 + 0.8 * 0.2 / 50 + 0.5 * 0.5 / 20) / 3  # 4.2947


def _estimate(top1: float, se: float, missing: tuple = ()) -> dict:
    """A ``last_estimate.lossless_estimate`` as training writes it (only the fields the table reads vary)."""
    return {
        "top1": top1, "se": se, "many": 91.0, "many_se": 0.5, "medium": 70.0, "medium_se": 1.5,
        "few": None if 2 in missing else 40.0, "few_se": None if 2 in missing else 3.0,
        "per_class_acc": [None if c in missing else 80.0 for c in range(3)],
        "per_class_n": [0 if c in missing else 1000 for c in range(3)],
        "missing_classes": list(missing), "partial": bool(missing),
    }  # fmt: skip


def _write_run(folder, loss, seed, jpeg_top1, estimate=None, lossless=True):
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config(loss, seed), sort_keys=False))
    last = {"top1": jpeg_top1, "per_class_acc": [jpeg_top1] * 3, "epoch": 3}  # what the other tables read
    summary = {"last": last, "class_counts": COUNTS}
    if lossless:
        summary["last_extra"] = {"test_lossless": LOSSLESS}
    if estimate is not None:
        summary["last_estimate"] = {"lossless_estimate": estimate}
    (folder / "summary.json").write_text(json.dumps(summary))


def _table(root):
    methods = group_methods(load_runs([root]))
    return estimate_table(methods)


def _rows(table):
    return {(row[0], row[1]): dict(zip(table.columns, row, strict=True)) for row in table.rows}


def test_lossless_standard_error_on_three_classes_longhand():
    result = lossless_top1(LOSSLESS, COUNTS)
    assert result["top1"] == pytest.approx(LOSSLESS_TOP1)
    assert result["se"] == pytest.approx(LOSSLESS_SE)
    assert result["se"] == pytest.approx(4.2947, abs=1e-4)
    # over the classes a partial estimate measured (class 2 missing): mean of 90 and 80, sqrt(...) / 2
    partial = lossless_top1(LOSSLESS, COUNTS, missing=[2])
    assert partial["top1"] == pytest.approx(85.0)
    assert partial["se"] == pytest.approx(100 * math.sqrt(0.9 * 0.1 / 100 + 0.8 * 0.2 / 50) / 2)
    assert lossless_top1({"top1": 80.0, "per_class_acc": [80.0] * 3}, COUNTS) is None  # no per-class sizes


def test_z_and_the_agree_decision_longhand():
    # SEs 0.6 and 0.8: the difference's SE is sqrt(0.36 + 0.64) = 1, so z = the difference
    assert compare({"top1": 80.0, "se": 0.6}, {"top1": 78.1, "se": 0.8}) == {
        "difference": pytest.approx(1.9),
        "z": pytest.approx(1.9),
        "agree": True,
    }
    assert compare({"top1": 80.0, "se": 0.6}, {"top1": 78.0, "se": 0.8})["agree"] is False  # z = 2.0
    assert compare({"top1": 78.0, "se": 0.6}, {"top1": 80.0, "se": 0.8})["z"] == pytest.approx(-2.0)
    assert compare({"top1": 78.0, "se": 0.6}, {"top1": 80.0, "se": 0.8})["agree"] is False  # |z| counts
    assert compare({"top1": 80.0, "se": 0.6}, None) == {"difference": None, "z": None, "agree": None}
    assert compare({"top1": 80.0, "se": 0.0}, {"top1": 80.0, "se": 0.0})["agree"] is None  # no error to judge by


def test_table_rows_per_run_and_per_method_longhand(tmp_path):
    for seed, (top1, se, jpeg) in enumerate([(80.0, 0.5, 67.0), (81.0, 1.0, 68.0), (82.0, 0.5, 69.0)], start=1):
        _write_run(tmp_path / f"fbl{seed}", "fbl", seed, jpeg, _estimate(top1, se))
    _write_run(tmp_path / "ce1", "ce", 1, 60.0, _estimate(85.0, 0.5))
    table = _table(tmp_path)
    assert table.title == "Lossless estimate"
    rows = _rows(table)
    first = rows[(FBL, "1")]
    assert first["Estimate"] == "80.00 ± 0.50"
    assert (first["Many"], first["Medium"], first["Few"]) == ("91.00 ± 0.50", "70.00 ± 1.50", "40.00 ± 3.00")
    assert first["Lossless 1,000"] == "73.33 ± 4.29"
    assert first["JPEG test"] == "67.00"
    # z = (80 - 73.333) / sqrt(0.5² + 4.2947²)
    z = (80.0 - LOSSLESS_TOP1) / math.sqrt(0.5**2 + LOSSLESS_SE**2)
    assert (first["Δ (est − lossless)"], first["z"], first["Agree"]) == ("+6.67", f"{z:+.2f}", "yes")
    assert f"{z:.2f}" == "1.54"
    # ce: z = (85 - 73.333) / sqrt(0.25 + 18.444) = 2.70: they disagree
    assert (rows[("ce", "1")]["z"], rows[("ce", "1")]["Agree"]) == ("+2.70", "no")
    mean = rows[(FBL, "mean of 3")]
    half = 4.303 / math.sqrt(3)  # seeds 80, 81, 82: s = 1
    assert mean["Estimate"] == f"81.00 ± 0.67 [{81 - half:.2f}, {81 + half:.2f}]"  # mean SE (0.5 + 1 + 0.5) / 3
    assert mean["Estimate"] == "81.00 ± 0.67 [78.52, 83.48]"
    assert mean["JPEG test"] == f"68.00 [{68 - half:.2f}, {68 + half:.2f}]"
    assert mean["Lossless 1,000"] == "73.33 ± 4.29 [73.33, 73.33]"  # the same images every seed: no spread
    assert mean["Agree"] == "2/3"  # seed 2: z = (81 - 73.333) / sqrt(1 + 4.2947²) = 1.74; seed 3: 2.00
    assert rows[(FBL, "3")]["z"] == f"{(82.0 - LOSSLESS_TOP1) / math.sqrt(0.5**2 + LOSSLESS_SE**2):+.2f}"
    assert (rows[(FBL, "2")]["Agree"], rows[(FBL, "3")]["Agree"]) == ("yes", "no")
    assert rows[("ce", "mean of 1")]["Estimate"] == "85.00 ± 0.50"  # one seed: no interval
    assert [row[1] for row in table.rows] == ["1", "1", "2", "3", "mean of 1", "mean of 3"]


def test_partial_estimate_is_marked_and_compared_over_its_classes(tmp_path):
    _write_run(tmp_path / "run", "fbl", 1, 67.0, _estimate(80.0, 0.5, missing=(2,)))
    row = _rows(_table(tmp_path))[(FBL, "1")]
    assert row["Estimate"] == "80.00 ± 0.50 (2/3 classes)"
    se = 100 * math.sqrt(0.9 * 0.1 / 100 + 0.8 * 0.2 / 50) / 2  # classes 0 and 1 of the lossless images
    assert row["Lossless 1,000"] == f"85.00 ± {se:.2f} (2/3 classes)"
    assert row["Few"] == "–"
    assert row["Δ (est − lossless)"] == "-5.00"


def test_runs_without_an_estimate_or_lossless_images_show_what_they_have(tmp_path):
    _write_run(tmp_path / "with", "fbl", 1, 67.0, _estimate(80.0, 0.5), lossless=False)
    _write_run(tmp_path / "without", "fbl", 2, 68.0)
    table = _table(tmp_path)
    assert [row[1] for row in table.rows] == ["1", "mean of 1"]  # seed 2 has no estimate: left out
    row = _rows(table)[(FBL, "1")]
    assert (row["Lossless 1,000"], row["z"], row["Agree"]) == ("–", "–", "–")
    assert _rows(table)[(FBL, "mean of 1")]["Agree"] == "–"


def test_table_absent_without_estimates(tmp_path):
    _write_run(tmp_path / "a", "fbl", 1, 67.0)
    _write_run(tmp_path / "b", "ce", 1, 60.0)
    runs = load_runs([tmp_path])
    assert _table(tmp_path) is None
    tables, _ = evidence_tables(runs, group_methods(runs))
    assert "Lossless estimate" not in [t.title for t in tables]


def test_table_is_among_the_evidence_tables(tmp_path):
    _write_run(tmp_path / "a", "fbl", 1, 67.0, _estimate(80.0, 0.5))
    runs = load_runs([tmp_path])
    tables, _ = evidence_tables(runs, group_methods(runs))
    assert "Lossless estimate" in [t.title for t in tables]


def test_method_table_has_the_seed_interval_of_top1(tmp_path):
    for seed, top1 in enumerate([70.0, 72.0, 74.0, 76.0, 78.0], start=1):
        _write_run(tmp_path / f"fbl{seed}", "fbl", seed, top1)
    _write_run(tmp_path / "ce1", "ce", 1, 60.0)
    rows = {row["method"]: row for row in method_table(load_runs([tmp_path]))}
    half = 2.776 * math.sqrt(10) / math.sqrt(5)  # mean 74, s = sqrt(10), n = 5
    assert rows[FBL]["top1_ci95"] == pytest.approx([74 - half, 74 + half])
    assert rows["ce"]["top1_ci95"] is None  # one seed


def test_test_prior_table_on_the_estimate_longhand(tmp_path):
    # per-class accuracies 90 / 60 / 30 on 100 / 400 / 900 images; classes ranked 0, 1, 2 by training count
    estimate = {**_estimate(60.0, 1.0), "per_class_acc": [90.0, 60.0, 30.0], "per_class_n": [100, 400, 900]}
    for seed in (1, 2):
        _write_run(tmp_path / f"fbl{seed}", "fbl", seed, 67.0, estimate)
    tables, _ = evidence_tables([], group_methods(load_runs([tmp_path])))
    (table,) = [t for t in tables if t.title == "Accuracy under test class priors, lossless estimate"]
    rows = {(row[0], row[1]): dict(zip(table.columns, row, strict=True)) for row in table.rows}
    # forward-50: pi_c ∝ 50^(-rank/2) = 1, 1/sqrt(50), 1/50
    weights = [1.0, 50**-0.5, 1 / 50]
    pi = [w / sum(weights) for w in weights]
    accuracy = sum(p * a for p, a in zip(pi, [90, 60, 30], strict=True))
    se = 100 * math.sqrt(
        sum(p**2 * a * (1 - a) / n for p, a, n in zip(pi, [0.9, 0.6, 0.3], [100, 400, 900], strict=True))
    )
    assert rows[(FBL, "1")]["F50"] == f"{accuracy:.2f} ± {se:.2f}"
    uniform_se = 100 * math.sqrt(0.9 * 0.1 / 100 + 0.6 * 0.4 / 400 + 0.3 * 0.7 / 900) / 3
    assert rows[(FBL, "2")]["U"] == f"60.00 ± {uniform_se:.2f}"
    assert rows[(FBL, "mean of 2")]["F50"] == f"{accuracy:.2f} ± {se:.2f}"
    assert [row[1] for row in table.rows] == ["1", "2", "mean of 2"]
    assert {row[2] for row in table.rows} == {"uncorrected"}  # training recorded no corrected numbers


def test_prior_corrected_rows_on_the_estimate_where_training_recorded_them(tmp_path):
    recorded = {name: {"uncorrected": 0.0, "corrected": 70.0 + i} for i, name in enumerate(PRIOR_NAMES)}
    for seed, shift in ((1, 0.0), (2, 2.0)):
        estimate = {**_estimate(60.0, 1.0), "per_class_n": [100, 100, 100]}
        estimate["test_priors"] = {n: {**v, "corrected": v["corrected"] + shift} for n, v in recorded.items()}
        _write_run(tmp_path / f"fbl{seed}", "fbl", seed, 67.0, estimate)
    tables, _ = evidence_tables([], group_methods(load_runs([tmp_path])))
    (table,) = [t for t in tables if t.title == "Accuracy under test class priors, lossless estimate"]
    rows = {(row[1], row[2]): dict(zip(table.columns, row, strict=True)) for row in table.rows}
    assert list(rows) == [(s, f) for s in ("1", "2") for f in ("uncorrected", "corrected")] + [
        ("mean of 2", "uncorrected"),
        ("mean of 2", "corrected"),
    ]
    assert rows[("1", "corrected")]["F50"] == "70.00" and rows[("2", "corrected")]["B50"] == "82.00"
    assert rows[("mean of 2", "corrected")]["U"] == "76.00"  # uniform is the sixth prior: 75 and 77
    assert rows[("1", "uncorrected")]["U"].startswith("80.00 ± ")  # from per-class accuracies, not the record


def test_the_corrected_mean_counts_only_the_runs_that_recorded_it(tmp_path):
    # seed 1 trained before the estimate recorded the prior correction: its uncorrected row only
    recorded = {name: {"uncorrected": 0.0, "corrected": 70.0} for name in PRIOR_NAMES}
    for seed in (1, 2, 3):
        estimate = {**_estimate(60.0, 1.0), "per_class_n": [100, 100, 100]}
        if seed > 1:
            estimate["test_priors"] = {n: {**v, "corrected": v["corrected"] + seed} for n, v in recorded.items()}
        _write_run(tmp_path / f"fbl{seed}", "fbl", seed, 67.0, estimate)
    tables, _ = evidence_tables([], group_methods(load_runs([tmp_path])))
    (table,) = [t for t in tables if t.title == "Accuracy under test class priors, lossless estimate"]
    rows = {(row[1], row[2]): dict(zip(table.columns, row, strict=True)) for row in table.rows}
    assert ("mean of 3", "uncorrected") in rows and ("mean of 3", "corrected") not in rows
    assert rows[("mean of 2", "corrected")]["U"] == "72.50"  # seeds 2 and 3: 72 and 73


def test_method_rows_of_the_estimate_figure_per_form_longhand(tmp_path):
    # two runs: per-class accuracies 90/60/30 and 70/60/50 on 100/400/900 images; only the second recorded
    # the prior correction (75 under every prior)
    for seed, acc in ((1, [90.0, 60.0, 30.0]), (2, [70.0, 60.0, 50.0])):
        estimate = {**_estimate(60.0, 1.0), "per_class_acc": acc, "per_class_n": [100, 400, 900]}
        if seed == 2:
            estimate["test_priors"] = {name: {"uncorrected": 0.0, "corrected": 75.0} for name in PRIOR_NAMES}
        _write_run(tmp_path / f"fbl{seed}", "fbl", seed, 67.0, estimate)
    _write_run(tmp_path / "ce1", "ce", 1, 60.0)  # no estimate: no row
    (row,) = method_estimate_prior_rows(group_methods(load_runs([tmp_path])))
    assert row["method"] == FBL and row["n"] == {"uncorrected": 2, "corrected": 1}
    weights = [1.0, 50**-0.5, 1 / 50]  # forward-50
    pi = [w / sum(weights) for w in weights]

    def accuracy_and_se(acc):
        a = [x / 100 for x in acc]
        value = sum(p * x for p, x in zip(pi, acc, strict=True))
        se = 100 * math.sqrt(sum(p**2 * x * (1 - x) / n for p, x, n in zip(pi, a, [100, 400, 900], strict=True)))
        return value, se

    (a1, s1), (a2, s2) = accuracy_and_se([90, 60, 30]), accuracy_and_se([70, 60, 50])
    assert row["uncorrected"]["forward-50"] == pytest.approx(((a1 + a2) / 2, (s1 + s2) / 2))
    assert row["corrected"]["uniform"] == (75.0, None)


def test_the_report_draws_the_estimate_prior_figure_only_for_runs_with_an_estimate(tmp_path):
    from fbl.reports import write_report

    from ._fake_runs import HEADLINE, write_run
    from ._png import assert_valid_png

    fbl = write_run(tmp_path / "runs" / "fbl", "fbl", 1, HEADLINE[("fbl60", 1)])
    write_run(tmp_path / "runs" / "ce", "ce", 1, HEADLINE[("ce", 1)])
    summary = json.loads((fbl / "summary.json").read_text())
    classes = len(summary["class_counts"])
    estimate = {**_estimate(60.0, 1.0), "per_class_acc": [80.0] * classes, "per_class_n": [100] * classes}
    summary["last_estimate"] = {"lossless_estimate": estimate}
    (fbl / "summary.json").write_text(json.dumps(summary))
    write_report([tmp_path / "runs"], tmp_path / "report")
    assert_valid_png(tmp_path / "report" / "test_priors_estimate.png")
    assert "](test_priors_estimate.png)" in (tmp_path / "report" / "report.md").read_text()
    write_report([tmp_path / "runs" / "ce"], tmp_path / "report")
    assert not (tmp_path / "report" / "test_priors_estimate.png").exists()
