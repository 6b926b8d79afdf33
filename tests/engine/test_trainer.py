"""End-to-end runs on CPU (seconds): every artefact, resume == uninterrupted, eval == summary."""

import json
import math

import pytest
import torch
import yaml

from fbl.cli import main
from fbl.config import flatten
from fbl.engine.checkpoint import load_checkpoint

FAST = ["--epochs", "3", "--device", "cpu", "--quiet", "--warmup-epochs", "1"]


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def fbl_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "fbl"
    assert main(["train", "--preset", "digits-lt", "--loss", "FeaBal", "--out", str(out), *FAST]) == 0
    return out


def test_run_folder_holds_every_artefact(fbl_run):
    cfg = flatten(yaml.safe_load((fbl_run / "config.yaml").read_text()))
    assert cfg["loss"] == "fbl" and cfg["dataset"] == "digits-lt" and cfg["epochs"] == 3
    records = read_jsonl(fbl_run / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [0, 1, 2]
    for r in records:
        assert {"epoch", "lr", "alpha", "train_loss", "train_acc", "eval", "val", "seconds"} <= set(r)
        assert {"train_seconds", "eval_seconds", "train_images_per_s"} <= set(r) and r["train_images_per_s"] > 0
    # the default parabolic alpha scales the paper's curve: (e / (0.95 E))^2 with E = 3
    assert [r["alpha"] for r in records] == pytest.approx([0.0, (1 / 2.85) ** 2, (2 / 2.85) ** 2])
    summary = json.loads((fbl_run / "summary.json").read_text())
    for key in ("last", "best"):
        assert {"top1", "top5", "many", "medium", "few", "per_class_acc", "per_class_feature_norm"} <= set(summary[key])
    assert summary["best"]["epoch"] in (0, 1, 2) and "validation split" in summary["best_selected_on"]
    selected = summary["selected"]
    assert selected["on"] == "val" and selected["epoch"] == summary["best"]["epoch"]
    by_epoch = {r["epoch"]: r for r in records}
    # The selected epoch is the best on validation, and its test metrics are that epoch's.
    assert selected["val"]["top1"] == max(r["val"]["top1"] for r in records)
    assert selected["test"]["top1"] == by_epoch[selected["epoch"]]["eval"]["top1"]
    assert len(summary["train_feature_norms"]) == 10 and summary["last"]["calibration"]["bin_samples"]
    splits = json.loads((fbl_run / "splits.json").read_text())
    assert set(splits) == {"train", "val"} and not set(splits["train"]) & set(splits["val"])
    assert summary["last"]["top1"] == pytest.approx(records[-1]["eval"]["top1"])
    assert len(summary["class_counts"]) == 10
    assert (fbl_run / "checkpoints" / "last.pt").is_file() and (fbl_run / "checkpoints" / "best.pt").is_file()
    assert list((fbl_run / "tb").glob("events.out.tfevents.*"))


def test_eval_reproduces_the_last_epoch(fbl_run, capsys):
    from fbl.engine.evaluate_checkpoint import evaluate_checkpoint

    summary = json.loads((fbl_run / "summary.json").read_text())
    result = evaluate_checkpoint(str(fbl_run), device="cpu")
    assert result["top1"] == pytest.approx(summary["last"]["top1"])
    assert result["per_class_acc"] == pytest.approx(summary["last"]["per_class_acc"])
    assert main(["eval", str(fbl_run / "checkpoints" / "last.pt"), "--device", "cpu", "--quiet"]) == 0
    assert "top1" in capsys.readouterr().out
    assert main(["eval", str(fbl_run), "--device", "cpu", "--quiet", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["per_class_acc"] == pytest.approx(summary["last"]["per_class_acc"])


def test_resume_after_interrupt_equals_uninterrupted_run(tmp_path, fbl_run):
    from fbl.config import resolve_config
    from fbl.engine.trainer import train

    cfg = resolve_config(
        "digits-lt",
        overrides={
            "loss": "fbl",
            "epochs": 3,
            "device": "cpu",
            "quiet": True,
            "warmup_epochs": 1,
            "out": str(tmp_path / "b"),
        },
    )

    def interrupt_at_epoch_2(iterable, **kwargs):
        for item in iterable:
            if kwargs.get("desc") == "epochs" and item == 2:
                raise KeyboardInterrupt
            yield item

    with pytest.raises(KeyboardInterrupt):
        train(cfg, progress=interrupt_at_epoch_2)
    assert load_checkpoint(tmp_path / "b")["epoch"] == 2
    assert main(["train", "--resume", str(tmp_path / "b"), "--device", "cpu", "--quiet"]) == 0

    uninterrupted = load_checkpoint(fbl_run)["model"]
    resumed = load_checkpoint(tmp_path / "b")["model"]
    for key in uninterrupted:
        assert torch.equal(uninterrupted[key], resumed[key]), key
    a, b = read_jsonl(fbl_run / "metrics.jsonl"), read_jsonl(tmp_path / "b" / "metrics.jsonl")
    assert [r["train_loss"] for r in a] == [r["train_loss"] for r in b]
    assert [r["eval"]["top1"] for r in a] == [r["eval"]["top1"] for r in b]

    # Provenance: the uninterrupted run is one part; the resumed one two, each with its epochs and times.
    def parts(run):
        return json.loads((run / "summary.json").read_text())["provenance"]["parts"]

    assert [part["epochs"] for part in parts(fbl_run)] == [[0, 3]]
    first, second = parts(tmp_path / "b")
    assert (first["epochs"], second["epochs"]) == ([0, 2], [2, 3])
    assert first["started_at"] <= first["ended_at"] <= second["started_at"] <= second["ended_at"]
    for part in (first, second):
        assert part["threads"] == torch.get_num_threads() and part["device"] == "cpu" and part["seconds"] >= 0
        assert {"git_commit", "git_dirty", "precision", "compile", "world_size", "device_name"} <= set(part)


def test_the_recorded_commit_is_the_one_checked_out_when_the_run_started(tmp_path, monkeypatch):
    # A checkout moves on while a long run trains (a commit lands mid-run): the run keeps the commit it imported.
    import fbl.engine.trainer as trainer

    commits = iter(["a" * 40, *["b" * 40] * 20])
    monkeypatch.setattr(trainer, "git_state", lambda: {"git_commit": next(commits), "git_dirty": False})
    out = tmp_path / "run"
    assert main(["train", "--preset", "digits-lt", "--out", str(out), "--limit-batches", "2", "--epochs", "2",
                 "--device", "cpu", "--quiet"]) == 0  # fmt: skip
    record = json.loads((out / "summary.json").read_text())["provenance"]
    assert record["git_commit"] == "a" * 40 and [p["git_commit"] for p in record["parts"]] == ["a" * 40]
    assert load_checkpoint(out)["provenance_parts"][0]["git_commit"] == "a" * 40


def test_a_checkpoint_from_before_parts_were_recorded_leaves_its_epochs_unrecorded(tmp_path):
    from fbl.engine.checkpoint import save_checkpoint

    out = tmp_path / "older"
    base = ["train", "--preset", "digits-lt", "--out", str(out), "--limit-batches", "2", "--device", "cpu", "--quiet"]
    assert main([*base, "--epochs", "2"]) == 0
    checkpoint = load_checkpoint(out)
    del checkpoint["provenance_parts"]  # as fbl wrote checkpoints before it recorded parts
    save_checkpoint(checkpoint, out / "checkpoints" / "last.pt")
    assert main(["train", "--resume", str(out), "--epochs", "3", "--device", "cpu", "--quiet"]) == 0
    first, second = json.loads((out / "summary.json").read_text())["provenance"]["parts"]
    assert first == {"epochs": [0, 2], "recorded": False}
    assert second["epochs"] == [2, 3] and second["started_at"]


def test_default_train_runs_on_digits_lt(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--epochs", "1", "--device", "cpu", "--quiet", "--limit-batches", "2"]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.startswith("digits-lt-fbl-")


def test_seed_cifar_command_trains_on_real_cifar10(cifar10_root, tmp_path):
    # The seed README's CIFAR-10 command, minus --gpu 3 (no GPU here), capped for a smoke run.
    argv = [
        "--arch",
        "resnet32",
        "/",
        "--dataset",
        "cifar10",
        "--data_path",
        str(cifar10_root),
        "/",
        "--loss_type",
        "FeaBal",
        "--batch_size",
        "64",
        "--learning_rate",
        "0.1",
        "--lambda_",
        "60",
        "--epochs",
        "1",
        "--limit-batches",
        "2",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        str(tmp_path / "c"),
    ]
    assert main(["train", *argv]) == 0
    summary = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert summary["class_counts"] == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


def test_divergence_is_one_line_not_a_traceback(tmp_path, capsys):
    argv = [
        "train",
        "--epochs",
        "1",
        "--lr",
        "1e30",
        "--device",
        "cpu",
        "--quiet",
        "--warmup-epochs",
        "0",
        "--out",
        str(tmp_path / "d"),
    ]
    assert main(argv) == 3
    err = capsys.readouterr().err
    assert "diverged in epoch 1" in err and "--lr" in err and "Traceback" not in err
    assert not (tmp_path / "d").exists()  # stopped before its first checkpoint: bad input writes nothing


def test_out_pointing_at_a_finished_run_is_refused_unless_overwrite(fbl_run, capsys):
    before = (fbl_run / "summary.json").read_text()
    argv = ["train", "--preset", "digits-lt", "--out", str(fbl_run), *FAST]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"--resume {fbl_run}" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert (fbl_run / "summary.json").read_text() == before


def test_resuming_a_finished_run_summarises_its_final_weights_afresh(tmp_path):
    # A finished run resumed (e.g. after a fix to evaluation) re-evaluates its last checkpoint: the
    # summary does not copy the logged numbers, which are tampered with here to prove it.
    out = tmp_path / "run"
    assert main(["train", "--preset", "digits-lt", "--out", str(out), *FAST]) == 0
    before = json.loads((out / "summary.json").read_text())
    records = read_jsonl(out / "metrics.jsonl")
    records[-1]["eval"]["top1"] = records[-1]["val"]["top1"] = -1.0
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    after = json.loads((out / "summary.json").read_text())
    assert after["last"]["top1"] == before["last"]["top1"] and after["last_val"] == before["last_val"]


def test_overwrite_replaces_the_run_without_mixing_events(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--preset", "digits-lt", "--out", str(out), *FAST]) == 0
    assert main(["train", "--preset", "digits-lt", "--out", str(out), "--overwrite", *FAST]) == 0
    assert len(list((out / "tb").glob("events.out.tfevents.*"))) == 1
    assert [r["epoch"] for r in read_jsonl(out / "metrics.jsonl")] == [0, 1, 2]


def test_a_torn_last_metrics_line_is_dropped_on_resume(tmp_path, caplog):
    out = tmp_path / "run"
    assert main(["train", "--preset", "digits-lt", "--out", str(out), *FAST]) == 0
    with (out / "metrics.jsonl").open("a") as handle:
        handle.write('{"epoch": 3, "lr": 0.0')  # a process killed mid-write
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    assert "torn last line" in caplog.text
    assert [r["epoch"] for r in read_jsonl(out / "metrics.jsonl")] == [0, 1, 2]


def test_ctrl_c_before_the_first_checkpoint_says_there_is_nothing_to_resume(tmp_path, monkeypatch, capsys):
    import fbl.engine.trainer as trainer

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "train_one_epoch", interrupted)
    assert main(["train", "--preset", "digits-lt", "--out", str(tmp_path / "r"), *FAST]) == 130
    assert "nothing to resume" in capsys.readouterr().err


def test_accumulating_two_half_batches_is_one_step_on_the_whole_batch(fbl_run, tmp_path):
    # cRT freezes the backbone and its BatchNorm, so micro-batches compute what the whole batch does.
    args = ["train", "--stage2-from", str(fbl_run), "--device", "cpu", "--quiet", "--epochs", "1"]
    args += ["--limit-batches", "1", "--batch_size", "64", "--precision", "fp32", "--no-compile"]
    assert main([*args, "--out", str(tmp_path / "whole")]) == 0
    assert main([*args, "--accum-steps", "2", "--out", str(tmp_path / "halves")]) == 0
    whole, halves = load_checkpoint(tmp_path / "whole")["model"], load_checkpoint(tmp_path / "halves")["model"]
    assert load_checkpoint(tmp_path / "halves")["optimizer"]["state"]  # a step was taken
    for key in whole:
        torch.testing.assert_close(halves[key], whole[key], rtol=1e-5, atol=1e-6)


def test_nesterov_reaches_the_optimizer_and_changes_its_steps(tmp_path):
    args = ["train", "--preset", "digits-lt", "--device", "cpu", "--quiet", "--epochs", "1", "--limit-batches", "1"]
    args += ["--precision", "fp32", "--no-compile", "--warmup-epochs", "0"]
    assert main([*args, "--out", str(tmp_path / "plain")]) == 0
    assert main([*args, "--nesterov", "--out", str(tmp_path / "nesterov")]) == 0
    plain, nesterov = load_checkpoint(tmp_path / "plain"), load_checkpoint(tmp_path / "nesterov")
    assert [g["nesterov"] for g in nesterov["optimizer"]["param_groups"]] == [True]
    assert [g["nesterov"] for g in plain["optimizer"]["param_groups"]] == [False]
    # One step from the same start: Nesterov moves by lr (1 + momentum) g, plain momentum by lr g.
    start = [k for k in plain["model"] if k.endswith("weight")][0]
    assert not torch.equal(plain["model"][start], nesterov["model"][start])


def test_cosine_schedule_reaches_the_optimizer(tmp_path):
    args = ["train", "--preset", "digits-lt", "--device", "cpu", "--quiet", "--epochs", "4", "--limit-batches", "1"]
    args += ["--lr", "0.2", "--warmup-epochs", "0", "--lr-schedule", "cosine", "--out", str(tmp_path / "run")]
    assert main(args) == 0
    logged = [json.loads(line)["lr"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert logged == pytest.approx([0.2 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)])


def test_sigterm_stops_after_a_step_and_the_resumed_run_equals_the_uninterrupted_one(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    args = ["train", "--preset", "digits-lt", "--epochs", "6", "--device", "cpu", "--quiet", "--warmup-epochs", "1"]
    # Every run in a child process with one thread: the same float reductions in all three.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def child(*argv):
        done = subprocess.run([sys.executable, "-m", "fbl", *argv], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]

    child(*args, "--out", str(tmp_path / "whole"))
    out = tmp_path / "stopped"
    process = subprocess.Popen(
        [sys.executable, "-m", "fbl", *args, "--out", str(out)], env=env, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if (out / "metrics.jsonl").exists() and len((out / "metrics.jsonl").read_text().splitlines()) >= 2:
            process.send_signal(signal.SIGTERM)
            break
        time.sleep(0.02)
    err = process.communicate(timeout=120)[1]
    if process.returncode == 0:
        pytest.skip("the run finished before SIGTERM arrived")
    assert process.returncode == 130 and f"--resume {out}" in err and "Traceback" not in err
    assert "checkpoint written" in err and "interrupted at once" not in err  # one SIGTERM: the graceful stop
    child("train", "--resume", str(out), "--quiet")
    whole, resumed = load_checkpoint(tmp_path / "whole")["model"], load_checkpoint(out)["model"]
    for key in whole:
        assert torch.equal(whole[key], resumed[key]), key
    assert [r["epoch"] for r in read_jsonl(out / "metrics.jsonl")] == list(range(6))


def test_a_diverged_run_names_the_step_and_keeps_the_last_good_checkpoint(tmp_path, capsys, monkeypatch):
    import fbl.engine.trainer as trainer

    real = trainer.train_one_epoch

    def nan_in_epoch_1(model, criterion, *args, epoch, **kwargs):
        if epoch == 1:  # every loss of epoch 1 is NaN
            criterion = lambda logits, target, features=None: logits.sum() * float("nan")  # noqa: E731
        return real(model, criterion, *args, epoch=epoch, **kwargs)

    monkeypatch.setattr(trainer, "train_one_epoch", nan_in_epoch_1)
    out = tmp_path / "d"
    argv = ["train", "--preset", "digits-lt", "--device", "cpu", "--quiet", "--epochs", "3", "--out", str(out)]
    assert main(argv) == 3
    err = capsys.readouterr().err
    assert "diverged in epoch 2 at step 1" in err and "--nan-policy skip" in err and "Traceback" not in err
    kept = load_checkpoint(out)
    assert kept["epoch"] == 1 and all(torch.isfinite(t).all() for t in kept["model"].values() if t.is_floating_point())


def test_nan_policy_skip_skips_and_counts_the_steps(tmp_path):
    out = tmp_path / "s"
    argv = ["train", "--preset", "digits-lt", "--device", "cpu", "--quiet", "--warmup-epochs", "0", "--epochs", "1"]
    assert main([*argv, "--lr", "1e30", "--nan-policy", "skip", "--out", str(out)]) == 0
    record = read_jsonl(out / "metrics.jsonl")[0]
    assert record["skipped_steps"] > 0 and math.isfinite(record["train_loss"])


def test_eval_on_another_split_and_a_missing_split(fbl_run, capsys):
    summary = json.loads((fbl_run / "summary.json").read_text())
    assert main(["eval", str(fbl_run), "--device", "cpu", "--quiet", "--json", "--split", "val"]) == 0
    assert json.loads(capsys.readouterr().out)["top1"] == pytest.approx(summary["last_val"]["top1"])
    assert main(["eval", str(fbl_run), "--device", "cpu", "--quiet", "--split", "test_lossless"]) == 2
    err = capsys.readouterr().err
    assert "no 'test_lossless' split" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("mixup", [False, True])
def test_a_stop_inside_an_epoch_checkpoints_the_step_and_resumes_exactly(tmp_path, monkeypatch, capsys, mixup):
    import fbl.engine.trainer as trainer

    args = ["train", "--preset", "digits-lt", "--epochs", "3", "--device", "cpu", "--quiet", "--mixup", str(mixup)]
    assert main([*args, "--out", str(tmp_path / "whole")]) == 0
    calls = {"n": 0}

    def asked_at_the_seventh_step(self):
        calls["n"] += 1
        return calls["n"] >= 7  # asked once per step that is not the last of its epoch (5 steps per epoch)

    monkeypatch.setattr(trainer.GracefulStop, "requested", asked_at_the_seventh_step)
    out = tmp_path / "stopped"
    assert main([*args, "--out", str(out)]) == 130
    assert "stopped after step 3 of epoch 2, checkpoint written" in capsys.readouterr().err
    saved = load_checkpoint(out)
    assert saved["epoch"] == 1 and saved["partial"]["step"] == 3  # 4 boundaries in epoch 0, then 3
    monkeypatch.undo()
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    whole, resumed = load_checkpoint(tmp_path / "whole")["model"], load_checkpoint(out)["model"]
    for key in whole:
        assert torch.equal(whole[key], resumed[key]), key
    expected = read_jsonl(tmp_path / "whole" / "metrics.jsonl")
    got = read_jsonl(out / "metrics.jsonl")
    assert [r["train_loss"] for r in got] == [r["train_loss"] for r in expected]


def test_a_run_written_before_config_sections_is_evaluated_and_resumed(tmp_path, fbl_run, capsys):
    # A run folder as fbl wrote it before checkpoint format 2: flat config.yaml, flat config inside a
    # format-1 checkpoint, no .fbl-run list. It still evaluates to its summary and resumes.
    import shutil

    from fbl.config import flatten
    from fbl.engine.checkpoint import save_checkpoint

    old = tmp_path / "old"
    shutil.copytree(fbl_run, old)
    (old / ".fbl-run").unlink()
    flat = flatten(yaml.safe_load((old / "config.yaml").read_text()))
    (old / "config.yaml").write_text(yaml.safe_dump(flat, sort_keys=False))
    for name in ("last", "best"):
        state = load_checkpoint(old / "checkpoints" / f"{name}.pt")
        save_checkpoint(
            {**state, "format_version": 1, "config": flatten(state["config"])}, old / "checkpoints" / f"{name}.pt"
        )
    assert load_checkpoint(old)["format_version"] == 1
    summary = json.loads((old / "summary.json").read_text())
    capsys.readouterr()
    assert main(["eval", str(old), "--device", "cpu", "--quiet", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["per_class_acc"] == pytest.approx(summary["last"]["per_class_acc"])
    assert main(["train", "--resume", str(old), "--epochs", "4", "--device", "cpu", "--quiet"]) == 0
    resumed = load_checkpoint(old)
    assert resumed["epoch"] == 4 and resumed["format_version"] == 2 and resumed["config"]["optim"]["epochs"] == 4
    assert yaml.safe_load((old / "config.yaml").read_text()) == flat  # the record of how it started stays


def test_a_long_run_is_evaluated_every_tenth_epoch_and_every_epoch_of_its_last_tenth():
    from fbl.engine.trainer import evaluates_at

    long_200 = [e for e in range(200) if evaluates_at(e, 200, None, long_run=True)]
    assert long_200 == [9, 19, 29, 39, 49, 59, 69, 79, 89, 99, 109, 119, 129, 139, 149, 159, 169, *range(179, 200)]
    assert [e for e in range(30) if evaluates_at(e, 30, None, long_run=True)] == [9, *range(19, 30)]  # last 10
    assert all(evaluates_at(e, 60, None, long_run=False) for e in range(60))  # a short run: every epoch
    assert [e for e in range(7) if evaluates_at(e, 7, 3, long_run=True)] == [2, 5, 6]  # --eval-every wins
