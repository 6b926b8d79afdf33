"""The run folder: checks before writing, only fbl's own files removed, resumes recorded beside the config."""

import errno
import json
import os

import pytest
import torch
import yaml

from fbl.engine.checkpoint import CHECKPOINT_FORMAT_VERSION
from fbl.engine.run_folder import RunFolder
from fbl.errors import ConfigError

from .._disks import TINY_DISK_BYTES, read_only_folder, tiny_disk

CONFIG = {"dataset": "digits-lt", "loss": "fbl", "epochs": 2, "device": "cpu", "lr_milestones": [1], "resume": None}
NO_SPACE = "No space left on device"


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def state(epoch):
    return {
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "epoch": epoch,
        "model": {"w": torch.zeros(2)},
        "optimizer": {"state": {}, "param_groups": []},
        "config": dict(CONFIG),
        "best": None,
        "torch_rng_state": torch.get_rng_state(),
    }


def finished_run(path, epochs=2):
    """A run folder as training leaves it: config, metrics, splits, checkpoints, events, summary."""
    run = RunFolder(path)
    run.check_new_run()
    run.open_new(CONFIG)
    run.write_splits({"train": [0, 1, 2]})
    for epoch in range(epochs):
        run.append_metrics({"epoch": epoch, "lr": 0.1, "eval": {"top1": 10.0 * epoch}})
        run.save_checkpoint(state(epoch + 1))
    run.save_checkpoint(state(epochs), "best")
    run.close()
    run.write_summary({"last": {"top1": 10.0}})
    return run


def snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def event_files(folder):
    return sorted(p.name for p in (folder / "tb").glob("events.out.tfevents.*"))


def one_line(err) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_marker_lists_every_file_fbl_wrote(tmp_path):
    run = finished_run(tmp_path / "run")
    marker = json.loads((tmp_path / "run" / ".fbl-run").read_text())
    (events,) = event_files(run.path)
    expected = [
        "checkpoints/best.pt", "checkpoints/last.pt", "config.yaml", "metrics.jsonl", "splits.json", "summary.json",
        f"tb/{events}",
    ]  # fmt: skip
    assert marker == {"written_by": "fbl", "kind": "run folder", "files": expected}
    assert yaml.safe_load((run.path / "config.yaml").read_text()) == CONFIG
    assert [r["epoch"] for r in run.read_metrics()] == [0, 1]


def test_clear_keeps_a_users_files_in_the_folder_and_its_subfolders(tmp_path):
    run = finished_run(tmp_path / "run")
    (run.path / "notes.txt").write_text("mine")
    (run.path / "checkpoints" / "mine.pt").write_bytes(b"my weights")
    (run.path / "tb" / "my_plot.png").write_bytes(b"png")
    run.clear()
    assert snapshot(run.path) == {
        "notes.txt": b"mine",
        "checkpoints/mine.pt": b"my weights",
        "tb/my_plot.png": b"png",
    }


def test_clear_removes_empty_subfolders_and_fbls_temporary_files(tmp_path):
    run = finished_run(tmp_path / "run")
    (run.path / "checkpoints" / ".last.pt.k3j2.tmp").write_bytes(b"half a checkpoint")  # a killed write
    run.clear()
    assert sorted(p.name for p in run.path.iterdir()) == []


def test_overwrite_replaces_fbls_run_and_keeps_the_users_file(tmp_path):
    run = finished_run(tmp_path / "run")
    (run.path / "checkpoints" / "mine.pt").write_bytes(b"my weights")
    old_events = event_files(run.path)
    with pytest.raises(ConfigError) as err:
        RunFolder(run.path).check_new_run()
    assert one_line(err) == (
        f"{run.path} already holds a run; continue it with --resume {run.path}, pick another --out, "
        "or pass --overwrite to replace it"
    )
    again = RunFolder(run.path)
    again.check_new_run(overwrite=True)
    again.open_new({**CONFIG, "loss": "ce"}, overwrite=True)
    again.close()
    assert (run.path / "checkpoints" / "mine.pt").read_bytes() == b"my weights"
    assert not (run.path / "summary.json").exists() and not (run.path / "metrics.jsonl").exists()
    assert len(event_files(run.path)) == 1 and event_files(run.path) != old_events  # events never mix
    assert yaml.safe_load((run.path / "config.yaml").read_text())["loss"] == "ce"


