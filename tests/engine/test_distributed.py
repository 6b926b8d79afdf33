"""DDP on CPU with 2 gloo processes under torchrun: exact evaluation, the same step as one process
for the same global batch, and exact resume."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from fbl.data.sharding import eval_share, shard_order
from fbl.engine.checkpoint import load_checkpoint
from fbl.engine.evaluate_checkpoint import evaluate_checkpoint

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "fbl"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
DIGITS = ["--preset", "digits-lt", "--device", "cpu", "--quiet"]


def torchrun(args, timeout=300):
    done = subprocess.run([*TORCHRUN, *args], env=ENV, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def single(args):
    done = subprocess.run([sys.executable, "-m", "fbl", *args], env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]


def test_shares_are_disjoint_equal_and_cover_every_global_batch():
    order = torch.randperm(23)
    shares = [shard_order(order, 8, rank, 2) for rank in (0, 1)]
    assert len(shares[0]) == len(shares[1]) == 12  # 23 padded to 24 = 3 global batches of 8
    for batch in range(3):
        local = [s[batch * 4 : (batch + 1) * 4] for s in shares]
        global_batch = torch.cat([order, order[:1]])[batch * 8 : (batch + 1) * 8]
        assert sorted(torch.cat(local).tolist()) == sorted(global_batch.tolist())
    evals = [eval_share(23, rank, 2) for rank in (0, 1)]
    assert sorted(torch.cat(evals).tolist()) == list(range(23))  # no padding in evaluation


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "run"
    torchrun(["train", *DIGITS, "--epochs", "3", "--out", str(out)])
    return out


def test_distributed_evaluation_equals_a_single_process_evaluation(ddp_run):
    summary = json.loads((ddp_run / "summary.json").read_text())
    alone = evaluate_checkpoint(str(ddp_run), device="cpu")
    assert alone["per_class_acc"] == summary["last"]["per_class_acc"]
    assert alone["top1"] == summary["last"]["top1"]
    assert alone["per_class_feature_norm"] == pytest.approx(summary["last"]["per_class_feature_norm"], rel=1e-12)


def test_one_step_on_the_same_global_batch_matches_one_process(ddp_run, tmp_path):
    # cRT keeps the backbone (and its BatchNorm) frozen in eval mode, so the two jobs compute the same
    # function; only the classifier learns, from the same 64 samples split 32 + 32.
    args = ["train", "--stage2-from", str(ddp_run), "--device", "cpu", "--quiet", "--epochs", "1"]
    args += ["--limit-batches", "1", "--batch_size", "64", "--precision", "fp32", "--no-compile"]
    single([*args, "--out", str(tmp_path / "one")])
    torchrun([*args, "--out", str(tmp_path / "two")])
    one, two = load_checkpoint(tmp_path / "one")["model"], load_checkpoint(tmp_path / "two")["model"]
    trained = [k for k in one if k.startswith("model.fc.")]
    assert trained
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-5, atol=1e-6)


def test_a_distributed_run_resumes_exactly(ddp_run, tmp_path):
    out = tmp_path / "run"
    process = subprocess.Popen(
        [*TORCHRUN, "train", *DIGITS, "--epochs", "3", "--out", str(out)], env=ENV,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 1:
            os.killpg(process.pid, signal.SIGKILL)  # the job dies between (or during) epochs
            break
        time.sleep(0.05)
    process.wait()
    torchrun(["train", "--resume", str(out), "--device", "cpu", "--quiet"])
    uninterrupted, resumed = load_checkpoint(ddp_run)["model"], load_checkpoint(out)["model"]
    for key in uninterrupted:
        assert torch.equal(uninterrupted[key], resumed[key]), key
