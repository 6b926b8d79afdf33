"""analysis/fidelity.py: the JPEG/lossless pairing, the reporting rule and the logit-adjustment curve."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from fbl.cli import main
from fbl.engine.evaluate_checkpoint import evaluate_checkpoint

SCRIPT = Path(__file__).resolve().parents[2] / "analysis" / "fidelity.py"


@pytest.fixture(scope="module")
def fidelity():
    spec = importlib.util.spec_from_file_location("analysis_fidelity", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pairing_recovers_a_shuffled_noisy_copy(fidelity):
    generator = torch.Generator().manual_seed(0)
    lossless = torch.randn(40, 48, generator=generator)
    labels = torch.arange(40) % 4
    order = torch.randperm(40, generator=generator)
    jpeg = lossless[order] + 0.05 * torch.randn(40, 48, generator=generator)
    index, worst = fidelity.pair_with_jpeg(lossless, labels, jpeg, labels[order])
    # jpeg[k] is lossless[order[k]], so lossless image i sits at the k with order[k] == i.
    assert index.tolist() == [order.tolist().index(i) for i in range(40)]
    assert 0 < worst < 0.1


def test_pairing_only_matches_images_of_the_same_label(fidelity):
    lossless = torch.tensor([[0.0, 0.0], [10.0, 10.0]])
    jpeg = torch.tensor([[0.1, 0.0], [9.0, 9.0]])
    index, _ = fidelity.pair_with_jpeg(lossless, torch.tensor([0, 1]), jpeg, torch.tensor([1, 0]))
    assert index.tolist() == [1, 0]  # the nearer image has the other label


def test_an_ambiguous_pairing_is_refused(fidelity):
    lossless = torch.zeros(2, 3)
    with pytest.raises(SystemExit, match="matched the same JPEG image"):
        fidelity.pair_with_jpeg(lossless, torch.tensor([0, 0]), torch.zeros(3, 3), torch.tensor([0, 0, 0]))


def test_reporting_rule_reads_last_and_best_on_test(fidelity, tmp_path):
    top1 = [10.0, 50.0, 75.5, 71.0, 73.0]
    lines = [json.dumps({"epoch": e, "eval": {"top1": t}}) for e, t in enumerate(top1)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    # load_run reads a finished run folder only: it needs summary.json and config.yaml beside metrics.jsonl.
    (tmp_path / "summary.json").write_text("{}")
    (tmp_path / "config.yaml").write_text("seed: 0\n")
    rule = fidelity.reporting_rule(tmp_path)
    assert rule == {
        "last_epoch": 4,
        "last_top1": 73.0,
        "best_on_test_epoch": 2,
        "best_on_test_top1": 75.5,
        "last20_min": 10.0,
        "last20_max": 75.5,
    }


def test_diagnose_a_real_cifar10_run(fidelity, cifar10_root, tmp_path):
    run = tmp_path / "run"
    argv = ["train", "--preset", "cifar10-lt", "--data-dir", str(cifar10_root), "--epochs", "1", "--limit-batches", "1"]
    argv += ["--precision", "fp32", "--no-channels-last", "--no-compile", "--device", "cpu", "--quiet"]
    argv += ["--out", str(run)]
    assert main(argv) == 0
    result = fidelity.diagnose(run, None)

    pair = result["paired_jpeg_vs_lossless"]
    assert pair["images"] == 1000 and pair["worst_pair_relative_distance"] < 0.5  # a one-to-one pairing held
    # The script's own forward pass agrees with `fbl eval` on the same weights.
    reference = evaluate_checkpoint(str(run), device="cpu", split="test_lossless")
    assert pair["lossless_top1"] == pytest.approx(reference["top1"], abs=0.15)
    curves = result["logit_adjust_curves"]
    untouched = {split: next(p for p in curve if p["tau"] == 0) for split, curve in curves.items()}
    assert untouched["test"]["top1"] == result["test_top1"]
    assert untouched["test_lossless"]["top1"] == pair["lossless_top1"]
    for split, curve in curves.items():
        assert result["best_tau"][split]["top1"] == max(point["top1"] for point in curve)
    # Per-class accuracy on the 1,000 (class counts 103, 89, ...) averages back to top-1.
    counts = [103, 89, 100, 103, 90, 86, 112, 102, 106, 109]
    weighted = sum(acc * n for acc, n in zip(pair["lossless_per_class"], counts, strict=True)) / 1000
    assert weighted == pytest.approx(pair["lossless_top1"])
    assert "| Run |" in fidelity.markdown([result])
    figure = fidelity.paired_figure([result], tmp_path / "paired.png")
    assert figure.read_bytes().startswith(b"\x89PNG") and figure.stat().st_size > 1000
