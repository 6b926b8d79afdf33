import json

import pytest

from fbl.errors import ConfigError
from fbl.reports.run_folder import find_run_dirs, load_run, load_runs, require

from ._fake_runs import CLASS_COUNTS, EPOCHS, HEADLINE, SELECTED_SHIFT, write_run, write_two_methods


def test_load_run_reads_config_epochs_and_summary(tmp_path):
    folder = write_run(tmp_path / "run", "fbl", 2, HEADLINE[("fbl60", 2)])
    run = load_run(folder)
    assert run.path == folder
    assert run.config["loss"] == "fbl" and run.seed == 2
    assert [r["epoch"] for r in run.epochs] == list(range(EPOCHS))
    assert run.last["top1"] == 75.5 and run.last["epoch"] == EPOCHS - 1
    assert run.class_counts == CLASS_COUNTS


def test_torn_last_line_of_metrics_is_ignored(tmp_path):
    folder = write_run(tmp_path / "run", "ce", 1, HEADLINE[("ce", 1)], torn=True)
    assert '"epoch": 4' in (folder / "metrics.jsonl").read_text()
    assert [r["epoch"] for r in load_run(folder).epochs] == list(range(EPOCHS))


def test_invalid_line_before_the_last_is_an_error(tmp_path):
    folder = write_run(tmp_path / "run", "ce", 1, HEADLINE[("ce", 1)])
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    lines[1] = lines[1][:10]
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="line 2 is not valid JSON"):
        load_run(folder)


def test_folder_without_summary_is_not_a_run(tmp_path):
    (tmp_path / "config.yaml").write_text("loss: ce\n")
    with pytest.raises(ConfigError, match="no summary.json"):
        load_run(tmp_path)


def test_selected_uses_the_new_field_and_falls_back_to_best_chosen_on_test(tmp_path):
    new = load_run(write_run(tmp_path / "new", "ce", 1, HEADLINE[("ce", 1)]))
    old = load_run(write_run(tmp_path / "old", "ce", 1, HEADLINE[("ce", 1)], new_fields=False))
    assert new.selected["on"] == "val" and old.selected["on"] == "test"
    for run in (new, old):
        assert run.selected["epoch"] == EPOCHS - 2
        assert run.selected["test"]["top1"] == 70.0 + SELECTED_SHIFT


def test_require_names_the_run_folder_and_the_field(tmp_path):
    folder = write_run(tmp_path / "old", "ce", 1, HEADLINE[("ce", 1)], new_fields=False)
    with pytest.raises(ConfigError) as err:
        require(load_run(folder), "last.calibration")
    message = str(err.value)
    assert str(folder) in message and "'last.calibration'" in message and "\n" not in message


def test_find_run_dirs_accepts_run_folders_and_folders_searched_recursively(tmp_path):
    folders = write_two_methods(tmp_path / "sweep")
    extra = write_run(tmp_path / "single", "ce", 9, HEADLINE[("ce", 1)])
    found = find_run_dirs([tmp_path / "sweep", extra, tmp_path / "sweep" / "ce" / "seed1"])
    assert found == sorted(folders) + [extra]  # no duplicates
    assert [run.path for run in load_runs([extra])] == [extra]


def test_find_run_dirs_rejects_missing_and_empty_folders(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        find_run_dirs([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no run folder"):
        find_run_dirs([tmp_path / "empty"])


def test_summary_that_is_not_json_is_one_line_error(tmp_path):
    folder = write_run(tmp_path / "run", "ce", 1, HEADLINE[("ce", 1)])
    (folder / "summary.json").write_text(json.dumps({"last": {}})[:-3])
    with pytest.raises(ConfigError, match="summary.json is not valid JSON"):
        load_run(folder)


def test_run_folder_written_by_training_is_read_by_reports(tmp_path):
    # The engine's writer and the reports' reader agree on the layout, marker and resume record included.
    from fbl.engine.run_folder import RunFolder

    run = RunFolder(tmp_path / "sweep" / "ce-seed1")
    run.open_new({"loss": "ce", "seed": 1, "epochs": 2})
    run.append_metrics({"epoch": 0, "eval": {"top1": 10.0}})
    run.close()
    RunFolder(run.path).open_resumed({"loss": "ce", "seed": 1, "epochs": 3}, start_epoch=1)
    run.append_metrics({"epoch": 1, "eval": {"top1": 20.0}})
    run.write_summary({"last": {"top1": 20.0, "epoch": 1}, "class_counts": [5, 1]})
    assert find_run_dirs([tmp_path / "sweep"]) == [run.path]
    loaded = load_run(run.path)
    assert loaded.config == {"loss": "ce", "seed": 1, "epochs": 2}  # how the run was started
    assert [r["epoch"] for r in loaded.epochs] == [0, 1]
    assert loaded.last == {"top1": 20.0, "epoch": 1}


def test_a_run_reached_through_a_symbolic_link_is_found_once(tmp_path):
    folders = write_two_methods(tmp_path / "sweep")
    (tmp_path / "link").symlink_to(tmp_path / "sweep")
    found = find_run_dirs([tmp_path / "sweep", tmp_path / "link", tmp_path / "link" / "ce" / "seed1"])
    assert found == sorted(folders)  # six runs, each once, under the path first given
