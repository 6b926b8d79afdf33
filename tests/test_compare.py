"""fbl compare: the grid runs once, finished runs are skipped, interrupted ones resume, and the grid
point is chosen on validation (never test)."""

import json

import pytest

from fbl.cli import main
from fbl.compare import choose, plan

ARGS = ["compare", "--preset", "digits-lt", "--losses", "ce,fbl", "--seeds", "0,1", "--grid", "lambda_=15,30"]
TRAIN = ["--epochs", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    assert main([*ARGS, "--out", str(out), *TRAIN]) == 0
    return out


def test_every_grid_point_and_seed_has_a_finished_run(compared):
    folders = sorted(p.name for p in compared.iterdir() if (p / "summary.json").is_file())
    # lambda_ is FBL's: CE is trained once per seed, not once per grid point.
    expected = [f"fbl-lambda_={lam}-seed{seed}" for lam in (15, 30) for seed in (0, 1)] + ["ce-seed0", "ce-seed1"]
    assert folders == sorted(expected)
    assert (compared / "report" / "report.html").is_file()


def test_finished_runs_are_skipped_and_an_interrupted_one_resumes(compared, capsys):
    stamps = {p: (p / "summary.json").stat().st_mtime_ns for p in compared.iterdir() if (p / "summary.json").exists()}
    interrupted = compared / "fbl-lambda_=30-seed1"
    (interrupted / "summary.json").unlink()
    assert main([*ARGS, "--out", str(compared), *TRAIN]) == 0
    assert (interrupted / "summary.json").is_file()
    for folder, stamp in stamps.items():
        if folder != interrupted:
            assert (folder / "summary.json").stat().st_mtime_ns == stamp


def test_the_choice_is_the_best_mean_validation_score_not_test(compared, tmp_path):
    runs = plan(["fbl"], [0, 1], {"lambda_": [15, 30]}, compared)
    chosen = choose(runs, "val-top1")
    means = {}
    for run in runs:
        summary = json.loads((run.folder / "summary.json").read_text())
        means.setdefault(run.point, []).append(summary["last_val"]["top1"])
    best_point = max(means, key=lambda p: sum(means[p]) / len(means[p]))
    assert chosen["fbl"][0] == best_point
    # Make test favour the other point: the choice must not move.
    for run in runs:
        if run.point != best_point:
            path = run.folder / "summary.json"
            summary = json.loads(path.read_text())
            summary["last"]["top1"] = 100.0
            path.write_text(json.dumps(summary))
    assert choose(runs, "val-top1")["fbl"][0] == best_point


def test_bad_selection_metric_is_one_line(compared, capsys):
    assert main([*ARGS, "--out", str(compared), "--select-on", "test-top1", *TRAIN]) == 2
    assert "val-<top1|many|medium|few>" in capsys.readouterr().err


def test_confirm_seeds_train_only_the_point_chosen_on_the_first_seeds(tmp_path, capsys):
    out = tmp_path / "confirm"
    args = ["compare", "--preset", "digits-lt", "--losses", "fbl", "--seeds", "0", "--grid", "lambda_=15,30"]
    assert main([*args, "--confirm-seeds", "1,0", "--out", str(out), *TRAIN]) == 0
    vals = {lam: json.loads((out / f"fbl-lambda_={lam}-seed0" / "summary.json").read_text())["last_val"]["top1"]
            for lam in (15, 30)}  # fmt: skip
    best = 15 if vals[15] >= vals[30] else 30  # the first of equal scores wins, as in choose()
    folders = sorted(p.name for p in out.iterdir() if (p / "summary.json").is_file())
    assert folders == sorted(["fbl-lambda_=15-seed0", "fbl-lambda_=30-seed0", f"fbl-lambda_={best}-seed1"])
    record = json.loads((out / "chosen.json").read_text())["fbl"]
    assert record["point"] == {"lambda_": best} and record["val"] == vals[best]
    assert record["chosen_on_seeds"] == [0] and record["confirmed_on_seeds"] == [1]  # seed 0 is not trained twice
    assert f"fbl (lambda_={best}; val {vals[best]:.2f}; n=2)" in capsys.readouterr().out


@pytest.mark.parametrize("flag", ["--seeds", "--confirm-seeds"])
def test_seeds_that_are_not_integers_are_one_line(tmp_path, capsys, flag):
    assert main([*ARGS, flag, "1,x", "--out", str(tmp_path), *TRAIN]) == 2
    assert f"argument {flag}: expected comma-separated integers but got '1,x'" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # refused before anything trained
