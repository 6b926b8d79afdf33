"""fbl compare: the grid runs once, finished runs are skipped, interrupted ones resume, and the grid
point is chosen on validation (never test)."""

import json
from pathlib import Path

import pytest

from fbl.cli import main
from fbl.compare import choose, decide, first_difference, folder_name, parse_grid, plan, requested_config
from fbl.config import config_from_dict, resolve_config
from fbl.errors import ConfigError

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


def test_a_config_file_is_refused_in_one_line_not_dropped(tmp_path, capsys):
    config = tmp_path / "mine.yaml"
    config.write_text("epochs: 1\n")
    out = tmp_path / "cmp"
    assert main(["compare", "--preset", "digits-lt", "--losses", "ce", "--config", str(config), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "reads no --config file" in err[0] and not out.exists()


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


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err.removeprefix("fbl: error: ").rstrip("\n")


def _summaries(out):
    return {p.name: (p / "summary.json").stat().st_mtime_ns for p in out.iterdir() if (p / "summary.json").is_file()}


@pytest.mark.parametrize(
    "flags, difference",
    [
        (["--epochs", "3", "--device", "cpu"], "--epochs 2, not 3"),
        ([*TRAIN, "--lr", "0.5"], "--lr 0.05, not 0.5"),  # the digits-lt preset's lr is 0.05
    ],
)
def test_a_rerun_with_other_settings_is_refused_naming_the_difference(compared, capsys, flags, difference):
    before = _summaries(compared)
    assert main([*ARGS, "--out", str(compared), *flags]) == 2
    assert _one_line_error(capsys) == (
        f"{compared / 'ce-seed0'} holds a run trained with {difference} as asked now: pick another --out, "
        "or pass --overwrite to train it again"
    )
    assert _summaries(compared) == before  # nothing trained, nothing reported from the old numbers


def test_runtime_options_do_not_make_a_run_another_one(compared, capsys):
    before = _summaries(compared)
    assert main([*ARGS, "--out", str(compared), *TRAIN, "--eval-every", "2", "--workers", "1"]) == 0
    assert _summaries(compared) == before


ONE = ["compare", "--preset", "digits-lt", "--losses", "ce", "--seeds", "0"]


def test_an_interrupted_run_is_resumed_only_with_its_own_settings(tmp_path, capsys):
    out = tmp_path / "out"
    assert main([*ONE, "--out", str(out), "--epochs", "1", "--device", "cpu"]) == 0
    (out / "ce-seed0" / "summary.json").unlink()  # as if killed after its checkpoint
    capsys.readouterr()
    assert main([*ONE, "--out", str(out), "--epochs", "1", "--device", "cpu", "--lr", "0.5"]) == 2
    assert "holds a run trained with --lr 0.05, not 0.5 as asked now" in _one_line_error(capsys)
    assert not (out / "ce-seed0" / "summary.json").exists()


def test_overwrite_retrains_fbls_runs_with_the_new_settings_and_keeps_a_users_files(tmp_path, capsys):
    out = tmp_path / "out"
    assert main([*ONE, "--out", str(out), "--epochs", "1", "--device", "cpu"]) == 0
    (out / "ce-seed0" / "my-notes.txt").write_text("mine")
    assert main([*ONE, "--out", str(out), "--epochs", "2", "--device", "cpu", "--overwrite"]) == 0
    summary = json.loads((out / "ce-seed0" / "summary.json").read_text())
    assert summary["last"]["epoch"] == 1  # the second of two epochs, as an index from 0
    assert (out / "ce-seed0" / "my-notes.txt").read_text() == "mine"


def test_a_folder_fbl_did_not_write_is_never_cleared(tmp_path, capsys):
    out = tmp_path / "out"
    (out / "ce-seed0").mkdir(parents=True)
    (out / "ce-seed0" / "config.yaml").write_text("loss: ce\n")  # a user's file: no .fbl-run, no run
    assert main([*ONE, "--out", str(out), "--epochs", "1", "--device", "cpu", "--overwrite"]) == 2
    assert _one_line_error(capsys).startswith(f"{out / 'ce-seed0' / 'config.yaml'} was not written by fbl")
    assert (out / "ce-seed0" / "config.yaml").read_text() == "loss: ce\n"
    assert sorted(p.name for p in out.rglob("*")) == ["ce-seed0", "config.yaml"]


def test_folder_names_keep_safe_characters_and_encode_the_rest():
    assert folder_name("fbl-lambda_=15-seed0") == "fbl-lambda_=15-seed0"
    assert folder_name("ce-exp_str=../../..-seed0") == "ce-exp_str=..%2F..%2F..-seed0"
    assert folder_name("..") == "%2E."
    assert folder_name("ce-x=a b%/λ") == "ce-x=a%20b%25%2F%CE%BB"
    long = folder_name("ce-x=" + "a" * 300)
    assert len(long) == 200 and long.startswith("ce-x=aaa") and long[183] == "~"


def test_a_grid_value_cannot_put_a_run_outside_out(tmp_path):
    out = tmp_path / "a" / "b" / "out"
    runs = plan(["ce"], [0], {"exp_str": ["../../..", "/etc"]}, out)
    assert [r.folder for r in runs] == [
        out / "ce-exp_str=..%2F..%2F..-seed0",
        out / "ce-exp_str=%2Fetc-seed0",
    ]
    (out).mkdir(parents=True)
    (out / "ce-seed0").symlink_to(tmp_path)  # a link inside --out leading out of it
    with pytest.raises(ConfigError, match="leads outside --out"):
        plan(["ce"], [0], {}, out)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--seeds", "0,0"], "--seeds lists seed 0 more than once; one run per seed, give each seed once"),
        (
            ["--confirm-seeds", "1,1"],
            "--confirm-seeds lists seed 1 more than once; one run per seed, give each seed once",
        ),
        (["--seeds", ""], "--seeds names no seed; give one or more, e.g. --seeds 0,1,2"),
        (["--losses", ","], "--losses names no loss; give one or more, e.g. --losses ce,fbl"),
        (["--select-on", "val-top2"], "Expected --select-on val-<top1|many|medium|few> but got 'val-top2'"),
        (
            ["--val-split", "none"],
            "--select-on val-top1 chooses on the validation split, but --val-split none trains without one; "
            "pass --val-split auto or a number per class (the test split never chooses)",
        ),
        (
            ["--losses", "ce,CE"],
            "ce-seed0 and CE-seed0 would train the same run; list each loss, grid value and seed once",
        ),
        (
            ["--losses", "fbl", "--grid", "lambda_=30,30.0"],
            "fbl-lambda_=30-seed0 and fbl-lambda_=30.0-seed0 would train the same run",
        ),
        (["--losses", "ce,fbll"], "Unknown loss 'fbll'"),
        (["--resume", "x"], "--resume is set by fbl compare itself: interrupted runs are resumed automatically"),
    ],
)
def test_a_bad_request_is_refused_before_anything_trains(tmp_path, capsys, flags, message):
    out = tmp_path / "out"
    assert main([*ONE, *flags, "--out", str(out), *TRAIN]) == 2
    assert _one_line_error(capsys).startswith(message)
    assert not out.exists()