@pytest.mark.parametrize("name", ["config.yaml", "splits.json", "tb/events.out.tfevents.1.host"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_folder_with_a_users_file_named_like_fbls_is_refused(tmp_path, name, overwrite):
    folder = tmp_path / "mine"
    (folder / name).parent.mkdir(parents=True)
    (folder / name).write_text("my own")
    before = snapshot(folder)
    run = RunFolder(folder)
    expected = (
        f"{folder / name} was not written by fbl: a run in {folder} would overwrite it; "
        "move it away or pick another --out"
    )
    with pytest.raises(ConfigError) as err:
        run.check_new_run(overwrite=overwrite)
    assert one_line(err) == expected
    with pytest.raises(ConfigError):
        run.open_new(CONFIG, overwrite=overwrite)
    assert snapshot(folder) == before


def test_a_users_file_beside_an_fbl_run_is_refused_and_counted(tmp_path):
    run = finished_run(tmp_path / "run")
    (run.path / "summary.json").unlink()
    (run.path / "metrics.jsonl").unlink()
    (run.path / "checkpoints" / "last.pt").unlink()
    (run.path / "resumes.jsonl").write_text("mine\n")  # not listed in the marker
    with pytest.raises(ConfigError) as err:
        RunFolder(run.path).check_new_run(overwrite=True)
    assert one_line(err).startswith(f"{run.path / 'resumes.jsonl'} was not written by fbl: ")


def test_folder_from_before_the_marker_is_cleared_by_its_known_names(tmp_path):
    folder = tmp_path / "old"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "tb").mkdir()
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "splits.json"):
        (folder / name).write_text("{}")
    (folder / "checkpoints" / "last.pt").write_bytes(b"x")
    (folder / "checkpoints" / "epoch3.pt").write_bytes(b"mine")
    (folder / "tb" / "events.out.tfevents.1.host.2.0").write_bytes(b"e")
    (folder / "notes.txt").write_text("mine")
    run = RunFolder(folder)
    assert run.written_by_fbl() and run.foreign_files() == []
    run.check_new_run(overwrite=True)
    run.clear()
    assert snapshot(folder) == {"checkpoints/epoch3.pt": b"mine", "notes.txt": b"mine"}


def test_resume_is_recorded_and_config_yaml_is_untouched(tmp_path):
    run = finished_run(tmp_path / "run")
    config_before = (run.path / "config.yaml").read_bytes()
    inode = (run.path / "config.yaml").stat().st_ino
    resumed = RunFolder(run.path)
    resumed.check_resumable()
    extended = {**CONFIG, "epochs": 3, "device": "cuda", "resume": str(run.path)}
    record = resumed.open_resumed(extended, start_epoch=1)
    resumed.close()
    assert (run.path / "config.yaml").read_bytes() == config_before
    assert (run.path / "config.yaml").stat().st_ino == inode  # not even replaced by an identical copy
    changed = {
        "epochs": {"from": 2, "to": 3},
        "device": {"from": "cpu", "to": "cuda"},
        "resume": {"from": None, "to": str(run.path)},
    }
    assert record["start_epoch"] == 1 and record["changed"] == changed
    assert [r["epoch"] for r in resumed.read_metrics()] == [0]  # epoch 1 runs again
    # A second, no-op resume (a finished run re-summarised) is recorded too, and changes nothing.
    again = RunFolder(run.path).open_resumed(extended, start_epoch=3)
    assert again["changed"] == {}
    lines = [json.loads(line) for line in (run.path / "resumes.jsonl").read_text().splitlines()]
    assert [(r["start_epoch"], r["changed"]) for r in lines] == [(1, changed), (3, {})]
    assert (run.path / "config.yaml").read_bytes() == config_before
    assert RunFolder(run.path).effective_config() == extended


