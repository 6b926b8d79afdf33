"""benchmarks/gpu_check.sh runs end to end with GPU_CHECK_QUICK=1 (CPU numbers here). Its numbers are never asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"


def test_quick_gpu_check_reports_every_measurement(tmp_path):
    env = {**os.environ, "GPU_CHECK_QUICK": "1", "GPU_CHECK_OUT": str(tmp_path), "PYTHON": sys.executable}
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["quick"] is True and report["device"]
    cifar = report["cifar"]
    assert set(cifar["images_per_s"]) == {"reference", "default"} and min(cifar["images_per_s"].values()) > 0
    assert cifar["speedup"] == cifar["images_per_s"]["default"] / cifar["images_per_s"]["reference"]
    projection = cifar["projection_200_epochs"]
    assert projection["total_h"] >= projection["train_h"] + projection["eval_h"] > 0
    assert report["resnet50"]["images_per_s"] > 0 and report["resnet50"]["image_size"] == 64
    rate = report["resnet50"]["images_per_s"]
    for path in ("pil", "tensor", "shards-jpg-fast"):
        entry = report["decoding"][path]
        assert entry["cores_needed"] * entry["images_per_s_per_core"] == pytest.approx(rate)
    text = (tmp_path / "gpu_check.md").read_text()
    assert "ResNet-50 64 px" in text and "| shards-jpg-fast |" in text
