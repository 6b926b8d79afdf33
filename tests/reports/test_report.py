import json
import logging
import re
import statistics

import pytest

from fbl.errors import ConfigError
from fbl.reports import report, write_report
from fbl.reports.report import FIGURES, format_mean_std

from ._fake_runs import HEADLINE, SELECTED_SHIFT, write_run, write_two_methods
from ._png import assert_valid_png

FIGURE_FILES = [f"{stem}.png" for stem, *_ in FIGURES]


#: Student-t 0.975 quantiles by degrees of freedom (seeds - 1), from a table.
T975 = {2: 4.303, 3: 3.182}


def _with_seed_interval(values):
    """Top-1's cell: mean ± std, then the 95% t-interval of the mean over the seeds."""
    mean, std = statistics.mean(values), statistics.stdev(values)
    half = T975[len(values) - 1] * std / len(values) ** 0.5
    return f"{mean:.2f} ± {std:.2f} [{mean - half:.2f}, {mean + half:.2f}]"


def _cell(key, index, seeds=(1, 2, 3), shift=0.0):
    values = [HEADLINE[(key, s)][index] + shift for s in seeds]
    if index == 0:
        return _with_seed_interval(values)
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def test_format_mean_std():
    assert format_mean_std(41.2, 0.534) == "41.20 ± 0.53"
    assert format_mean_std(41.2, None) == "41.20 ± –"
    assert format_mean_std(None, None) == "–"


def test_report_from_a_folder_of_runs(tmp_path):
    write_two_methods(tmp_path / "runs")
    html_path = write_report([tmp_path / "runs"], tmp_path / "report")
    assert html_path == tmp_path / "report" / "report.html"
    html = html_path.read_text(encoding="utf-8")
    markdown = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    for name in FIGURE_FILES:
        assert_valid_png(tmp_path / "report" / name)
        assert f"]({name})" in markdown
    assert html.count('<img src="data:image/png;base64,') == len(FIGURE_FILES)
    # the table: fbl λ=60 top-1 and ECE over three seeds, computed longhand
    top1, ece = re.escape(_cell("fbl60", 0)), re.escape(_cell("fbl60", 4))
    # n = 3 seeds; epoch 4: the last of the 4 epochs, counted from 1 as the training log counts them
    assert re.search(rf"<td>fbl λ=60</td><td>3</td><td>4</td><td>{top1}</td>.*<td>{ece}</td>", html)
    assert f"| ce | 3 | 4 | {_cell('ce', 0)} | {_cell('ce', 1)} | {_cell('ce', 2)} |" in markdown
    assert "epochs counted from 1, as in the training log" in markdown
    assert "Notes" not in markdown


def test_extra_evaluation_split_gets_its_own_table(tmp_path):
    write_two_methods(tmp_path / "runs", extra_shift=2.0)
    write_report([tmp_path / "runs"], tmp_path / "report")
    markdown = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    section = markdown.split("## Last epoch on test_lossless", 1)[1].split("## ", 1)[0]
    assert f"| ce | 3 | 4 | {_cell('ce', 0, shift=2.0)} | {_cell('ce', 1, shift=2.0)} |" in section


def test_older_run_folder_gets_a_note_not_a_crash(tmp_path, caplog):
    write_two_methods(tmp_path / "new")
    old = write_run(tmp_path / "old" / "ce-seed4", "ce", 4, (68.0, 88.0, 60.0, 35.0, 14.0), new_fields=False, torn=True)
    with caplog.at_level(logging.WARNING, logger="fbl.reports"):
        html_path = write_report([tmp_path / "new", old], tmp_path / "report")
    markdown = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    html = html_path.read_text(encoding="utf-8")
    for field, stem in (
        ("last.calibration", "reliability"),
        ("last.confusion", "confusion"),
        ("train_feature_norms", "feature_norms_train"),
    ):
        note = next(line for line in markdown.splitlines() if f"'{field}'" in line)
        assert str(old) in note
        assert not (tmp_path / "report" / f"{stem}.png").exists()
        assert any(str(old) in r.getMessage() and field in r.getMessage() for r in caplog.records)
    # the table still holds all four ce seeds
    values = [HEADLINE[("ce", s)][0] for s in (1, 2, 3)] + [68.0]
    assert f"| ce | 4 | 4 | {_with_seed_interval(values)} |" in markdown
    assert html.count('<img src="data:image/png;base64,') == len(FIGURE_FILES) - 3