def test_refused_resume_writes_nothing(tmp_path):
    run = finished_run(tmp_path / "run")
    (run.path / "tb" / "events.out.tfevents.9.someone").write_bytes(b"not fbl's")
    before = snapshot(run.path)
    with pytest.raises(ConfigError) as err:
        RunFolder(run.path).open_resumed({**CONFIG, "epochs": 3}, start_epoch=2)
    assert "events.out.tfevents.9.someone was not written by fbl" in one_line(err)
    assert snapshot(run.path) == before


def test_resume_drops_a_torn_last_resume_record(tmp_path):
    run = finished_run(tmp_path / "run")
    RunFolder(run.path).open_resumed(CONFIG, start_epoch=2)
    with (run.path / "resumes.jsonl").open("a") as handle:
        handle.write('{"time": "2024-')  # killed mid-append
    RunFolder(run.path).open_resumed(CONFIG, start_epoch=2)
    assert [r["start_epoch"] for r in RunFolder(run.path).read_resumes()] == [2, 2]


def test_rewriting_metrics_on_resume_is_atomic(tmp_path, monkeypatch):
    run = finished_run(tmp_path / "run")
    before = (run.path / "metrics.jsonl").read_bytes()
    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(ConfigError) as err:
        RunFolder(run.path).open_resumed(CONFIG, start_epoch=1)
    monkeypatch.undo()
    assert one_line(err) == f"could not write {run.path / 'metrics.jsonl'}: {NO_SPACE}; the previous file is kept"
    assert (run.path / "metrics.jsonl").read_bytes() == before


def test_summary_that_cannot_be_written_leaves_the_run_unfinished(tmp_path, monkeypatch):
    run = RunFolder(tmp_path / "run")
    run.open_new(CONFIG)
    run.close()
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: no_space() if dst == run.summary_path else real(src, dst))
    with pytest.raises(ConfigError) as err:
        run.write_summary({"last": {"top1": 1.0}})
    monkeypatch.undo()
    assert one_line(err) == f"could not write {run.summary_path}: {NO_SPACE}; no file was written"
    assert not run.summary_path.exists()  # not marked finished: `fbl compare` resumes it
    assert [p.name for p in run.path.iterdir() if p.name.endswith(".tmp")] == []


def test_summary_on_a_full_disk_for_real(tmp_path):
    with tiny_disk(tmp_path / "disk") as disk:
        run = RunFolder(disk / "run")
        run.open_new(CONFIG)
        run.close()
        run.write_summary({"last": {"top1": 1.0}})
        with pytest.raises(ConfigError) as err:
            run.write_summary({"last": {"top1": 2.0}, "padding": "x" * TINY_DISK_BYTES})
        assert one_line(err) == f"could not write {run.summary_path}: {NO_SPACE}; the previous file is kept"
        assert json.loads(run.summary_path.read_text()) == {"last": {"top1": 1.0}}


def test_full_disk_in_tensorboard_is_one_line(tmp_path):
    class FullWriter:
        def add_scalar(self, *args):
            no_space()

    run = RunFolder(tmp_path / "run")
    run.open_new(CONFIG)
    run.close()
    run._writer = FullWriter()
    with pytest.raises(ConfigError) as err:
        run.append_metrics({"epoch": 0, "lr": 0.1})
    assert one_line(err) == f"could not write TensorBoard events in {run.path / 'tb'}: {NO_SPACE}"
    assert run.read_metrics() == [{"epoch": 0, "lr": 0.1}]


