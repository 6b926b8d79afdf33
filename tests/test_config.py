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
        assert getattr(cfg, key) == value, key
    assert (cfg.loss, cfg.lambda_, cfg.alpha_schedule) == ("fbl", 60.0, "parabolic")
    assert cfg.lr_milestones == [0.8, 0.9] and cfg.lr_decay == [0.01, 0.0001]


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_resolves_and_names_its_paper(name):
    preset = load_preset(name)
    assert preset["description"] and preset["paper"]
    resolve_config(name)  # builds the loss and train rule on stand-in counts


LAMBDA_SWEEP = Path(__file__).resolve().parents[1] / "results" / "cifar10-lt-lambda"


def test_tuned_preset_is_the_lambda_validation_chose_and_the_run_it_was_chosen_with():
    record = json.loads((LAMBDA_SWEEP / "chosen.json").read_text())["fbl"]
    assert record["chosen_on_seeds"] == [123] and record["confirmed_on_seeds"] == [124, 125]
    chosen = record["point"]["lambda_"]
    tuned = dataclasses.asdict(resolve_config("cifar10-lt-tuned"))
    paper = dataclasses.asdict(resolve_config("cifar10-lt"))
    assert tuned["lambda_"] == chosen == 30
    assert {k for k in tuned if tuned[k] != paper[k]} == {"lambda_", "val_split", "preset"}
    # every setting that shapes training equals the recorded run's (not where it ran or wrote)
    recorded = yaml.safe_load((LAMBDA_SWEEP / f"fbl-lambda_={chosen}-seed123" / "config.yaml").read_text())
    bookkeeping = {"data_dir", "device", "out", "overwrite", "quiet", "preset"}
    assert {k: v for k, v in tuned.items() if k not in bookkeeping} == {
        k: v for k, v in recorded.items() if k not in bookkeeping
    }


def test_method_presets_extend_the_dataset_preset():
    cfg = resolve_config("cifar100-lt-ldam-drw")
    assert (cfg.dataset, cfg.arch, cfg.epochs) == ("cifar100", "resnet32", 200)
    assert (cfg.loss, cfg.train_rule, cfg.classifier) == ("ldam", "drw", "normed")
    assert cfg.loss_options == {"max_m": 0.5, "s": 30.0}
    assert resolve_config("cifar10-lt-focal").loss_options == {"gamma": 1.0}


def test_flags_override_preset_and_method_presets_rescale():
    cfg = resolve_config("cifar10-lt-ldam-drw", overrides={"epochs": 20})
    assert cfg.epochs == 20  # DRW epoch follows the run length (0.8 of it), not a hard-coded 160


def test_classifier_follows_the_loss_unless_given():
    assert resolve_config("digits-lt", overrides={"loss": "ldam"}).classifier == "normed"
    assert resolve_config("digits-lt", overrides={"loss": "fbl"}).classifier == "linear"
    assert resolve_config("digits-lt", overrides={"loss": "ldam", "classifier": "linear"}).classifier == "linear"


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
    from fbl.engine.trainer import build_experiment

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
