"""Presets, config resolution order and early validation of method options."""

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from fbl.config import list_presets, load_preset, resolve_config
from fbl.errors import ConfigError

PAPER_CIFAR = {
    "arch": "resnet32",
    "epochs": 200,
    "batch_size": 64,
    "lr": 0.1,
    "momentum": 0.9,
    "nesterov": False,
    "weight_decay": 2e-4,
    "warmup_epochs": 5,
    "seed": 123,
    "imb_factor": 0.01,
    "imb_type": "exp",
}


@pytest.mark.parametrize("name", ["cifar10-lt", "cifar100-lt"])
def test_paper_presets_hold_the_paper_hyper_parameters(name):
    cfg = resolve_config(name)
    for key, value in PAPER_CIFAR.items():
        assert cfg.flat()[key] == value, key
    assert (cfg.loss.loss, cfg.loss.lambda_, cfg.loss.alpha_schedule) == ("fbl", 60.0, "parabolic")
    assert cfg.optim.lr_milestones == [0.8, 0.9] and cfg.optim.lr_decay == [0.01, 0.0001]


#: The ensemble papers' released CIFAR-LT configurations (RIDE, SADE, BalPoE): 200 epochs, lr 0.1 with 5
#: warm-up epochs, steps at 160 and 180, Nesterov SGD, batch 128, weight decay 5e-4; their CIFAR data
#: loaders add RandomRotation(15) after the crop and flip.
ENSEMBLE_OPTIM = {
    "ride": {"lr_decay": [0.01, 0.0001]},
    "sade": {"lr_decay": [0.1, 0.01]},
    "balpoe": {"lr_decay": [0.1, 0.01]},
}
#: BalPoE's mixup alpha: 0.8 in its CIFAR-10 configurations, 0.4 in its CIFAR-100 ones.
BALPOE_MIXUP = {"cifar10": 0.8, "cifar100": 0.4}


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
@pytest.mark.parametrize("method", sorted(ENSEMBLE_OPTIM))
def test_ensemble_presets_hold_their_papers_optimisation(method, dataset):
    cfg = resolve_config(f"{dataset}-lt-{method}").flat()
    expected = {"epochs": 200, "lr": 0.1, "warmup_epochs": 5, "lr_milestones": [0.8, 0.9], "nesterov": True}
    expected |= {"momentum": 0.9, "batch_size": 128, "weight_decay": 5e-4, "rotate": 15.0, **ENSEMBLE_OPTIM[method]}
    assert {key: cfg[key] for key in expected} == expected
    if method == "balpoe":
        assert cfg["mixup"] is True and cfg["mixup_alpha"] == BALPOE_MIXUP[dataset]


@pytest.mark.parametrize("name", ["cifar10-lt", "cifar10-lt-ldam-drw", "cifar10-lt-fbl-experts", "cifar100-lt"])
def test_the_fbl_papers_pipeline_does_not_rotate(name):
    assert resolve_config(name).data.rotate == 0.0


@pytest.mark.parametrize("degrees", [-1, 181, -0.5])
def test_a_rotation_outside_0_to_180_degrees_is_one_line(degrees):
    with pytest.raises(ConfigError, match="Expected a rotation of 0 to 180 degrees"):
        resolve_config("cifar10-lt", overrides={"rotate": degrees})


def test_nesterov_without_momentum_is_one_line():
    with pytest.raises(ConfigError, match="--nesterov needs a momentum above 0"):
        resolve_config("cifar10-lt", overrides={"nesterov": True, "momentum": 0.0})


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_resolves_and_names_its_paper(name):
    preset = load_preset(name)
    assert preset["description"] and preset["paper"]
    if preset.get("decoupled") == "router":  # a stage 2: on top of a RIDE run
        stage1 = resolve_config("cifar10-lt-ride").to_dict()
        resolve_config(name, overrides={"stage2_from": "ride-run"}, stage1_config=stage1)
    else:
        resolve_config(name)  # builds the loss and train rule on stand-in counts