@pytest.mark.parametrize("where", ["file", "under a file"])
def test_out_that_is_a_file_or_under_one_is_refused(tmp_path, where):
    (tmp_path / "results.csv").write_text("mine")
    path = tmp_path / "results.csv" if where == "file" else tmp_path / "results.csv" / "run"
    with pytest.raises(ConfigError) as err:
        RunFolder(path).check_new_run()
    expected = {
        "file": f"cannot use {path} as the run folder: it is an existing file, not a folder",
        "under a file": f"cannot create the run folder {path}: {tmp_path / 'results.csv'} is a file, not a folder",
    }[where]
    assert one_line(err) == expected


def test_checkpoints_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoints").write_text("mine")
    with pytest.raises(ConfigError) as err:
        RunFolder(tmp_path / "run").check_new_run()
    expected = (
        f"cannot use {tmp_path / 'run' / 'checkpoints'} as the checkpoints folder of the run: "
        "it is an existing file, not a folder"
    )
    assert one_line(err) == expected


def test_read_only_out_is_refused_before_anything_is_written(tmp_path):
    with read_only_folder(tmp_path / "ro") as folder:
        run = RunFolder(folder / "runs" / "digits-lt-fbl")
        with pytest.raises(ConfigError) as err:
            run.check_new_run()
        assert one_line(err).startswith(f"cannot create the run folder {run.path}: {folder} is ")
        with pytest.raises(ConfigError):
            run.open_new(CONFIG)


def test_a_rank_that_does_not_write_writes_nothing(tmp_path):
    run = RunFolder(tmp_path / "run", writer=False)
    run.open_new(CONFIG)
    assert run.open_resumed(CONFIG, 1) == {}
    run.append_metrics({"epoch": 0})
    run.save_checkpoint(state(1))
    run.write_summary({})
    run.clear()
    assert not (tmp_path / "run").exists()


def test_splits_are_not_rewritten_when_unchanged(tmp_path):
    run = finished_run(tmp_path / "run")
    inode = (run.path / "splits.json").stat().st_ino
    RunFolder(run.path).write_splits({"train": [0, 1, 2]})
    assert (run.path / "splits.json").stat().st_ino == inode


def test_damaged_marker_is_one_line(tmp_path):
    run = finished_run(tmp_path / "run")
    (run.path / ".fbl-run").write_text("{not json")
    with pytest.raises(ConfigError) as err:
        RunFolder(run.path).check_new_run(overwrite=True)
    assert one_line(err).startswith(f"{run.path / '.fbl-run'} is damaged (JSONDecodeError); fbl cannot tell")


def test_resume_with_a_damaged_config_writes_nothing(tmp_path):
    run = finished_run(tmp_path / "run")
    (run.path / "config.yaml").write_text("epochs: [2\n")
    before = snapshot(run.path)
    with pytest.raises(ConfigError) as err:
        RunFolder(run.path).open_resumed(CONFIG, start_epoch=2)
    assert one_line(err) == f"could not read {run.path / 'config.yaml'} (ParserError)"
    assert snapshot(run.path) == before


def test_resuming_a_folder_from_before_the_marker_adopts_its_files(tmp_path):
    folder = tmp_path / "old"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    (folder / "metrics.jsonl").write_text('{"epoch": 0}\n{"epoch": 1}\n')
    (folder / "checkpoints" / "last.pt").write_bytes(b"x")
    record = RunFolder(folder).open_resumed({**CONFIG, "epochs": 4}, start_epoch=2)
    assert record["changed"] == {"epochs": {"from": 2, "to": 4}}
    assert yaml.safe_load((folder / "config.yaml").read_text()) == CONFIG
    listed = json.loads((folder / ".fbl-run").read_text())["files"]
    assert listed[:4] == ["checkpoints/last.pt", "config.yaml", "metrics.jsonl", "resumes.jsonl"]
    assert len(listed) == 5 and listed[4].startswith("tb/events.out.tfevents.")
