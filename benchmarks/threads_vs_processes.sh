#!/usr/bin/env bash
# Total training throughput on a small CPU: one run with every core's thread against one single-thread run
# per core side by side (what a queue of many independent runs could do instead). fbl train's own logged
# rate (images/s), CIFAR-10-LT, ResNet-32, compiled, 5 epochs of 60 batches; epoch 1 holds the compilation.
# The all-threads run goes first and last. Nothing else may run on the machine meanwhile.
#
#   benchmarks/threads_vs_processes.sh DATA_DIR [OUT_DIR]    # DATA_DIR holds cifar-10-batches-py
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:?usage: benchmarks/threads_vs_processes.sh DATA_DIR [OUT_DIR]}
OUT=${2:-$(mktemp -d)}
mkdir -p "$OUT"
PYTHON=${PYTHON:-.venv/bin/python}
CORES=$(nproc)
train() {  # run-name threads
  OMP_NUM_THREADS=$2 "$PYTHON" -m fbl train --preset cifar10-lt --data-dir "$DATA" --device cpu --epochs 5 \
    --limit-batches 60 --compile --eval-every 100 --seed 1 --out "$OUT/$1" --overwrite --quiet > "$OUT/$1.log" 2>&1
}
rates() {  # label run-name...
  "$PYTHON" - "$@" "$OUT" <<'PY'
import json, statistics, sys
label, runs, out = sys.argv[1], sys.argv[2:-1], sys.argv[-1]
per_run = [[json.loads(line)["train_images_per_s"] for line in open(f"{out}/{run}/metrics.jsonl")][1:] for run in runs]
total = [sum(epoch) for epoch in zip(*per_run)]
print(f"{label:36s} epochs 2-5: {' '.join(f'{r:5.0f}' for r in total)}   median {statistics.median(total):5.0f} images/s")
PY
}
train all-threads-a "$CORES"; rates "1 run x $CORES threads" all-threads-a
names=()
for core in $(seq 1 "$CORES"); do train "one-thread-$core" 1 & names+=("one-thread-$core"); done
wait
rates "$CORES runs x 1 thread, summed" "${names[@]}"
train all-threads-b "$CORES"; rates "1 run x $CORES threads (again)" all-threads-b