def test_out_that_is_a_file_or_holds_a_users_report_is_refused_before_training(tmp_path, capsys):
    (tmp_path / "file").write_text("mine")
    assert main([*ONE, "--out", str(tmp_path / "file"), *TRAIN]) == 2
    assert _one_line_error(capsys) == (
        f"cannot use {tmp_path / 'file'} as the comparison folder: it is an existing file, not a folder"
    )
    (tmp_path / "out" / "report").mkdir(parents=True)
    (tmp_path / "out" / "report" / "report.md").write_text("my report")
    capsys.readouterr()
    assert main([*ONE, "--out", str(tmp_path / "out"), *TRAIN]) == 2
    assert "report.md was not written by fbl" in _one_line_error(capsys)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report"]


def test_a_torn_summary_is_one_line_when_choosing(tmp_path):
    run = plan(["ce"], [0], {}, tmp_path)[0]
    run.folder.mkdir()
    (run.folder / "config.yaml").write_text("loss: ce\n")
    (run.folder / "summary.json").write_text('{"last_val": {"top1": 5')
    with pytest.raises(ConfigError, match=r"summary.json is not valid JSON \(line 1\)"):
        choose([run], "val-top1")


@pytest.mark.parametrize(
    "items, message",
    [
        (["seed=1,2"], "--grid seed is set by fbl compare itself: use --seeds"),
        (["overwrite=true"], "--grid overwrite is set by fbl compare itself: pass --overwrite to retrain runs whose"),
        (["lambda_=15", "lambda_=30"], "--grid lambda_ is given twice; list every value once"),
        (["lamda=15"], "Unknown config key(s) 'lamda' (did you mean 'lambda_'?) in --grid"),
    ],
)
def test_grid_keys_fbl_compare_sets_or_that_are_repeated_are_refused(items, message):
    with pytest.raises(ConfigError) as err:
        parse_grid(items)
    assert str(err.value).startswith(message)