def test_sweep_table_shows_the_validation_score_and_marks_the_point_it_chooses(tmp_path):
    for lam, val, test_top1 in ((15, 78.8, 69.5), (30, 82.6, 70.9), (60, 81.0, 72.0)):
        write_run(tmp_path / "runs" / f"l{lam}", "fbl", 123, (test_top1, 0, 0, 0, 0), lambda_=lam, val_top1=val)
    write_report([tmp_path / "runs"], tmp_path / "report")
    markdown = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    section = markdown.split("## Sweep: fbl over lambda_", 1)[1]
    assert "| lambda_ | Method | n | Val top-1 | Top-1 |" in section
    assert "| 30 | fbl λ=30 | 1 | 82.60 ± – (chosen) | 70.90 ± – |" in section
    assert "| 60 | fbl λ=60 | 1 | 81.00 ± – | 72.00 ± – |" in section  # best on test, not chosen
    assert section.count("(chosen)") == 1 and "seeds every point has (123)" in section


def test_the_selected_epoch_is_counted_from_1_too(tmp_path):
    write_two_methods(tmp_path / "runs")
    write_report([tmp_path / "runs"], tmp_path / "report")
    markdown = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    section = markdown.split("## Selected epoch", 1)[1].split("## ", 1)[0]
    # summary.json's index 2 (of 0..3) is the third epoch
    assert f"| ce | 3 | val | 3 | {_cell('ce', 0, shift=SELECTED_SHIFT)} |" in section


@pytest.mark.parametrize("name", ["report.md", "report.html", "confusion.png"])
def test_a_users_own_report_file_is_refused_and_left_alone(tmp_path, name):
    write_two_methods(tmp_path / "runs")
    out = tmp_path / "mine"
    out.mkdir()
    (out / name).write_text("my own notes\n")
    with pytest.raises(ConfigError) as err:
        write_report([tmp_path / "runs"], out)
    assert str(err.value) == (
        f"{out / name} was not written by fbl: a report in {out} would overwrite it; move it away or pick another --out"
    )
    assert (out / name).read_text() == "my own notes\n"
    assert sorted(p.name for p in out.iterdir()) == [name]  # nothing written, no marker


def test_fbl_replaces_its_own_report_and_removes_its_figures_not_drawn_again(tmp_path):
    write_two_methods(tmp_path / "runs")
    out = tmp_path / "report"
    write_report([tmp_path / "runs"], out)
    assert json.loads((out / ".fbl-report").read_text())["written_by"] == "fbl"
    (out / "notes.txt").write_text("kept")
    old = write_run(tmp_path / "old" / "ce-seed4", "ce", 4, (68.0, 88.0, 60.0, 35.0, 14.0), new_fields=False)
    write_report([tmp_path / "runs", old], out)  # the old run lacks calibration: no reliability diagram now
    assert not (out / "reliability.png").exists()
    assert_valid_png(out / "per_class_accuracy.png")
    assert (out / "notes.txt").read_text() == "kept"
    assert not [p for p in out.iterdir() if p.name.startswith(".fbl-report-")]  # no staging folder left


def test_a_report_folder_from_before_the_marker_is_fbls(tmp_path):
    write_two_methods(tmp_path / "runs")
    out = tmp_path / "report"
    out.mkdir()
    (out / "report.md").write_text("# fbl report\n\n3 runs.\n")
    (out / "confusion.png").write_bytes(b"old figure")
    write_report([tmp_path / "runs"], out)
    assert_valid_png(out / "confusion.png")
    assert (out / "report.md").read_text(encoding="utf-8").startswith("# fbl report\n")


def test_a_figure_that_fails_to_draw_leaves_the_previous_report_as_it_was(tmp_path, monkeypatch):
    write_two_methods(tmp_path / "runs")
    out = tmp_path / "report"
    write_report([tmp_path / "runs"], out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken(methods, path):
        raise ValueError("a bug while drawing")

    stem, title, caption, _ = report.FIGURES[-1]
    monkeypatch.setattr(report, "FIGURES", [*report.FIGURES[:-1], (stem, title, caption, broken)])
    with pytest.raises(ValueError, match="a bug while drawing"):
        write_report([tmp_path / "runs"], out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # every figure, report.md and html as they were


def test_a_label_with_dollar_signs_is_drawn_literally_not_as_mathtext(tmp_path):
    # "$\oops$" is mathtext with an unknown command: matplotlib fails to draw it unless the $ are escaped.
    for seed in (1, 2):
        write_run(tmp_path / "runs" / f"s{seed}", r"ce$\oops$", seed, HEADLINE[("ce", seed)])
    write_report([tmp_path / "runs"], tmp_path / "report")
    for name in FIGURE_FILES:
        assert_valid_png(tmp_path / "report" / name)
    assert r"| ce$\oops$ | 2 |" in (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
