#!/usr/bin/env bash
# The CIFAR-10-LT protocol runs of README's "Reproducing the paper", one after another, each kept with its
# weights. Run it again after any stop: a finished run is skipped, a stopped one continues with --resume, and
# the queue stops at the first run that fails or is interrupted (Ctrl-C, SIGTERM), so nothing trains twice.
#
#   analysis/reproduce_cifar10_lt.sh DATA_DIR RUNS_DIR KEPT_DIR [NAME ...]
#
# DATA_DIR holds cifar-10-batches-py; RUNS_DIR gets the run folders (and a .log per run); KEPT_DIR gets each
# finished run through `fbl record` (results and weights, no optimizer state: what results/ holds). NAMEs pick
# runs from the list below (default: all, in this order). Two trainings that each use every core slow both
# many times over; on a small CPU, one single-thread queue per core with disjoint NAMEs finishes sooner
# (OMP_NUM_THREADS=1; 12-30% more images/s in total on 2 cores: benchmarks/threads_vs_processes.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:?usage: analysis/reproduce_cifar10_lt.sh DATA_DIR RUNS_DIR KEPT_DIR [NAME ...]}
RUNS=${2:?usage: analysis/reproduce_cifar10_lt.sh DATA_DIR RUNS_DIR KEPT_DIR [NAME ...]}
KEPT=${3:?usage: analysis/reproduce_cifar10_lt.sh DATA_DIR RUNS_DIR KEPT_DIR [NAME ...]}
shift 3
FBL=${FBL:-.venv/bin/fbl}
DEVICE=${DEVICE:-auto}   # e.g. DEVICE=cpu, DEVICE=cuda:0

# name            preset                    seed   then   (single models first: issue #21; then the ensembles: #22,
# then more seeds of the two best of them on seed 123's lossless estimate)
# "from:NAME": a stage 2 of run NAME (--stage2-from); "tta": SADE's test-agnostic protocol on the kept run
# (fbl eval --test-time-aggregation, on the lossless estimate and the test set), kept beside it.
PROTOCOL="
fbl-lambda60-seed123    cifar10-lt               123
ce-seed123              cifar10-lt-ce            123
ldam-drw-seed123        cifar10-lt-ldam-drw      123
fbl-lambda60-seed124    cifar10-lt               124
ce-seed124              cifar10-lt-ce            124
tuned-seed123           cifar10-lt-tuned         123
fbl-lambda60-seed125    cifar10-lt               125
ce-seed125              cifar10-lt-ce            125
sade-seed123            cifar10-lt-sade          123    tta
balpoe-seed123          cifar10-lt-balpoe        123
fbl-experts-seed123     cifar10-lt-fbl-experts   123    tta
ride-seed123            cifar10-lt-ride          123
ride-router-seed123     ride-router              123    from:ride-seed123
balpoe-seed124          cifar10-lt-balpoe        124
balpoe-seed125          cifar10-lt-balpoe        125
fbl-experts-seed124     cifar10-lt-fbl-experts   124
fbl-experts-seed125     cifar10-lt-fbl-experts   125
"

train_and_keep() {  # name preset seed [then]
  local run="$RUNS/$1" start=(--preset "$2" --data-dir "$DATA")
  if [[ "${4:-}" == from:* ]]; then start=(--stage2-from "$KEPT/${4#from:}" --preset "$2"); fi
  if [ ! -f "$run/summary.json" ]; then
    if [ -f "$run/checkpoints/last.pt" ]; then
      "$FBL" train --resume "$run" --quiet >> "$run.log" 2>&1
    else
      mkdir -p "$RUNS"
      "$FBL" train "${start[@]}" --device "$DEVICE" --seed "$3" --out "$run" --quiet >> "$run.log" 2>&1
    fi
  fi
  [ -d "$KEPT/$1" ] || "$FBL" record "$run" "$KEPT/$1"
  # runs trained before training kept the estimate's per-image predictions (paired differences in fbl report)
  [ -f "$KEPT/$1/predictions/lossless_estimate.npz" ] ||
    "$FBL" eval "$KEPT/$1" --split lossless_estimate --keep-predictions --quiet >> "$run.log" 2>&1
  if [ "${4:-}" = tta ]; then
    for split in lossless_estimate test; do
      [ -f "$KEPT/$1/test_time_aggregation/$split.json" ] ||
        "$FBL" eval "$KEPT/$1" --split "$split" --test-time-aggregation --quiet >> "$run.log" 2>&1
    done
  fi
  echo "done: $1"
}

while read -r name preset seed then; do
  [ -n "$name" ] || continue
  if [ $# -gt 0 ] && [[ " $* " != *" $name "* ]]; then continue; fi
  train_and_keep "$name" "$preset" "$seed" "$then"
done <<< "$PROTOCOL"