# The ensemble losses (ride, sade, balpoe, fbl-experts) train a multi-expert model: fbl compare starts each
# from its method preset <preset>-<loss>, under the command's flags and the grid point.


#: Where the runs would go: nothing is written there.
NOWHERE = Path("/tmp/fbl-compare-nowhere")


def _asked(loss, preset, overrides=None, point=()):
    run = plan([loss], [0], {k: [v] for k, v in point}, NOWHERE)[0]
    return requested_config(run, preset, overrides or {})


def test_ride_under_cifar10_lt_takes_the_ride_preset():
    cfg = _asked("ride", "cifar10-lt")
    assert cfg.run.preset == "cifar10-lt-ride"
    assert cfg.model.arch == "resnet32-ride" and cfg.loss.loss == "ride"
    assert cfg.loss.loss_options == {"max_m": 0.5, "s": 30.0, "diversity_factor": -0.45}
    assert cfg.loss.train_rule == "drw"
    assert cfg.optim.batch_size == 128 and cfg.optim.weight_decay == 0.0005
    assert list(cfg.optim.lr_decay) == [0.01, 0.0001]
    # The rest is cifar10-lt's, as for every other loss of the comparison.
    assert cfg.data.dataset == "cifar10" and cfg.data.imb_factor == 0.01
    assert cfg.optim.epochs == 200 and cfg.optim.lr == 0.1


def test_each_ensemble_loss_takes_its_own_method_preset():
    balpoe = _asked("balpoe", "cifar100-lt")
    assert (balpoe.run.preset, balpoe.model.arch, balpoe.data.dataset) == (
        "cifar100-lt-balpoe",
        "resnet32-experts",
        "cifar100",
    )
    assert balpoe.loss.loss_options == {"taus": [0.0, 1.0, 2.0], "s": 30.0}
    assert balpoe.loss.mixup is True and balpoe.loss.mixup_alpha == 0.4
    experts = _asked("FBL_experts", "cifar10-lt")  # any spelling of the loss
    assert (experts.run.preset, experts.model.arch) == ("cifar10-lt-fbl-experts", "resnet32-experts")
    assert list(experts.loss.expert_lambdas) == [15.0, 30.0, 60.0]
    # No --preset: the one --dataset picks (cifar10-lt), so its method preset; resnet32-sade names resnet32-ride.
    sade = _asked("sade", None, {"dataset": "cifar10"})
    assert (sade.run.preset, sade.model.arch, sade.loss.loss_options) == (
        "cifar10-lt-sade",
        "resnet32-ride",
        {"s": 30.0, "tau": 2.0},
    )


def test_a_flag_beats_the_method_preset_and_a_grid_value_beats_both():
    cfg = _asked("ride", "cifar10-lt", {"batch_size": 64, "weight_decay": 0.001}, point=(("batch_size", 32),))
    assert cfg.optim.batch_size == 32  # grid point
    assert cfg.optim.weight_decay == 0.001  # flag
    assert cfg.model.arch == "resnet32-ride" and cfg.loss.train_rule == "drw"  # method preset
    assert cfg.optim.lr == 0.1  # base preset


@pytest.mark.parametrize("loss", ["ce", "fbl", "ldam", "focal", "cb-focal"])
def test_single_model_losses_resolve_from_the_preset_as_before(loss):
    overrides = {"epochs": 3, "val_split": 5}
    cfg = _asked(loss, "cifar10-lt", overrides)
    assert cfg.run.preset == "cifar10-lt" and cfg.model.arch == "resnet32"
    assert cfg.optim.batch_size == 64 and cfg.optim.weight_decay == 0.0002 and cfg.loss.train_rule == "none"
    before = {**overrides, "loss": loss, "seed": 0, "out": str(NOWHERE / f"{loss}-seed0")}
    assert cfg == resolve_config("cifar10-lt", overrides=before)  # what compare asked for before method presets


