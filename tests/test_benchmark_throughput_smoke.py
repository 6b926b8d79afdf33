"""benchmarks/throughput.py runs end to end on generated data. Its numbers are never asserted here."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "throughput.py"


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("benchmark_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_throughput_benchmark_runs_and_writes_json(tmp_path, capsys):
    benchmark = _load_benchmark()
    out = tmp_path / "throughput.json"
    threads = torch.get_num_threads()
    try:
        # No compiled variant: compiling takes minutes on a small CPU. One thread, small matmuls: seconds.
        benchmark.main([
            "--data-dir", str(tmp_path / "missing"), "--steps", "2", "--warmup", "1", "--rounds", "1",
            "--variants", "reference,fp32-eager", "--threads", "1", "--matmul-size", "256", "--json", str(out),
        ])  # fmt: skip
    finally:
        torch.set_num_threads(threads)

    report = json.loads(out.read_text())
    assert "GENERATED" in report["data"]
    assert set(report["variants"]) == {"reference", "fp32-eager"}
    for result in report["variants"].values():
        assert len(result["rounds_images_per_s"]) == 1
        assert result["images_per_s"] > 0
        assert result["matmul_fraction"] > 0
        assert result["compile_s"] is None
    assert report["variants"]["fp32-eager"]["settings"] == "fp32, NCHW, eager"
    assert report["variants"]["fp32-eager"]["ratio_to_reference"] > 0
    assert abs(report["variants"]["fp32-eager"]["alpha"] - 1.0) < 0.05  # late training, like the reference
    assert report["matmul_tflops"]["fp32"] > 0 and report["matmul_tflops"]["bf16"] > 0
    # ResNet-32 at 32x32: about 69 M multiply-adds forward, so about 0.41 GFLOP per training image.
    assert 0.35 < report["train_gflop_per_image"] < 0.47
    assert report["projection"] is None  # only the default variant is projected
    assert "| fp32-eager | fp32, NCHW, eager |" in capsys.readouterr().out


def test_fbl_reference_loss_matches_the_formula_longhand():
    benchmark = _load_benchmark()
    logits, features = torch.tensor([[1.0, 2.0, 0.5]]), torch.tensor([[3.0, 4.0]])  # ||f|| = 5
    counts = torch.tensor([100.0, 10.0, 1.0])  # lambda~ = 0, 1/2, 1
    shifted = torch.tensor([[1.0, 2.0 - 60 * 0.5 / 5, 0.5 - 60 * 1.0 / 5]])
    expected = -torch.log_softmax(shifted, dim=1)[0, 1]
    loss = benchmark.fbl_reference_loss(logits, features, torch.tensor([1]), counts)
    torch.testing.assert_close(loss, expected)
