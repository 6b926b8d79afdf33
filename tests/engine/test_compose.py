"""Any loss composes with any train rule (and mixup): one short run each, end to end."""

import json
import math

import pytest
import torch
import yaml

from fbl.config import resolve_config
from fbl.engine.trainer import train
from fbl.errors import ConfigError
from fbl.losses import list_losses, loss_class
from fbl.train_rules import get_train_rule, list_train_rules


@pytest.fixture(scope="module")
def experts_run(tmp_path_factory):
    """A finished multi-expert run: what RIDE's router (a stage 2) trains on."""
    out = tmp_path_factory.mktemp("experts") / "run"
    flags = {"arch": "digits-experts", "loss": "ride", "epochs": 1, "limit_batches": 1, "device": "cpu"}
    train(resolve_config("digits-lt", overrides={**flags, "quiet": True, "out": str(out)}))
    return out


@pytest.mark.parametrize("rule", list_train_rules())
@pytest.mark.parametrize("loss", list_losses())
def test_loss_and_rule_compose(loss, rule, tmp_path, request):
    overrides = {
        "loss": loss,
        "train_rule": rule,
        "epochs": 2,
        "limit_batches": 1,
        "device": "cpu",
        "quiet": True,
        "mixup": loss == "ce",
        "out": str(tmp_path / "run"),
    }
    if loss_class(loss).needs_experts:  # an ensemble loss trains the experts of a multi-expert model
        overrides["arch"] = "digits-experts"
    if loss.startswith("cb-") and get_train_rule(rule).loss_weighting is not None:
        # Two sources of class weights (the cb- loss and a re-weighting rule): refused up front.
        with pytest.raises(ConfigError, match="not both"):
            resolve_config("digits-lt", overrides=overrides)
        return
    if loss == "ride-router":  # RIDE's router is a stage 2 on a trained multi-expert run
        stage1 = request.getfixturevalue("experts_run")
        overrides = {**overrides, "stage2_from": str(stage1), "decoupled": "router"}
        del overrides["arch"]
        cfg = resolve_config(overrides=overrides, stage1_config=yaml.safe_load((stage1 / "config.yaml").read_text()))
    else:
        cfg = resolve_config("digits-lt", overrides=overrides)
    summary = train(cfg)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["train_loss"]) for r in records)
    assert summary["last"]["top1"] is not None


def test_drw_epoch_alone_is_one_line_naming_the_drw_rule():
    with pytest.raises(ConfigError, match="use --train_rule drw"):
        resolve_config("digits-lt", overrides={"loss": "focal", "drw_epoch": 3, "epochs": 5, "device": "cpu"})


def test_drw_epoch_defers_the_weights_of_a_cb_loss():
    from fbl.engine.experiment import build_experiment

    cfg = resolve_config("digits-lt", overrides={"loss": "cb-focal", "drw_epoch": 3, "epochs": 5, "device": "cpu"})
    rule = build_experiment(cfg).rule
    assert rule.weight_at(2) is None and rule.weighting == "effective-number"
    weight = rule.weight_at(3)
    assert weight is not None and weight[-1] > weight[0]  # tail weighted up


def test_a_cb_loss_is_weighted_through_the_train_rule():
    from fbl.class_weights import effective_number_weights
    from fbl.engine.experiment import build_experiment

    cfg = resolve_config("digits-lt", overrides={"loss": "cb-focal", "epochs": 5, "device": "cpu"})
    exp = build_experiment(cfg)
    assert type(exp.criterion).__name__ == "FocalLoss" and exp.criterion.weight is None
    expected = effective_number_weights(exp.data.class_counts, 0.9999)
    for epoch in (0, 4):
        assert torch.equal(exp.rule.weight_at(epoch), expected)