#: RIDE's router stage (its *_ride_ea.json configurations): 5 epochs, batch 512 class-balanced, SGD lr 0.01
#: Nesterov, weight decay 5e-4, cosine annealing, BCE with pos_weight 100.
RIDE_ROUTER = {"epochs": 5, "batch_size": 512, "train_rule": "balanced-rs", "lr": 0.01, "momentum": 0.9}
RIDE_ROUTER |= {"nesterov": True, "weight_decay": 5e-4, "warmup_epochs": 0, "lr_schedule": "cosine"}


def test_router_preset_holds_rides_router_stage_and_keeps_the_stage1_data_and_model():
    stage1 = resolve_config("cifar100-lt-ride")
    cfg = resolve_config("ride-router", overrides={"stage2_from": "ride-run"}, stage1_config=stage1.to_dict()).flat()
    assert {key: cfg[key] for key in RIDE_ROUTER} == RIDE_ROUTER
    assert (cfg["decoupled"], cfg["loss"], cfg["loss_options"]) == ("router", "ride-router", {"pos_weight": 100.0})
    assert (cfg["dataset"], cfg["arch"], cfg["rotate"]) == ("cifar100", "resnet32-ride", 15.0)


def test_router_stage_needs_a_stage1_run_and_its_loss():
    with pytest.raises(ConfigError, match="give --stage2-from"):
        resolve_config("cifar10-lt-ride", overrides={"decoupled": "router", "loss": "ride-router", "loss_options": {}})
    with pytest.raises(ConfigError, match="--loss ride-router and --decoupled router together"):
        resolve_config("cifar10-lt-ride", overrides={"loss": "ride-router", "loss_options": {}})


LAMBDA_SWEEP = Path(__file__).resolve().parents[1] / "results" / "cifar10-lt-lambda"


def test_tuned_preset_is_the_lambda_validation_chose_and_the_run_it_was_chosen_with():
    record = json.loads((LAMBDA_SWEEP / "chosen.json").read_text())["fbl"]
    assert record["chosen_on_seeds"] == [123] and record["confirmed_on_seeds"] == [124, 125]
    chosen = record["point"]["lambda_"]
    tuned = resolve_config("cifar10-lt-tuned").flat()
    paper = resolve_config("cifar10-lt").flat()
    assert tuned["lambda_"] == chosen == 30
    assert {k for k in tuned if tuned[k] != paper[k]} == {"lambda_", "val_split", "preset"}
    # every setting that shapes training equals the recorded run's (not where it ran or wrote)
    recorded = yaml.safe_load((LAMBDA_SWEEP / f"fbl-lambda_={chosen}-seed123" / "config.yaml").read_text())
    bookkeeping = {"data_dir", "device", "out", "overwrite", "quiet", "preset", "eval_every"}  # eval: not training
    assert {k: tuned[k] for k in recorded if k not in bookkeeping} == {
        k: v for k, v in recorded.items() if k not in bookkeeping
    }


def test_method_presets_extend_the_dataset_preset():
    cfg = resolve_config("cifar100-lt-ldam-drw")
    assert (cfg.data.dataset, cfg.model.arch, cfg.optim.epochs) == ("cifar100", "resnet32", 200)
    assert (cfg.loss.loss, cfg.loss.train_rule, cfg.model.classifier) == ("ldam", "drw", "normed")
    assert cfg.loss.loss_options == {"max_m": 0.5, "s": 30.0}
    assert resolve_config("cifar10-lt-focal").loss.loss_options == {"gamma": 1.0}


def test_flags_override_preset_and_method_presets_rescale():
    cfg = resolve_config("cifar10-lt-ldam-drw", overrides={"epochs": 20})
    assert cfg.optim.epochs == 20  # DRW epoch follows the run length (0.8 of it), not a hard-coded 160


