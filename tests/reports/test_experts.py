import json

import pytest

from fbl.errors import ConfigError
from fbl.reports import write_report
from fbl.reports.experts import expert_groups_figure, expert_labels, expert_rows, experts_table
from fbl.reports.methods import group_methods
from fbl.reports.report import FIGURES
from fbl.reports.run_folder import load_runs

from ._fake_runs import HEADLINE, write_experts_run, write_run, write_two_methods
from ._png import assert_valid_png

# Per seed: the ensemble's headline (top1, many, medium, few, ece), its worst class, and per expert
# (top1, many, medium, few, worst, ‖f‖ many, ‖f‖ medium, ‖f‖ few). Seed 2 is seed 1 plus 2 points of
# accuracy and 0.5 of norm, so every expert's std over the two seeds is 2/√2 = 1.41 and 0.5/√2 = 0.35.
ENSEMBLE = {1: (74.0, 88.0, 72.0, 55.0, 8.0), 2: (76.0, 89.0, 74.0, 57.0, 7.5)}
ENSEMBLE_WORST = {1: 30.0, 2: 34.0}
EXPERTS = {
    1: [
        (70.0, 90.0, 60.0, 40.0, 20.0, 9.0, 7.0, 5.0),
        (72.0, 86.0, 68.0, 50.0, 25.0, 8.0, 7.5, 6.0),
        (71.0, 80.0, 70.0, 60.0, 28.0, 7.0, 7.2, 7.0),
    ],
    2: [
        (72.0, 92.0, 62.0, 42.0, 22.0, 9.5, 7.5, 5.5),
        (74.0, 88.0, 70.0, 52.0, 27.0, 8.5, 8.0, 6.5),
        (73.0, 82.0, 72.0, 62.0, 30.0, 7.5, 7.7, 7.5),
    ],
}
# Written out by hand from the numbers above. The ensemble's ‖f‖ comes from last.per_class_feature_norm,
# 8 - 0.5 c + 0.1 seed: many (classes 0-3) 7.35 / 7.45, medium (4-7) 5.35 / 5.45, few (8-9) 3.85 / 3.95.
EXPECTED_MARKDOWN_ROWS = [
    "| fbl-experts | ensemble | 2 | 75.00 ± 1.41 | 88.50 ± 0.71 | 73.00 ± 1.41 | 56.00 ± 1.41 | 32.00 ± 2.83 "
    "| 7.40 ± 0.07 | 5.40 ± 0.07 | 3.90 ± 0.07 |",
    "| fbl-experts | λ=15 | 2 | 71.00 ± 1.41 | 91.00 ± 1.41 | 61.00 ± 1.41 | 41.00 ± 1.41 | 21.00 ± 1.41 "
    "| 9.25 ± 0.35 | 7.25 ± 0.35 | 5.25 ± 0.35 |",
    "| fbl-experts | λ=30 | 2 | 73.00 ± 1.41 | 87.00 ± 1.41 | 69.00 ± 1.41 | 51.00 ± 1.41 | 26.00 ± 1.41 "
    "| 8.25 ± 0.35 | 7.75 ± 0.35 | 6.25 ± 0.35 |",
    "| fbl-experts | λ=60 | 2 | 72.00 ± 1.41 | 81.00 ± 1.41 | 71.00 ± 1.41 | 61.00 ± 1.41 | 29.00 ± 1.41 "
    "| 7.25 ± 0.35 | 7.45 ± 0.35 | 7.25 ± 0.35 |",
]


def _write_fbl_experts(root, seeds=(1, 2)):
    return [
        write_experts_run(
            root / f"fbl-experts-seed{seed}",
            "fbl-experts",
            seed,
            ENSEMBLE[seed],
            EXPERTS[seed],
            worst=ENSEMBLE_WORST[seed],
            expert_lambdas=[15.0, 30.0, 60.0],
        )
        for seed in seeds
    ]


def test_rows_are_mean_and_std_over_seeds_with_the_ensemble_first(tmp_path):
    _write_fbl_experts(tmp_path)
    rows = expert_rows(group_methods(load_runs([tmp_path])))
    assert [(r["method"], r["expert"], r["n"]) for r in rows] == [
        ("fbl-experts", "ensemble", 2),
        ("fbl-experts", "λ=15", 2),
        ("fbl-experts", "λ=30", 2),
        ("fbl-experts", "λ=60", 2),
    ]
    assert rows[1]["top1_mean"] == pytest.approx(71.0)
    assert rows[1]["top1_std"] == pytest.approx(2**0.5)
    assert rows[3]["norm_medium_mean"] == pytest.approx(7.45)
    assert rows[3]["norm_medium_std"] == pytest.approx(0.5 / 2**0.5)
    assert rows[0]["worst_mean"] == pytest.approx(32.0)
    assert rows[0]["norm_few_mean"] == pytest.approx(3.9)


def test_report_has_an_experts_section_beside_single_models(tmp_path):
    _write_fbl_experts(tmp_path / "runs" / "experts")
    for seed in (1, 2):
        write_run(tmp_path / "runs" / "ce" / f"seed{seed}", "ce", seed, HEADLINE[("ce", seed)])
    html = write_report([tmp_path / "runs"], tmp_path / "report").read_text(encoding="utf-8")
    markdown = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    section = markdown.split("## Experts\n", 1)[1].split("\n## ", 1)[0]
    table_lines = [line for line in section.splitlines() if line.startswith("| ")]
    assert table_lines[0] == (
        "| Method | Expert | n | Top-1 | Many | Medium | Few | Worst class | ‖f‖ many | ‖f‖ medium | ‖f‖ few |"
    )
    assert table_lines[1:] == EXPECTED_MARKDOWN_ROWS  # no row for ce, a single model
    assert "<h2>Experts</h2>" in html
    assert "<td>fbl-experts</td><td>λ=30</td><td>2</td><td>73.00 ± 1.41</td>" in html
    # the experts figure comes on top of every other figure, without a note
    assert_valid_png(tmp_path / "report" / "experts.png")
    assert "](experts.png)" in markdown
    assert html.count('<img src="data:image/png;base64,') == len(FIGURES) + 1
    assert "Notes" not in markdown
    # a later report without multi-expert runs in the same folder takes the figure away
    write_report([tmp_path / "runs" / "ce"], tmp_path / "report")
    assert not (tmp_path / "report" / "experts.png").exists()


