#!/usr/bin/env bash
# GPU check, one script: the paper's loop vs fbl's default path on CIFAR-10-LT (ResNet-32, batch 64),
# the projected 200-epoch run, ResNet-50 at 224 px (bf16, channels-last, compiled) in images/s, and the
# decoding cores that rate needs. Under 8 minutes on one GPU; on a machine without one it reports CPU
# numbers (slowly: use GPU_CHECK_QUICK=1 there).
#
#   benchmarks/gpu_check.sh                     # results in ./gpu_check/ (gpu_check.md, gpu_check.json)
#   GPU_CHECK_QUICK=1 benchmarks/gpu_check.sh   # tiny settings, eager: runs anywhere in well under a minute
#
# Environment: PYTHON (default .venv/bin/python), GPU_CHECK_OUT (default gpu_check), GPU_CHECK_DATA (a folder
# holding cifar-10-batches-py; default: written from ../shared/data/cifar10 into a temporary folder, or
# generated data when ../shared is absent).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${GPU_CHECK_OUT:-gpu_check}
DATA=${GPU_CHECK_DATA:-}
MATERIALIZE=../shared/data/cifar10/materialize.py
if [ -z "$DATA" ] && [ -f "$MATERIALIZE" ] && [ "${GPU_CHECK_QUICK:-0}" != 1 ]; then
  DATA=$(mktemp -d)/cifar10
  trap 'rm -rf "$(dirname "$DATA")"' EXIT
  "$PYTHON" "$MATERIALIZE" "$DATA"
fi
ARGS=(--out "$OUT")
if [ -n "$DATA" ]; then ARGS+=(--data-dir "$DATA"); fi
if [ "${GPU_CHECK_QUICK:-0}" = 1 ]; then
  ARGS+=(--quick --no-compile --steps 2 --warmup 1 --rounds 1 --eval-batches 1 --image-size 64 --r50-batch 2
         --r50-steps 1 --decode-images 6)
fi
exec "$PYTHON" benchmarks/gpu_check.py "${ARGS[@]}"
