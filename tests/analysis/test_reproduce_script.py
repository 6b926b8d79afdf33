"""analysis/reproduce_cifar10_lt.sh: trains what is missing, resumes what stopped, keeps what finished, once.

`fbl` is replaced by a stub (the script's FBL variable) that logs its arguments and writes what a run
or `fbl record` leaves behind, so the queue's decisions are tested without training.
"""

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "analysis" / "reproduce_cifar10_lt.sh"

STUB = """#!/usr/bin/env bash
echo "$*" >> "$CALLS"
if [ "$1" = train ]; then
  [ -n "${FAIL:-}" ] && exit 1
  out=""; prev=""
  for arg in "$@"; do
    if [ "$prev" = --out ] || [ "$prev" = --resume ]; then out=$arg; fi
    prev=$arg
  done
  mkdir -p "$out/checkpoints" && touch "$out/checkpoints/last.pt" "$out/summary.json"
elif [ "$1" = record ]; then
  mkdir -p "$3/predictions" && touch "$3/predictions/lossless_estimate.npz"  # training keeps them
elif [ "$1" = eval ]; then
  split=""; prev=""
  for arg in "$@"; do
    if [ "$prev" = --split ]; then split=$arg; fi
    prev=$arg
  done
  if [[ " $* " == *" --keep-predictions "* ]]; then
    mkdir -p "$2/predictions" && touch "$2/predictions/$split.npz"
  else
    mkdir -p "$2/test_time_aggregation" && touch "$2/test_time_aggregation/$split.json"
  fi
fi
"""


def run_queue(tmp_path, *names, fail=False):
    stub = tmp_path / "fbl"
    stub.write_text(STUB)
    stub.chmod(0o755)
    env = {**os.environ, "FBL": str(stub), "CALLS": str(tmp_path / "calls"), "DEVICE": "cpu"}
    if fail:
        env["FAIL"] = "1"
    args = ["bash", str(SCRIPT), str(tmp_path / "data"), str(tmp_path / "runs"), str(tmp_path / "kept"), *names]
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    calls = (tmp_path / "calls").read_text().splitlines() if (tmp_path / "calls").exists() else []
    (tmp_path / "calls").unlink(missing_ok=True)
    return done, calls


def test_a_named_run_trains_with_its_preset_and_seed_then_is_kept(tmp_path):
    done, calls = run_queue(tmp_path, "ce-seed124")
    assert done.returncode == 0, done.stderr
    runs, kept = tmp_path / "runs", tmp_path / "kept"
    assert calls == [
        f"train --preset cifar10-lt-ce --data-dir {tmp_path / 'data'} --device cpu --seed 124 "
        f"--out {runs / 'ce-seed124'} --quiet",
        f"record {runs / 'ce-seed124'} {kept / 'ce-seed124'}",
    ]
    assert done.stdout.strip() == "done: ce-seed124"


def test_a_finished_and_kept_run_is_left_alone_and_a_stopped_one_resumes(tmp_path):
    run_queue(tmp_path, "ce-seed124")
    stopped = tmp_path / "runs" / "sade-seed123" / "checkpoints"
    stopped.mkdir(parents=True)
    (stopped / "last.pt").touch()
    done, calls = run_queue(tmp_path, "ce-seed124", "sade-seed123")
    assert done.returncode == 0, done.stderr
    kept = tmp_path / "kept" / "sade-seed123"
    assert calls == [
        f"train --resume {tmp_path / 'runs' / 'sade-seed123'} --quiet",
        f"record {tmp_path / 'runs' / 'sade-seed123'} {kept}",
        f"eval {kept} --split lossless_estimate --test-time-aggregation --quiet",
        f"eval {kept} --split test --test-time-aggregation --quiet",
    ]
    done, calls = run_queue(tmp_path, "sade-seed123")
    assert done.returncode == 0 and calls == []  # kept with its test-agnostic tables: nothing to do


def test_rides_router_is_a_stage_2_of_the_kept_ride_run(tmp_path):
    done, calls = run_queue(tmp_path, "ride-seed123", "ride-router-seed123")
    assert done.returncode == 0, done.stderr
    runs, kept = tmp_path / "runs", tmp_path / "kept"
    assert calls[2:] == [
        f"train --stage2-from {kept / 'ride-seed123'} --preset ride-router --device cpu --seed 123 "
        f"--out {runs / 'ride-router-seed123'} --quiet",
        f"record {runs / 'ride-router-seed123'} {kept / 'ride-router-seed123'}",
    ]


def test_a_failed_run_stops_the_queue_before_keeping_or_training_more(tmp_path):
    done, calls = run_queue(tmp_path, "fbl-lambda60-seed123", "ce-seed123", fail=True)
    assert done.returncode != 0
    assert len(calls) == 1 and calls[0].startswith("train --preset cifar10-lt --data-dir")
    assert not (tmp_path / "kept").exists()


def test_without_names_every_protocol_run_is_queued_single_models_first(tmp_path):
    done, calls = run_queue(tmp_path)
    assert done.returncode == 0, done.stderr
    trained = [call.split("--out ")[1].split()[0].rsplit("/", 1)[1] for call in calls if call.startswith("train")]
    assert trained[:3] == ["fbl-lambda60-seed123", "ce-seed123", "ldam-drw-seed123"]
    assert {"sade-seed123", "balpoe-seed123", "fbl-experts-seed123", "ride-seed123"} <= set(trained)
    assert trained.index("ride-router-seed123") > trained.index("ride-seed123")  # after the run it starts from
    # more seeds of the two best ensembles once seed 123 has ranked them
    assert trained[-4:] == ["balpoe-seed124", "balpoe-seed125", "fbl-experts-seed124", "fbl-experts-seed125"]
    assert len(trained) == len(set(trained)) == 17


def test_a_kept_run_without_the_estimates_predictions_gets_them_once(tmp_path):
    kept = tmp_path / "kept" / "ce-seed123"
    kept.mkdir(parents=True)  # kept by an fbl that did not keep the estimate's predictions
    (tmp_path / "runs" / "ce-seed123").mkdir(parents=True)
    (tmp_path / "runs" / "ce-seed123" / "summary.json").touch()
    done, calls = run_queue(tmp_path, "ce-seed123")
    assert done.returncode == 0, done.stderr
    assert calls == [f"eval {kept} --split lossless_estimate --keep-predictions --quiet"]
    done, calls = run_queue(tmp_path, "ce-seed123")
    assert done.returncode == 0 and calls == []