def test_classifier_follows_the_loss_unless_given():
    assert resolve_config("digits-lt", overrides={"loss": "ldam"}).model.classifier == "normed"
    assert resolve_config("digits-lt", overrides={"loss": "fbl"}).model.classifier == "linear"
    assert resolve_config("digits-lt", overrides={"loss": "ldam", "classifier": "linear"}).model.classifier == "linear"


@pytest.mark.parametrize(
    "overrides, needle",
    [
        ({"loss": "focal", "loss_options": {"gamma": -1}}, "gamma"),
        ({"loss": "ldam", "loss_options": {"s": 0}}, r"\bs\b"),
    ],
)
def test_bad_loss_option_values_fail_when_the_experiment_is_built(overrides, needle):
    # Option keys are checked against the loss's signature up front; values by the loss itself,
    # which is built before the first step.
    from fbl.engine.experiment import build_experiment

    cfg = resolve_config("digits-lt", overrides={**overrides, "device": "cpu"})
    with pytest.raises(ConfigError, match=needle):
        build_experiment(cfg)


@pytest.mark.parametrize(
    "overrides, needle",
    [
        ({"train_rule": "drw", "drw_epoch": 60}, "never switch on"),
        ({"beta": 1.0}, "beta"),
        ({"train_rule": "sometimes"}, "balanced-rs"),
        ({"loss": "ce", "loss_options": {"gamma": 2}}, "does not take"),
        ({"classifier": "round"}, "linear"),
        ({"loss": "sade"}, "multi-expert model's experts; give --arch digits-experts"),
        ({"num_experts": 4}, "--num-experts applies to"),
    ],
)
def test_bad_method_options_fail_before_any_data_is_read(overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        resolve_config("digits-lt", overrides=overrides)


def test_unknown_yaml_key_is_an_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochz: 3\n")
    with pytest.raises(ConfigError, match="epochz"):
        resolve_config(config_file=str(path))


# ---- one declaration per option ---------------------------------------------------------------------

RESULTS = Path(__file__).resolve().parents[1] / "results"
RECORDED_RUNS = sorted(
    p.parent for p in RESULTS.rglob("config.yaml") if "config_version" not in yaml.safe_load(p.read_text())
)  # the runs recorded before config sections (version 1); later ones are kept in sections


def test_the_recorded_runs_are_there():
    assert len(RECORDED_RUNS) >= 8


@pytest.mark.parametrize("run", RECORDED_RUNS, ids=[str(r.relative_to(RESULTS)) for r in RECORDED_RUNS])
def test_version_1_run_configs_load_into_sections_unchanged(run):
    from fbl.config import config_from_dict, option_specs

    flat = yaml.safe_load((run / "config.yaml").read_text())
    assert "config_version" not in flat and "lr" in flat  # the flat layout of version 1
    cfg = config_from_dict(flat, str(run))
    assert {key: cfg.flat()[key] for key in flat} == flat  # every value where it was, none lost
    newer = {key: spec.default for key, spec in option_specs().items() if key not in flat}
    newer["fast_decode"] = False  # added later: older runs decoded with PIL, and keep doing so on resume
    assert {key: cfg.flat()[key] for key in newer} == newer  # options added since: what the run did then
    assert (cfg.loss.loss, cfg.optim.lr, cfg.data.dataset) == (flat["loss"], flat["lr"], flat["dataset"])
    saved = cfg.to_dict()
    assert saved["config_version"] == 2 and saved["optim"]["epochs"] == flat["epochs"]
    assert config_from_dict(saved, "round trip") == cfg


def test_a_config_file_may_group_options_by_section(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 0.05\nloss:\n  loss: fbl\n  lambda_: 30\noptim:\n  epochs: 7\n")
    cfg = resolve_config(config_file=str(path))
    assert (cfg.optim.lr, cfg.loss.loss, cfg.loss.lambda_, cfg.optim.epochs) == (0.05, "fbl", 30.0, 7)


def test_a_newer_config_version_is_one_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("config_version: 3\nlr: 0.05\n")
    with pytest.raises(ConfigError, match="config_version 3"):
        resolve_config(config_file=str(path))


def test_stage2_values_follow_the_declarations():
    from fbl.config import stage2_values

    stage1 = resolve_config("cifar10-lt-ldam-drw", overrides={"seed": 7, "lr": 0.3, "mixup": True}).to_dict()
    values = stage2_values(stage1)
    # inherited: the data and backbone the stage-1 run trained (and its optimiser settings)
    assert (values["dataset"], values["arch"], values["seed"], values["lr"]) == ("cifar10", "resnet32", 7, 0.3)
    # the same training subset and held-out images: a stage 1 without a validation split gives none, since
    # the largest class's validation images would come from the images its backbone trained on
    assert (values["imb_factor"], values["rand_number"], values["val_split"]) == (0.01, 0, "none")
    assert values["classifier"] == "normed" and values["lr_milestones"] == [0.8, 0.9]
    # the cRT recipe (Kang et al., ICLR 2020)
    assert (values["loss"], values["train_rule"], values["epochs"], values["warmup_epochs"]) == (
        "ce",
        "balanced-rs",
        10,
        0,
    )
    assert values["mixup"] is False and values["drw_epoch"] is None and values["loss_options"] == {}
    # neither inherited nor set: the option's default
    assert "precision" not in values and "pretrained" not in values


def test_a_new_field_is_a_flag_a_yaml_key_and_a_help_line_without_touching_the_cli(monkeypatch, tmp_path, capsys):
    import fbl.config as config
    from fbl.cli import main, train_overrides, train_parser

    @dataclasses.dataclass
    class RunWithKnob(config.RunConfig):
        """Where and how it runs."""

        knob_size: int = config.option(3, "--knob-size", "--knob_size", help="how large the knob is")

    @dataclasses.dataclass
    class WithKnob(config.TrainConfig):
        run: RunWithKnob = dataclasses.field(default_factory=RunWithKnob)

    monkeypatch.setattr(config, "TrainConfig", WithKnob)
    with pytest.raises(SystemExit, match="0"):
        main(["train", "--help"])
    assert "--knob-size KNOB_SIZE, --knob_size KNOB_SIZE" in capsys.readouterr().out.replace("\n ", " ")
    overrides, preset, _ = train_overrides(train_parser().parse_args(["--knob_size", "5"]))
    assert config.resolve_config(preset, overrides=overrides).run.knob_size == 5
    path = tmp_path / "c.yaml"
    path.write_text("knob_size: 7\n")
    assert config.resolve_config(config_file=str(path)).run.knob_size == 7
    path.write_text("knob_size: seven\n")
    with pytest.raises(ConfigError, match="knob_size"):
        config.resolve_config(config_file=str(path))
    assert config.resolve_config().run.knob_size == 3


def test_help_shows_every_default_and_every_seed_spelling(capsys):
    from fbl.cli import main

    with pytest.raises(SystemExit, match="0"):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for words in ("--learning_rate LR, --lr LR", "--lambda_ LAMBDA_, --lambda LAMBDA_", "--loss_type LOSS, --loss LOSS",
                  "(default: 0.1)", "(default: 0.8,0.9)", "(default: parabolic)", "--no-channels-last"):  # fmt: skip
        assert words in text, words


def test_choices_are_declared_once_and_checked_for_flags_and_files_alike(tmp_path):
    with pytest.raises(ConfigError, match="Unknown precision 'bf17'; choose one of: auto, fp32, bf16, fp16"):
        resolve_config("digits-lt", overrides={"precision": "bf17"})
    path = tmp_path / "c.yaml"
    path.write_text("nan_policy: sometimes\n")
    with pytest.raises(ConfigError, match="Unknown nan_policy 'sometimes'; choose one of: stop, skip"):
        resolve_config(config_file=str(path))
    assert resolve_config("digits-lt", overrides={"precision": "BF16"}).run.precision == "bf16"
