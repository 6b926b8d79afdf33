from functools import partial

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fbl.errors import ConfigError
from fbl.reports import figures
from fbl.reports.methods import group_methods
from fbl.reports.run_folder import load_run, load_runs

from ._fake_runs import HEADLINE, write_run, write_two_methods
from ._png import assert_valid_png

FIGURES = {
    "per_class_accuracy": figures.per_class_accuracy,
    "feature_norms_train": partial(figures.feature_norms, split="train"),
    "feature_norms_test": partial(figures.feature_norms, split="test"),
    "training_curves": figures.training_curves,
    "reliability": figures.reliability_diagrams,
    "confusion": figures.confusion_matrices,
    "test_priors": figures.accuracy_under_test_priors,
}


@pytest.fixture(scope="module")
def methods(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    write_two_methods(root)
    return group_methods(load_runs([root]))


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_every_figure_is_a_valid_png(methods, tmp_path, name):
    path = FIGURES[name](methods, tmp_path / f"{name}.png")
    assert path == tmp_path / f"{name}.png"
    assert_valid_png(path)


@pytest.mark.parametrize(
    "name, field",
    [
        ("reliability", "last.calibration"),
        ("confusion", "last.confusion"),
        ("feature_norms_train", "train_feature_norms"),
    ],
)
def test_figure_needing_a_new_field_names_the_old_run_and_the_field(tmp_path, name, field):
    new = load_run(write_run(tmp_path / "new", "ce", 1, HEADLINE[("ce", 1)]))
    old_folder = write_run(tmp_path / "old", "ce", 2, HEADLINE[("ce", 2)], new_fields=False)
    methods = group_methods([new, load_run(old_folder)])
    with pytest.raises(ConfigError) as err:
        FIGURES[name](methods, tmp_path / "figure.png")
    assert str(old_folder) in str(err.value) and f"'{field}'" in str(err.value)
    assert not (tmp_path / "figure.png").exists()


@pytest.mark.parametrize("name", ["per_class_accuracy", "feature_norms_test", "training_curves", "test_priors"])
def test_figures_from_fields_every_run_has_work_on_old_runs(tmp_path, name):
    old = load_run(write_run(tmp_path / "old", "ce", 1, HEADLINE[("ce", 1)], new_fields=False))
    assert_valid_png(FIGURES[name](group_methods([old]), tmp_path / "figure.png"))


def test_no_confusion_matrix_above_100_classes(tmp_path):
    run = load_run(write_run(tmp_path / "run", "ce", 1, HEADLINE[("ce", 1)]))
    run.summary["class_counts"] = [5] * 101
    with pytest.raises(ConfigError, match="more than 100 classes"):
        figures.confusion_matrices(group_methods([run]), tmp_path / "confusion.png")


def test_unknown_feature_norm_split_is_a_value_error(methods, tmp_path):
    with pytest.raises(ValueError, match="split"):
        figures.feature_norms(methods, tmp_path / "x.png", split="val")


@pytest.mark.parametrize("lines, beside", [(2, False), (figures.MAX_LEGEND_ENTRIES_INSIDE + 1, True)])
def test_a_long_legend_goes_beside_the_panels_and_a_short_one_over_the_plot(methods, lines, beside):
    fig = Figure(figsize=(6, 3.6), layout="constrained")
    panels = fig.subplots(1, 2)
    for i in range(lines):
        panels[0].plot([0, 1], [i, i], label=f"run {i}")
    figures._legend(panels[0], methods)
    canvas = FigureCanvasAgg(fig)  # how save_figure renders
    canvas.draw()
    renderer = canvas.get_renderer()
    legend = fig.legends[0] if beside else panels[0].get_legend()
    assert (legend in fig.legends) == beside and len(legend.get_texts()) == lines
    right_of_panels = legend.get_window_extent(renderer).x0 >= max(p.get_window_extent(renderer).x1 for p in panels)
    assert right_of_panels == beside
    assert fig.get_figwidth() == 6 + (figures.LEGEND_WIDTH_INCHES if beside else 0)
