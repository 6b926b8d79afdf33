"""analysis/snapshot_unfinished_runs.py: a committed snapshot of an unfinished run continues on another
machine to the same weights as the run that never stopped."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch

from fbl.cli import main
from fbl.config import resolve_config
from fbl.engine.checkpoint import load_checkpoint, save_checkpoint
from fbl.engine.trainer import train

SCRIPT = Path(__file__).resolve().parents[2] / "analysis" / "snapshot_unfinished_runs.py"
OPTIONS = {"loss": "fbl", "epochs": 3, "device": "cpu", "quiet": True, "warmup_epochs": 1}


@pytest.fixture(scope="module")
def snapshot():
    spec = importlib.util.spec_from_file_location("analysis_snapshot", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stop_before_epoch_2(iterable, **kwargs):
    for item in iterable:
        if kwargs.get("desc") == "epochs" and item == 2:
            raise KeyboardInterrupt
        yield item


@pytest.fixture(scope="module")
def queue(tmp_path_factory):
    """A queue's RUNS_DIR: ``finished`` (3 of 3 epochs) and ``stopped`` (2 of 3, the same run), with logs."""
    runs = tmp_path_factory.mktemp("runs")
    train(resolve_config("digits-lt", overrides={**OPTIONS, "out": str(runs / "finished")}))
    with pytest.raises(KeyboardInterrupt):
        train(
            resolve_config("digits-lt", overrides={**OPTIONS, "out": str(runs / "stopped")}),
            progress=stop_before_epoch_2,
        )
    (runs / "finished.log").write_text("finished's log\n")
    (runs / "stopped.log").write_text("stopped's log\n")
    return runs


def test_the_snapshot_holds_what_resume_reads_and_only_unfinished_runs(snapshot, queue, tmp_path, capsys):
    dest = tmp_path / "in-progress"
    (dest / "gone").mkdir(parents=True)  # an earlier snapshot of a run that has finished since
    (dest / "gone" / ".fbl-run").write_text("{}")
    (dest / "gone.log").write_text("old\n")
    (dest / "README.md").write_text("a user's file\n")
    assert snapshot.main([str(queue), str(dest)]) == 0
    assert capsys.readouterr().out == "stopped: 2 of 3 epochs done\n"
    assert sorted(p.name for p in dest.iterdir()) == ["README.md", "stopped", "stopped.log"]
    run, copy = queue / "stopped", dest / "stopped"
    for name in ("config.yaml", "splits.json", "metrics.jsonl", "checkpoints/last.pt"):
        assert (copy / name).read_bytes() == (run / name).read_bytes(), name
    assert not (copy / "tb").exists() and (dest / "stopped.log").read_text() == "stopped's log\n"
    assert any(name.startswith("tb/") for name in json.loads((run / ".fbl-run").read_text())["files"])
    listed = json.loads((copy / ".fbl-run").read_text())["files"]
    held = sorted(p.relative_to(copy).as_posix() for p in copy.rglob("*") if p.is_file() and p.name != ".fbl-run")
    assert listed == held  # the file list names what the snapshot holds, not the omitted tb/ events
    best, slim = load_checkpoint(run / "checkpoints" / "best.pt"), load_checkpoint(copy / "checkpoints" / "best.pt")
    assert best["optimizer"] is not None and slim["optimizer"] is None and slim["best"] == best["best"]
    for key, tensor in best["model"].items():
        assert torch.equal(slim["model"][key], tensor), key


def test_a_restored_snapshot_resumes_to_the_uninterrupted_weights(snapshot, queue, tmp_path):
    dest, elsewhere = tmp_path / "in-progress", tmp_path / "new-machine"
    snapshot.snapshot(queue, dest)
    shutil.copytree(dest, elsewhere)
    assert main(["train", "--resume", str(elsewhere / "stopped"), "--device", "cpu", "--quiet"]) == 0
    uninterrupted = load_checkpoint(queue / "finished")["model"]
    resumed = load_checkpoint(elsewhere / "stopped")["model"]
    for key, tensor in uninterrupted.items():
        assert torch.equal(resumed[key], tensor), key
    summary = json.loads((elsewhere / "stopped" / "summary.json").read_text())
    assert summary["last"]["top1"] == json.loads((queue / "finished" / "summary.json").read_text())["last"]["top1"]


def test_a_checkpoint_written_between_the_copies_is_refused(snapshot, queue, tmp_path, capsys):
    runs = tmp_path / "runs"
    shutil.copytree(queue / "stopped", runs / "stopped")
    best = load_checkpoint(runs / "stopped" / "checkpoints" / "best.pt")
    best["best"] = {**best["best"], "epoch": best["best"]["epoch"] + 1}  # a later epoch than last.pt selected
    save_checkpoint(best, runs / "stopped" / "checkpoints" / "best.pt")
    assert snapshot.main([str(runs), str(tmp_path / "dest")]) == 2
    assert "pause it" in capsys.readouterr().err
