"""Every run kept in ``results/`` with its weights is checked against what it recorded, in three steps:

1. **Its predictions add up to its summary** (every run, every split it kept): the per-image predictions in
   ``predictions/`` give the recorded confusion matrix, per-class accuracies and top-1, and on the lossless
   estimate split the balanced estimate and its standard error, recomputed longhand here.
2. **Its weights make those predictions** (every run, every split it kept, sampled): ``evaluate_checkpoint``
   with ``limit_batches=1`` (``fbl eval --limit-batches 1``: the split's first 256 images) reproduces the
   recorded prediction of each of those images.
3. **The whole evaluation path gives its summary** (one run, FBL with lambda = 60): ``evaluate_checkpoint`` on
   all 10,000 test images and the 1,000 lossless ones gives the recorded metrics, feature norms included.

Steps 1 and 2 bind every run's weights to its numbers at a cost that does not grow with the splits' sizes;
step 3 checks once, end to end, what step 2 samples. Evaluating every run whole does not fit the suite's
time: bf16 on a CPU without bf16 units runs ResNet-32 at about 50 images/s, so one multi-expert run's
48,697 images take most of an hour.

The CIFAR-10 runs were trained on ``../shared``'s CIFAR-10 (materialized by the ``cifar10_root`` fixture).
Each run is evaluated with the thread count that finished it (its provenance; a queue may train one
single-thread run per core). On a CPU like the one that made the run's summary (same model and bf16 units)
the numbers must come out bit for bit; elsewhere bf16 kernels round differently, so a handful of images may
change class and the check is that top-1 and every class stay within a few images.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from fbl.engine.evaluate_checkpoint import evaluate_checkpoint, evaluate_checkpoint_with_predictions
from fbl.engine.provenance import cpu_description
from fbl.predictions import Predictions, load_predictions

RESULTS = Path(__file__).resolve().parents[1] / "results"
KEPT = sorted(path.parent.parent for path in RESULTS.glob("**/checkpoints/last.pt"))
IDS = [str(path.relative_to(RESULTS)) for path in KEPT]
#: Step 3's run: FBL (lambda = 60) on CIFAR-10-LT, the paper's method as the paper trains it.
WHOLE = RESULTS / "cifar10-lt-reruns" / "fbl-lambda60-seed123"
#: Images that may change class in step 2's 256 on a CPU unlike the one that made the summary (bf16 rounding).
SAMPLE_TOLERANCE = 4


def same_machine(provenance: dict) -> bool:
    here = cpu_description()
    keys = ("cpu", "cpu_amx_bf16", "cpu_avx512_bf16")
    return provenance.get("device") == "cpu" and all(provenance.get(k) == here[k] for k in keys)


@pytest.fixture
def set_threads():
    """Sets torch's thread count for the test (bf16 kernels split work, and round, by threads) and restores it."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def confusion_of(kept: Predictions) -> list[list[int]]:
    matrix = [[0] * kept.num_classes for _ in range(kept.num_classes)]
    for label, prediction in zip(kept.label.tolist(), kept.prediction.tolist(), strict=True):
        matrix[label][prediction] += 1
    return matrix


def test_some_runs_are_kept_with_their_weights():
    assert KEPT, "results/ holds no run kept with `fbl record`"


@pytest.mark.parametrize("run", KEPT, ids=IDS)
def test_a_kept_runs_predictions_add_up_to_its_summary(run):
    summary = json.loads((run / "summary.json").read_text())
    splits = {"test": summary["last"], **summary.get("last_extra", {})}
    for split, recorded in splits.items():
        kept = load_predictions(run, split)
        confusion = confusion_of(kept)
        assert confusion == recorded["confusion"], split
        per_class = [100 * row[c] / sum(row) for c, row in enumerate(confusion)]
        assert per_class == pytest.approx(recorded["per_class_acc"], abs=1e-9), split
        hits = sum(row[c] for c, row in enumerate(confusion))
        assert 100 * hits / len(kept) == pytest.approx(recorded["top1"], abs=1e-9), split
    for split, recorded in summary.get("last_estimate", {}).items():
        kept = load_predictions(run, split)
        confusion = confusion_of(kept)
        sizes = [sum(row) for row in confusion]
        accuracy = [row[c] / n for c, (row, n) in enumerate(zip(confusion, sizes, strict=True))]
        assert sizes == recorded["per_class_n"]
        assert [100 * a for a in accuracy] == pytest.approx(recorded["per_class_acc"], abs=1e-9)
        assert 100 * sum(accuracy) / len(accuracy) == pytest.approx(recorded["top1"], abs=1e-9)
        variance = sum(a * (1 - a) / n for a, n in zip(accuracy, sizes, strict=True))
        assert 100 * math.sqrt(variance) / len(accuracy) == pytest.approx(recorded["se"], abs=1e-9)


def kept_splits(summary: dict) -> list[str]:
    return ["test", *summary.get("last_extra", {}), *summary.get("last_estimate", {})]


@pytest.mark.parametrize("run", KEPT, ids=IDS)
def test_a_kept_runs_weights_make_its_recorded_predictions(run, cifar10_root, set_threads):
    summary = json.loads((run / "summary.json").read_text())
    set_threads(summary["provenance"]["threads"])
    for split in kept_splits(summary):
        _, sample = evaluate_checkpoint_with_predictions(
            str(run), data_dir=str(cifar10_root), device="cpu", split=split, limit_batches=1
        )
        kept = load_predictions(run, split)
        order = np.argsort(kept.index)
        recorded = kept.rows(order[np.isin(kept.index[order], sample.index)])
        assert recorded.index.tolist() == sample.index.tolist(), split
        assert recorded.label.tolist() == sample.label.tolist(), split
        changed = int((recorded.prediction != sample.prediction).sum())
        assert changed <= (0 if same_machine(summary["provenance"]) else SAMPLE_TOLERANCE), split


def assert_reproduced(result: dict, recorded: dict, exact: bool) -> None:
    if exact:
        assert result["per_class_acc"] == recorded["per_class_acc"]
        assert result["top1"] == recorded["top1"]
        if "per_class_feature_norm" in recorded:  # the estimate records accuracies only
            assert result["per_class_feature_norm"] == recorded["per_class_feature_norm"]
    else:  # 0.3 points of 10,000 images: 30 images; a class of 1,000 images: 20 images
        assert result["top1"] == pytest.approx(recorded["top1"], abs=0.3)
        assert result["per_class_acc"] == pytest.approx(recorded["per_class_acc"], abs=2.0)


def test_the_headline_run_evaluates_whole_to_its_summary(cifar10_root, set_threads):
    summary = json.loads((WHOLE / "summary.json").read_text())
    exact = same_machine(summary["provenance"])
    set_threads(summary["provenance"]["threads"])
    for split, recorded in {"test": summary["last"], **summary["last_extra"]}.items():
        again = evaluate_checkpoint(str(WHOLE), data_dir=str(cifar10_root), device="cpu", split=split)
        assert_reproduced(again, recorded, exact)
