"""`fbl record` keeps a run's results and weights; `fbl eval` of the kept run gives its summary back exactly."""

import json

import pytest
import torch

from fbl.cli import main
from fbl.engine.checkpoint import load_checkpoint
from fbl.errors import ConfigError

# A compiled bf16 run in channels-last: the execution whose rounding fp32 eager would not repeat.
FAST_BF16 = ["--epochs", "2", "--device", "cpu", "--quiet", "--warmup-epochs", "1", "--precision", "bf16",
             "--compile", "--channels-last"]  # fmt: skip


@pytest.fixture(scope="module")
def bf16_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "bf16"
    assert main(["train", "--preset", "digits-lt", "--out", str(out), *FAST_BF16]) == 0
    return out


@pytest.fixture(scope="module")
def kept(bf16_run, tmp_path_factory):
    dest = tmp_path_factory.mktemp("results") / "fbl-seed0"
    assert main(["record", str(bf16_run), str(dest)]) == 0
    return dest


def read_json(path):
    return json.loads(path.read_text())


def test_the_kept_run_has_every_result_file_and_both_checkpoints(bf16_run, kept):
    for name in ("config.yaml", "metrics.jsonl", "splits.json", "summary.json"):
        assert (kept / name).read_bytes() == (bf16_run / name).read_bytes(), name
    assert {p.name for p in (kept / "predictions").iterdir()} == {p.name for p in (bf16_run / "predictions").iterdir()}
    assert not (kept / "tb").exists()
    listed = set(read_json(kept / ".fbl-run")["files"])
    assert {"summary.json", "checkpoints/last.pt", "checkpoints/best.pt"} <= listed


@pytest.mark.parametrize("name", ["last", "best"])
def test_kept_checkpoints_hold_the_same_weights_without_optimizer_state(bf16_run, kept, name):
    original = load_checkpoint(bf16_run / "checkpoints" / f"{name}.pt")
    slim = load_checkpoint(kept / "checkpoints" / f"{name}.pt")
    assert original["optimizer"] is not None and slim["optimizer"] is None
    assert slim["epoch"] == original["epoch"] and slim["config"] == original["config"]
    assert slim["model"].keys() == original["model"].keys()
    for key, tensor in original["model"].items():
        assert torch.equal(slim["model"][key], tensor), key
    size = (kept / "checkpoints" / f"{name}.pt").stat().st_size
    assert size < (bf16_run / "checkpoints" / f"{name}.pt").stat().st_size


def test_eval_of_the_kept_run_reproduces_its_summary_exactly(kept, capsys):
    summary = read_json(kept / "summary.json")
    assert summary["provenance"]["precision"] == "bf16" and summary["provenance"]["compile"] == "compiled"
    assert main(["eval", str(kept), "--device", "cpu", "--quiet", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["execution"] == "bf16, channels-last, compiled"
    subsampled = {name: row.pop("subsampled") for name, row in result["test_priors"].items()}
    recorded = {key: value for key, value in summary["last"].items() if key != "epoch"}
    assert {key: result[key] for key in recorded} == recorded  # every metric, every float, bit for bit
    # SADE's subsampled form, which fbl eval adds: on this balanced test set (40 images per class) the
    # uniform prior keeps every image, so it is plain top-1
    assert [sum(row) for row in result["confusion"]] == [40] * 10
    assert subsampled["uniform"] == pytest.approx(result["top1"]) and len(subsampled) == 11


def test_eval_in_fp32_is_the_full_precision_reference_not_the_recorded_run(kept, capsys):
    assert main(["eval", str(kept), "--device", "cpu", "--quiet", "--json", "--precision", "fp32"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["execution"] == "fp32, NCHW, eager"
    recorded = read_json(kept / "summary.json")["last"]["per_class_feature_norm"]
    assert result["per_class_feature_norm"] == pytest.approx(recorded, rel=0.05)
    assert result["per_class_feature_norm"] != recorded  # bf16's rounding is not fp32's


def test_a_kept_run_cannot_be_resumed(kept, capsys):
    assert main(["train", "--resume", str(kept), "--device", "cpu", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds weights only" in err[0] and "fbl eval" in err[0]


def test_record_refuses_an_unfinished_run_and_a_folder_in_use(bf16_run, kept, tmp_path):
    from fbl.engine.record_run import record_run

    (tmp_path / "unfinished" / "checkpoints").mkdir(parents=True)
    with pytest.raises(ConfigError, match="not a finished run"):
        record_run(tmp_path / "unfinished", tmp_path / "dest")
    with pytest.raises(ConfigError, match="not an empty folder"):
        record_run(bf16_run, kept)
    assert not (tmp_path / "dest").exists()
