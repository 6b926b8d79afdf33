"""The lossless estimate keeps its per-image predictions, and `fbl eval --keep-predictions` adds them to older runs."""

import json
import math
import shutil

import numpy as np
import pytest
import torch

from fbl.cli import main
from fbl.data.augment import normalize
from fbl.engine.experiment import load_trained
from fbl.predictions import load_predictions, predictions_path, save_predictions
from tests.data.test_cifar import write_cifar10

SPLIT = "lossless_estimate"


@pytest.fixture(scope="module")
def cifar_run(tmp_path_factory):
    data = tmp_path_factory.mktemp("cifar")
    write_cifar10(data)
    out = tmp_path_factory.mktemp("runs") / "run"
    args = ["train", "--dataset", "cifar10", "--data-dir", str(data), "--imb-factor", "0.1", "--arch", "resnet32",
            "--loss", "ce", "--epochs", "1", "--batch-size", "16", "--device", "cpu", "--quiet",
            "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    return out


def test_training_keeps_the_estimates_predictions_and_they_give_its_per_class_accuracy(cifar_run, tmp_path):
    summary = json.loads((cifar_run / "summary.json").read_text())
    estimate = summary["last_estimate"][SPLIT]
    predictions = load_predictions(cifar_run, SPLIT)
    assert predictions is not None and len(predictions) == sum(estimate["per_class_n"])
    for c, (acc, n) in enumerate(zip(estimate["per_class_acc"], estimate["per_class_n"], strict=True)):
        mine = predictions.label == c
        assert mine.sum() == n
        assert 100.0 * predictions.correct[mine].mean() == pytest.approx(acc)
    assert f"predictions/{SPLIT}.npz" in json.loads((cifar_run / ".fbl-run").read_text())["files"]
    # each image named by its picture: a pool position, or -1 - p for position p in the lossless test file
    (_, pool_labels), (_, lossless_labels) = write_cifar10(tmp_path / "again")  # the same seeded arrays
    ids = predictions.image
    assert ids is not None and len(set(ids.tolist())) == len(ids)
    named = np.where(ids >= 0, pool_labels[np.clip(ids, 0, None)], lossless_labels[np.clip(-1 - ids, 0, None)])
    np.testing.assert_array_equal(predictions.label, named)
    assert (ids < 0).sum() == estimate["per_class_n"][0]  # class 0 is estimated on the lossless test file
    # accuracy under the test priors on the estimate, uncorrected = Σ π_c acc_c, and prior-corrected
    uniform = estimate["test_priors"]["uniform"]
    assert uniform["uncorrected"] == pytest.approx(estimate["top1"]) and uniform["corrected"] is not None


def test_eval_keep_predictions_adds_them_to_a_run_without_and_leaves_identical_ones(cifar_run, tmp_path, capsys):
    older = tmp_path / "older"
    shutil.copytree(cifar_run, older)
    original = load_predictions(older, SPLIT)
    predictions_path(older, SPLIT).unlink()  # as runs trained before training kept them
    data = ["--device", "cpu", "--quiet", "--split", SPLIT, "--keep-predictions"]
    assert main(["eval", str(older), *data]) == 0
    assert "predictions kept in" in capsys.readouterr().out
    again = load_predictions(older, SPLIT)
    for name in ("index", "label", "prediction"):
        np.testing.assert_array_equal(getattr(again, name), getattr(original, name))
    assert main(["eval", str(older), *data]) == 0
    assert "already in (identical)" in capsys.readouterr().out
    # a file kept before predictions named their pictures is completed with the names
    save_predictions(older, SPLIT, type(original)(original.index, original.label, original.prediction, 10))
    assert main(["eval", str(older), *data]) == 0
    assert "predictions kept in" in capsys.readouterr().out
    np.testing.assert_array_equal(load_predictions(older, SPLIT).image, original.image)


def _one_line_error(capsys):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_keep_predictions_refuses_other_predictions_and_changed_models(cifar_run, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(cifar_run, other)
    kept = load_predictions(other, SPLIT)
    flipped = kept.prediction.copy()
    flipped[0] = (flipped[0] + 1) % kept.num_classes
    save_predictions(other, SPLIT, type(kept)(kept.index, kept.label, flipped, kept.num_classes))
    base = ["eval", str(other), "--device", "cpu", "--quiet", "--split", SPLIT, "--keep-predictions"]
    assert main(base) == 2
    assert "already holds other predictions" in _one_line_error(capsys)
    assert main([*base, "--logit-adjust", "1"]) == 2
    assert "drop --logit-adjust" in _one_line_error(capsys)
    assert main([*base[:1], str(other / "checkpoints" / "last.pt"), *base[2:]]) == 2
    assert "needs a finished run folder" in _one_line_error(capsys)


def test_each_expert_of_an_ensemble_gets_its_balanced_estimate_longhand(tmp_path_factory):
    data = tmp_path_factory.mktemp("cifar")
    write_cifar10(data)
    out = tmp_path_factory.mktemp("runs") / "experts"
    args = ["train", "--dataset", "cifar10", "--data-dir", str(data), "--imb-factor", "0.1",
            "--arch", "resnet32-experts", "--loss", "fbl-experts", "--epochs", "1", "--batch-size", "16",
            "--precision", "fp32", "--no-compile", "--no-channels-last", "--device", "cpu", "--quiet",
            "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    experts = json.loads((out / "summary.json").read_text())["experts"]
    trained = load_trained(str(out), device=torch.device("cpu"))
    images, labels = trained.data.eval_tensors(SPLIT)
    with torch.no_grad():
        x = normalize(images, trained.data.augment.mean, trained.data.augment.std)
        expert_logits = trained.model.eval()(x, return_experts=True)[2].logits
    for k, entry in enumerate(experts):
        right = expert_logits[:, k].argmax(1) == labels
        accuracy = [right[labels == c].double().mean().item() for c in range(10)]
        sizes = [int((labels == c).sum()) for c in range(10)]
        estimate = entry["estimates"][SPLIT]
        assert estimate["top1"] == pytest.approx(100 * sum(accuracy) / 10)
        se = 100 * math.sqrt(sum(a * (1 - a) / n for a, n in zip(accuracy, sizes, strict=True))) / 10
        assert estimate["se"] == pytest.approx(se)


def test_eval_on_the_estimate_gives_the_balanced_numbers_intervals(cifar_run):
    # The split's classes differ in size: its intervals are the balanced estimate's ± 1.96 SE, not a
    # bootstrap of the image-weighted top-1, and what the image counts would weigh is left out.
    from fbl.engine.evaluate_checkpoint import evaluate_checkpoint

    result = evaluate_checkpoint(str(cifar_run), device="cpu", split=SPLIT)
    acc, n = result["per_class_acc"], result["per_class_n"]
    top1 = sum(acc) / len(acc)
    se = 100 * math.sqrt(sum((a / 100) * (1 - a / 100) / m for a, m in zip(acc, n, strict=True))) / len(acc)
    assert result["top1"] == pytest.approx(top1) and result["se"] == pytest.approx(se)
    assert result["ci95"]["top1"] == pytest.approx([top1 - 1.959964 * se, top1 + 1.959964 * se])
    groups = [g for g in ("many", "medium", "few") if result[g] is not None]
    assert groups  # this tiny profile: medium (class 0, 20 images) and few
    for g in groups:
        value, group_se = result[g], result[f"{g}_se"]
        assert result["ci95"][g] == pytest.approx([value - 1.959964 * group_se, value + 1.959964 * group_se])
    assert result["macro_f1"] is None and result["ci95"]["macro_f1"] is None and result["top5"] is None
