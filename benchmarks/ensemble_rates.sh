#!/usr/bin/env bash
# fbl train's own logged training rate (images/s) for a single ResNet-32 and each expert-ensemble preset on
# CIFAR-10-LT: 2 epochs of 40 batches, compiled, the preset's precision and batch size; the rate of epoch 2
# (epoch 1 holds the compilation). Nothing else may run on the machine meanwhile.
#
#   benchmarks/ensemble_rates.sh DATA_DIR [OUT_DIR]    # DATA_DIR holds cifar-10-batches-py
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:?usage: benchmarks/ensemble_rates.sh DATA_DIR [OUT_DIR]}
OUT=${2:-$(mktemp -d)}
PYTHON=${PYTHON:-.venv/bin/python}
for preset in cifar10-lt cifar10-lt-ride cifar10-lt-sade cifar10-lt-balpoe cifar10-lt-fbl-experts cifar10-lt; do
  run="$OUT/$preset-$RANDOM"
  "$PYTHON" -m fbl train --preset "$preset" --data-dir "$DATA" --device cpu --epochs 2 --limit-batches 40 \
    --compile --eval-every 100 --out "$run" --quiet > "$run.log" 2>&1
  "$PYTHON" - "$preset" "$run/metrics.jsonl" <<'PY'
import json, sys
preset, path = sys.argv[1], sys.argv[2]
rates = [json.loads(line)["train_images_per_s"] for line in open(path)]
print(f"{preset:24s} epoch 2: {rates[-1]:6.0f} images/s")
PY
done
