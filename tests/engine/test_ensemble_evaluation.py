"""A multi-expert model: per-expert metrics, DDP evaluation (2 gloo processes) equal to one process,
and an exact resume of a tiny ensemble run."""

import json

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fbl.cli import main
from fbl.config import resolve_config
from fbl.data.sharding import eval_share
from fbl.engine.checkpoint import load_checkpoint
from fbl.engine.distributed import Distributed
from fbl.engine.evaluate import evaluate
from fbl.engine.expert_metrics import evaluate_experts
from fbl.engine.trainer import train
from fbl.models import create_model

N, COUNTS, BATCH = 11, [150, 40, 8, 8, 8], 3
IMAGES = torch.randn(N, 1, 8, 8, generator=torch.Generator().manual_seed(5))
LABELS = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0])
COMPARED = ("top1", "many", "medium", "few", "per_class_acc", "per_class_feature_norm")


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _model():
    torch.manual_seed(0)
    return create_model("digits-experts", num_classes=5)


def _batches(positions):
    images, labels = IMAGES[positions], LABELS[positions]
    return [(images[i : i + BATCH], labels[i : i + BATCH]) for i in range(0, len(positions), BATCH)]


def _evaluations(positions, shared=None):
    model = _model()
    ensemble = evaluate(model, _batches(positions), COUNTS, dist=shared)
    experts = evaluate_experts(model, _batches(positions), COUNTS, dist=shared)
    return {"ensemble": {k: ensemble[k] for k in COMPARED}, "experts": experts}


def _worker(rank, world, init_file, out):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        result = _evaluations(eval_share(N, rank, world), Distributed(rank, world, torch.device("cpu")))
        with open(f"{out}/rank{rank}.json", "w") as handle:
            json.dump(result, handle)
    finally:
        dist.destroy_process_group()


def test_per_expert_metrics_are_each_experts_own():
    model = _model().eval()
    experts = evaluate_experts(model, _batches(torch.arange(N)), COUNTS)
    _, _, outputs = model(IMAGES, return_features=True, return_experts=True)
    for k, entry in enumerate(experts):
        hits = (outputs.logits[:, k].argmax(dim=1) == LABELS).float()
        per_class = [100 * hits[LABELS == c].mean().item() for c in range(5)]
        assert entry["expert"] == k and entry["per_class_acc"] == torch.tensor(per_class).double().tolist()
        assert abs(entry["many"] - per_class[0]) < 1e-9 and abs(entry["few"] - sum(per_class[2:]) / 3) < 1e-9
        norms = outputs.features[:, k].norm(dim=1)
        assert abs(entry["feature_norm"]["many"] - norms[LABELS == 0].mean().item()) < 1e-5
    assert evaluate_experts(create_model("digits-cnn", num_classes=5), _batches(torch.arange(N)), COUNTS) is None


def test_two_processes_evaluate_an_ensemble_as_one(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    alone = json.loads(json.dumps(_evaluations(torch.arange(N))))
    for rank in (0, 1):
        assert_same_evaluation(json.loads((tmp_path / f"rank{rank}.json").read_text()), alone)


def assert_same_evaluation(got, expected, key=""):
    """Counts (accuracies) exactly; feature norms to float rounding: a convolution's last bits depend on
    the batch it runs in, and the two processes' batches hold other images than one process's."""
    if isinstance(expected, dict):
        assert got.keys() == expected.keys(), key
        for name in expected:
            assert_same_evaluation(got[name], expected[name], name if "feature_norm" in name else key)
    elif isinstance(expected, list):
        assert len(got) == len(expected), key
        for a, b in zip(got, expected, strict=True):
            assert_same_evaluation(a, b, key)
    elif "feature_norm" in key and isinstance(expected, float):
        assert got == pytest.approx(expected, rel=1e-5), key
    else:
        assert got == expected, key


FAST = ["--preset", "digits-lt", "--arch", "digits-experts", "--loss", "sade", "--epochs", "3", "--device", "cpu",
        "--quiet", "--warmup-epochs", "1"]  # fmt: skip


def test_resume_of_an_ensemble_run_equals_the_uninterrupted_run(tmp_path):
    assert main(["train", *FAST, "--out", str(tmp_path / "a")]) == 0
    flags = dict(arch="digits-experts", loss="sade", epochs=3, device="cpu", quiet=True, warmup_epochs=1)
    cfg = resolve_config("digits-lt", overrides={**flags, "out": str(tmp_path / "c")})

    def interrupt_at_epoch_2(iterable, **kwargs):
        for item in iterable:
            if kwargs.get("desc") == "epochs" and item == 2:
                raise KeyboardInterrupt
            yield item

    with pytest.raises(KeyboardInterrupt):
        train(cfg, progress=interrupt_at_epoch_2)
    assert load_checkpoint(tmp_path / "c")["epoch"] == 2
    assert main(["train", "--resume", str(tmp_path / "c"), "--device", "cpu", "--quiet"]) == 0
    whole, resumed = load_checkpoint(tmp_path / "a")["model"], load_checkpoint(tmp_path / "c")["model"]
    assert any(key.startswith("experts.2.") for key in whole)  # every expert's weights are compared
    for key in whole:
        assert torch.equal(whole[key], resumed[key]), key
    a, c = read_jsonl(tmp_path / "a" / "metrics.jsonl"), read_jsonl(tmp_path / "c" / "metrics.jsonl")
    assert [r["train_loss"] for r in a] == [r["train_loss"] for r in c]
    assert [r["eval"]["top1"] for r in a] == [r["eval"]["top1"] for r in c]


def test_eval_runs_sades_test_agnostic_protocol_on_a_multi_expert_run(tmp_path, capsys):
    assert main(["train", *FAST, "--epochs", "1", "--out", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run"), "--test-time-aggregation", "--json", "--quiet"]) == 0
    table = json.loads(capsys.readouterr().out)["test_time_aggregation"]
    assert list(table) == [f"forward-{r}" for r in (50, 25, 10, 5, 2)] + ["uniform"] + [
        f"backward-{r}" for r in (2, 5, 10, 25, 50)
    ]
    assert all(len(row["weights"]) == 3 and row["images"] > 0 for row in table.values())
    assert main(["eval", str(tmp_path / "run"), "--test-time-aggregation", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "test-time aggregation (subsampled test sets)" in out and "weight 3" in out
    # Kept in the run folder, listed in its marker, copied by fbl record and shown by fbl report.
    saved = tmp_path / "run" / "test_time_aggregation" / "test.json"
    assert json.loads(saved.read_text()) == table and f"saved: {saved}" in out
    assert "test_time_aggregation/test.json" in json.loads((tmp_path / "run" / ".fbl-run").read_text())["files"]
    assert main(["record", str(tmp_path / "run"), str(tmp_path / "kept")]) == 0
    assert json.loads((tmp_path / "kept" / "test_time_aggregation" / "test.json").read_text()) == table
    assert main(["report", str(tmp_path / "kept"), "--out", str(tmp_path / "report")]) == 0
    report = (tmp_path / "report" / "report.md").read_text()
    section = report.split("## Test-time aggregation (SADE's test-agnostic protocol)")[1].split("##")[0]
    assert f"| aggregated | 1 | {table['forward-50']['aggregated']:.2f} ± – |" in section
    assert f"| averaged | 1 | {table['forward-50']['averaged']:.2f} ± – |" in section
