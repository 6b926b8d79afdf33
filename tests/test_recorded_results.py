"""Every run kept in ``results/`` with its weights evaluates to the summary it recorded.

The CIFAR-10 runs were trained on ``../shared``'s CIFAR-10 (materialized by the ``cifar10_root``
fixture). Each run is evaluated with the thread count that finished it (its provenance; a queue may
train one single-thread run per core). On a CPU like the one that trained the run (same model and bf16
units) the numbers must come out bit for bit; elsewhere bf16 kernels round differently, so a handful of
images may change class and the check is that top-1 and every class stay within a few images.

Every kept run is checked on its test split; the extra splits (the 1,000 lossless images, the
37,697-image lossless estimate) go through the same evaluation path and cost about 20 s each, so
they are checked on the first kept run only, which keeps the suite's time flat as results/ grows.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fbl.engine.evaluate_checkpoint import evaluate_checkpoint
from fbl.engine.provenance import cpu_description

RESULTS = Path(__file__).resolve().parents[1] / "results"
KEPT = sorted(path.parent.parent for path in RESULTS.glob("**/checkpoints/last.pt"))


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


def assert_reproduced(result: dict, recorded: dict, exact: bool) -> None:
    if exact:
        assert result["per_class_acc"] == recorded["per_class_acc"]
        assert result["top1"] == recorded["top1"]
        if "per_class_feature_norm" in recorded:  # the estimate records accuracies only
            assert result["per_class_feature_norm"] == recorded["per_class_feature_norm"]
    else:  # 0.3 points of 10,000 images: 30 images; a class of 1,000 images: 20 images
        assert result["top1"] == pytest.approx(recorded["top1"], abs=0.3)
        assert result["per_class_acc"] == pytest.approx(recorded["per_class_acc"], abs=2.0)


def test_some_runs_are_kept_with_their_weights():
    assert KEPT, "results/ holds no run kept with `fbl record`"


@pytest.mark.parametrize("run", KEPT, ids=[str(path.relative_to(RESULTS)) for path in KEPT])
def test_a_kept_run_evaluates_to_its_recorded_summary(run, cifar10_root, set_threads):
    summary = json.loads((run / "summary.json").read_text())
    exact = same_machine(summary["provenance"])
    set_threads(summary["provenance"]["threads"])
    result = evaluate_checkpoint(str(run), data_dir=str(cifar10_root), device="cpu")
    assert_reproduced(result, summary["last"], exact)
    if run != KEPT[0]:
        return
    for split, recorded in summary.get("last_extra", {}).items():
        again = evaluate_checkpoint(str(run), data_dir=str(cifar10_root), device="cpu", split=split)
        assert_reproduced(again, recorded, exact)
    for split, recorded in summary.get("last_estimate", {}).items():  # the balanced estimate and its error
        again = evaluate_checkpoint(str(run), data_dir=str(cifar10_root), device="cpu", split=split)
        assert_reproduced(again, recorded, exact)
        assert again["se"] == (recorded["se"] if exact else pytest.approx(recorded["se"], rel=0.05))