def test_one_seed_has_no_std(tmp_path):
    _write_fbl_experts(tmp_path, seeds=(2,))
    table = experts_table(group_methods(load_runs([tmp_path])))
    assert table.rows[1][:5] == ["fbl-experts", "λ=15", "1", "72.00 ± –", "92.00 ± –"]


def test_a_routed_run_shows_the_share_of_images_each_expert_sees(tmp_path):
    runs = _write_fbl_experts(tmp_path)
    for run, shares in zip(runs, ([1.0, 0.4, 0.1], [1.0, 0.6, 0.3]), strict=True):
        summary = json.loads((run / "summary.json").read_text())
        for entry, share in zip(summary["experts"], shares, strict=True):
            entry["routed_share"] = share
        (run / "summary.json").write_text(json.dumps(summary))
    table = experts_table(group_methods(load_runs([tmp_path])))
    assert table.columns[-1] == "Seen (%)" and "RIDE's router" in table.caption
    assert [row[-1] for row in table.rows] == ["–", "100.00 ± 0.00", "50.00 ± 14.14", "20.00 ± 14.14"]


def test_experts_lossless_estimates_are_a_column_with_the_ensembles_own(tmp_path):
    runs = _write_fbl_experts(tmp_path)
    for run, base in zip(runs, (70.0, 72.0), strict=True):
        summary = json.loads((run / "summary.json").read_text())
        for k, entry in enumerate(summary["experts"]):
            estimate = {"top1": base + k, "se": 0.5, "many": 80.0 - k, "many_se": 0.6, "medium": 60.0 + k,
                        "medium_se": 0.4, "few": None, "few_se": None}  # fmt: skip
            entry["estimates"] = {"lossless_estimate": estimate}
        summary["last_estimate"] = {"lossless_estimate": {"top1": base + 5, "se": 0.5, "many": 79.0, "medium": 70.0}}
        (run / "summary.json").write_text(json.dumps(summary))
    table = experts_table(group_methods(load_runs([tmp_path])))
    assert table.columns[-1] == "Lossless estimate (many / medium / few)" and "Lossless estimate:" in table.caption
    assert [row[-1] for row in table.rows] == [
        "76.00 ± 1.41 (79.00 / 70.00 / –)",  # the ensemble: its own last_estimate, seeds 75 and 77
        "71.00 ± 1.41 (80.00 / 60.00 / –)",
        "72.00 ± 1.41 (79.00 / 61.00 / –)",
        "73.00 ± 1.41 (78.00 / 62.00 / –)",
    ]


def test_no_section_without_experts(tmp_path):
    write_two_methods(tmp_path / "runs")
    old = write_run(tmp_path / "runs" / "old", "ce", 4, HEADLINE[("ce", 1)], new_fields=False)
    assert experts_table(group_methods(load_runs([tmp_path / "runs", old]))) is None
    write_report([tmp_path / "runs"], tmp_path / "report")
    assert "Experts" not in (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    assert "Experts" not in (tmp_path / "report" / "report.html").read_text(encoding="utf-8")
    assert not (tmp_path / "report" / "experts.png").exists()


def test_expert_figure_needs_experts(tmp_path):
    _write_fbl_experts(tmp_path / "experts", seeds=(1,))
    write_run(tmp_path / "ce", "ce", 1, HEADLINE[("ce", 1)])
    assert_valid_png(expert_groups_figure(group_methods(load_runs([tmp_path])), tmp_path / "experts.png"))
    with pytest.raises(ConfigError, match="no run has per-expert numbers"):
        expert_groups_figure(group_methods(load_runs([tmp_path / "ce"])), tmp_path / "none.png")


@pytest.mark.parametrize(
    ("config", "labels"),
    [
        ({"loss": "fbl-experts", "expert_lambdas": [15.0, 30.0, 60.0]}, ["λ=15", "λ=30", "λ=60"]),
        ({"loss": "feabal_experts", "expert_lambdas": [10, 20.5, 40]}, ["λ=10", "λ=20.5", "λ=40"]),
        ({"loss": "sade", "loss_options": {"tau": 1.0}}, ["forward-LT", "uniform", "backward-LT"]),
        ({"loss": "balpoe", "loss_options": {"taus": [0.0, 1.0, 2.5]}}, ["τ=0", "τ=1", "τ=2.5"]),
        ({"loss": "balpoe", "loss_options": {}}, ["τ=0", "τ=1", "τ=2"]),  # BalPoE's default taus (0, 1, 2)
        ({"loss": "ride"}, ["expert 1", "expert 2", "expert 3"]),
        ({"loss": "ce"}, ["expert 1", "expert 2", "expert 3"]),  # a plain loss on a multi-expert model
        ({"loss": "fbl-experts", "expert_lambdas": [15.0, 30.0]}, ["expert 1", "expert 2", "expert 3"]),
    ],
)
def test_expert_labels_from_the_config(config, labels):
    assert expert_labels(config, 3) == labels
