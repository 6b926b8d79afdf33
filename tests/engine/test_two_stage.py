"""cRT (stage 2 on a frozen backbone) and post-hoc corrections at evaluation time."""

import json

import pytest
import torch
import yaml

from fbl.cli import main
from fbl.config import flatten
from fbl.engine.checkpoint import load_checkpoint
from fbl.engine.evaluate_checkpoint import evaluate_checkpoint

FAST = ["--device", "cpu", "--quiet", "--warmup-epochs", "1"]


@pytest.fixture(scope="module")
def stage1(tmp_path_factory):
    out = tmp_path_factory.mktemp("stage1") / "run"
    assert main(["train", "--preset", "digits-lt", "--loss", "fbl", "--epochs", "2", "--out", str(out), *FAST]) == 0
    return out


@pytest.fixture(scope="module")
def stage2(stage1, tmp_path_factory):
    out = tmp_path_factory.mktemp("stage2") / "crt"
    assert (
        main(["train", "--stage2-from", str(stage1), "--epochs", "2", "--out", str(out), "--device", "cpu", "--quiet"])
        == 0
    )
    return out


def test_stage2_config_inherits_data_and_uses_crt_defaults(stage1, stage2):
    cfg = flatten(yaml.safe_load((stage2 / "config.yaml").read_text()))
    assert cfg["stage2_from"] == str(stage1)
    assert (cfg["dataset"], cfg["arch"], cfg["loss"], cfg["train_rule"]) == (
        "digits-lt",
        "digits-cnn",
        "ce",
        "balanced-rs",
    )
    assert json.loads((stage2 / "summary.json").read_text())["last"]["top1"] is not None


@pytest.mark.parametrize("val_split", ["none", "2"])
def test_stage2_trains_and_validates_on_the_stage1_runs_images(tmp_path, val_split):
    first, second = tmp_path / "stage1", tmp_path / "stage2"
    common = [*FAST, "--epochs", "1", "--limit-batches", "2"]
    assert main(["train", "--preset", "digits-lt", "--val-split", val_split, "--out", str(first), *common]) == 0
    assert main(["train", "--stage2-from", str(first), "--out", str(second), *common]) == 0
    splits = json.loads((first / "splits.json").read_text())
    assert json.loads((second / "splits.json").read_text()) == splits
    assert ("val" in splits) == (val_split != "none")


def test_stage2_trains_only_the_classifier(stage1, stage2):
    before = load_checkpoint(stage1)["model"]
    after = load_checkpoint(stage2)["model"]
    assert set(after) == {f"model.{k}" for k in before}
    for key, value in before.items():
        if key.startswith("fc."):
            assert not torch.equal(value, after[f"model.{key}"]), key
        else:  # conv weights and BatchNorm running statistics are frozen
            assert torch.equal(value, after[f"model.{key}"]), key


def test_eval_of_stage2_checkpoint_matches_its_summary(stage2):
    summary = json.loads((stage2 / "summary.json").read_text())
    assert evaluate_checkpoint(str(stage2), device="cpu")["top1"] == pytest.approx(summary["last"]["top1"])


def _longhand_predictions(run, classifier_weight_fn, logit_fn):
    from fbl.config import config_from_dict
    from fbl.engine.experiment import build_experiment

    state = load_checkpoint(run)
    exp = build_experiment(config_from_dict(state["config"], "test").replace(device="cpu"))
    exp.model.load_state_dict(state["model"])
    exp.model.eval()
    hits, total = 0, 0
    with torch.no_grad():
        for x, y in exp.eval_loader("test"):
            f = exp.model.forward_features(x)
            w, b = exp.model.fc.weight, exp.model.fc.bias
            logits = logit_fn(f @ classifier_weight_fn(w).T, b, exp.data.class_counts)
            hits += (logits.argmax(1) == y).sum().item()
            total += len(y)
    return 100.0 * hits / total


def test_posthoc_logit_adjustment_longhand(stage1):
    tau = 1.0

    def adjusted(z, b, counts):
        prior = torch.tensor(counts, dtype=torch.float64) / sum(counts)
        return (z + b).double() - tau * prior.log()

    expected = _longhand_predictions(stage1, lambda w: w, adjusted)
    assert evaluate_checkpoint(str(stage1), device="cpu", logit_adjust_tau=tau)["top1"] == pytest.approx(expected)
    plain = evaluate_checkpoint(str(stage1), device="cpu", logit_adjust_tau=0.0)["top1"]
    assert plain == pytest.approx(evaluate_checkpoint(str(stage1), device="cpu")["top1"])


def test_posthoc_tau_norm_longhand(stage1):
    p = 1.0
    expected = _longhand_predictions(
        stage1,
        lambda w: w / w.norm(dim=1, keepdim=True).pow(p),
        lambda z, b, counts: z,  # bias dropped
    )
    assert evaluate_checkpoint(str(stage1), device="cpu", tau_norm=p)["top1"] == pytest.approx(expected)


def test_eval_cli_with_posthoc_flags(stage1, capsys):
    assert main(["eval", str(stage1), "--device", "cpu", "--logit-adjust", "1", "--tau-norm", "1", "--quiet"]) == 0
    assert "+logit-adjust 1 +tau-norm 1" in capsys.readouterr().out


def test_stage2_from_a_missing_run_is_a_clear_error(tmp_path, capsys):
    assert main(["train", "--stage2-from", str(tmp_path / "nope"), "--device", "cpu"]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.fixture(scope="module")
def router_stage(tmp_path_factory):
    root = tmp_path_factory.mktemp("ride")
    ride = ["train", "--preset", "digits-lt", "--arch", "digits-experts", "--loss", "ride", "--epochs", "3", *FAST]
    assert main([*ride, "--out", str(root / "experts")]) == 0
    router = ["train", "--stage2-from", str(root / "experts"), "--preset", "ride-router", "--epochs", "2"]
    assert main([*router, "--out", str(root / "router"), "--device", "cpu", "--quiet"]) == 0
    return root / "experts", root / "router"


def test_rides_router_stage_keeps_the_experts_and_trains_only_the_router(router_stage):
    experts, router = router_stage
    before, after = load_checkpoint(experts)["model"], load_checkpoint(router)["model"]
    assert set(after) == {f"model.{k}" for k in before} | {k for k in after if k.startswith("router.")} | {
        "logit_scale"
    }
    for key, value in before.items():  # every expert's weights and BatchNorm statistics
        assert torch.equal(value, after[f"model.{key}"]), key
    assert float(after["logit_scale"]) == 30.0  # the RIDE loss's s: the experts' logits as trained
    summary = json.loads((router / "summary.json").read_text())
    shares = [entry["routed_share"] for entry in summary["experts"]]
    assert shares[0] == 1.0 and all(a >= b for a, b in zip(shares, shares[1:], strict=False))
    lrs = [json.loads(line)["lr"] for line in (router / "metrics.jsonl").read_text().splitlines()]
    assert lrs == pytest.approx([0.01, 0.005])  # cosine over the 2 epochs asked for
    assert evaluate_checkpoint(str(router), device="cpu")["top1"] == pytest.approx(summary["last"]["top1"])