def test_a_rerun_recognises_a_method_preset_run():
    asked = _asked("ride", "cifar10-lt")
    recorded = config_from_dict(json.loads(json.dumps(asked.to_dict())), "config.yaml")  # as written, read back
    assert first_difference(recorded, _asked("ride", "cifar10-lt")) is None
    # fbl train --preset cifar10-lt --loss ride --arch resnet32-ride: another run (none of the ride preset's values).
    plain = resolve_config("cifar10-lt", overrides={"loss": "ride", "arch": "resnet32-ride", "seed": 0})
    assert first_difference(plain, asked) == "--rotate 0.0, not 15.0"
    plain = plain.replace(rotate=15.0)
    assert first_difference(plain, asked) == (
        '--loss-option {}, not {"max_m": 0.5, "s": 30.0, "diversity_factor": -0.45}'
    )


NO_METHOD_PRESET = (
    "--losses ride trains a multi-expert model and there is no method preset digits-lt-ride with its settings: "
    "pass --arch digits-experts or resnet32-experts or resnet32-ride, or a --preset that has one (cifar10-lt, "
    "cifar100-lt)"
)


@pytest.mark.parametrize(
    "flags",
    [["--preset", "digits-lt", "--losses", "ce,ride"], ["--losses", "ce,ride", "--arch", "resnet32"]],
)
def test_an_ensemble_loss_without_a_method_preset_is_one_line_before_training(tmp_path, capsys, flags):
    out = tmp_path / "out"
    assert main(["compare", *flags, "--seeds", "0", "--out", str(out), *TRAIN]) == 2
    assert _one_line_error(capsys) == NO_METHOD_PRESET
    assert not out.exists()  # ce was not trained either


def test_a_multi_expert_arch_in_the_flags_runs_without_a_method_preset(tmp_path):
    out = tmp_path / "out"
    args = ["compare", "--preset", "digits-lt", "--losses", "ride", "--seeds", "0", "--arch", "digits-experts"]
    assert main([*args, "--out", str(out), "--epochs", "1", "--device", "cpu"]) == 0
    run = plan(["ride"], [0], {}, out)[0]
    assert json.loads((run.folder / "summary.json").read_text())["last_val"]["top1"] is not None
    asked = requested_config(run, "digits-lt", {"arch": "digits-experts", "epochs": 1, "device": "cpu"})
    assert (asked.run.preset, asked.model.arch, asked.loss.loss) == ("digits-lt", "digits-experts", "ride")
    assert decide(run, asked, overwrite=False) == "skip"  # a rerun recognises the finished run


def test_a_bracketed_grid_value_is_one_list_valued_point():
    grid = parse_grid(["expert_lambdas=[15,30,60],[30, 60, 120]", "lambda_=30,60"])
    assert grid == {"expert_lambdas": [(15, 30, 60), (30, 60, 120)], "lambda_": [30, 60]}  # tuples: hashable
    runs = plan(["fbl-experts"], [0], {"expert_lambdas": grid["expert_lambdas"]}, NOWHERE)
    assert [requested_config(run, "cifar10-lt", {}).loss.expert_lambdas for run in runs] == [
        [15.0, 30.0, 60.0],
        [30.0, 60.0, 120.0],
    ]
    assert [run.folder.name for run in runs] == [
        "fbl-experts-expert_lambdas=15,30,60-seed0",
        "fbl-experts-expert_lambdas=30,60,120-seed0",
    ]


@pytest.mark.parametrize("values", ["[15,30,60", "15,30]", "[15,[30],60"])
def test_unbalanced_brackets_in_a_grid_value_are_one_line(values):
    with pytest.raises(ConfigError, match="Unbalanced"):
        parse_grid([f"expert_lambdas={values}"])


def test_validation_chooses_among_list_valued_points(tmp_path):
    grid = parse_grid(["expert_lambdas=[15,30,60],[30,60,120]"])
    runs = plan(["fbl-experts"], [0, 1], grid, tmp_path)
    for run, val in zip(runs, (70.0, 72.0, 75.0, 74.0), strict=True):  # (15,30,60) seeds 0, 1; then (30,60,120)
        run.folder.mkdir()
        (run.folder / "config.yaml").write_text("loss: fbl-experts\n")
        (run.folder / "summary.json").write_text(json.dumps({"last_val": {"top1": val}}))
    (point, score) = choose(runs, "val-top1")["fbl-experts"]
    assert point == (("expert_lambdas", (30, 60, 120)),) and score == pytest.approx(74.5)
