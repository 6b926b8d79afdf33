#!/usr/bin/env bash
# Train protocol runs on a borrowed GPU machine for a fixed time, from a pack (pack.py), and pack them back.
#
#   PACK=DIR DEADLINE=SECONDS analysis/device_queue/run.sh NAME ...     # NAMEs of analysis/reproduce_cifar10_lt.sh
#
# Writes CIFAR-10 from the pack (unpack.py), unpacks the runs to continue, then starts one queue per NAME at
# once (a small model leaves a GPU idle most of the time: four ResNet-32 ensembles side by side took 4-7 s an
# epoch each on one H200). DEADLINE seconds after the start it stops the trainings left (SIGTERM: each writes
# a checkpoint at the step reached) and writes $OUT/<NAME>.tar.gz: the run folder with best.pt as weights
# (16 MiB a file comes back), without summary.json and predictions/, which were made on zeros for the lossless
# estimate's images; `--resume` makes them again on the machine that has those images. Env: DEVICE (cuda), PYTHON (python3),
# DATA (/work/data), RUNS (/work/runs/protocol-v2): the same folders as where the runs started, which a resume
# checks.
set -u
cd "$(dirname "$0")/../.."
START=$(date +%s)
PACK=${PACK:?PACK=folder written by pack.py} DEADLINE=${DEADLINE:-450} PYTHON=${PYTHON:-python3}
DATA=${DATA:-/work/data} RUNS=${RUNS:-/work/runs/protocol-v2} OUTDIR=${OUT:-/tmp/device-queue-out}
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
FBL=$(mktemp -d)/fbl
printf '#!/bin/sh\nexec %s -m fbl "$@"\n' "$PYTHON" > "$FBL" && chmod +x "$FBL"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null
$PYTHON -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
$PYTHON "$PACK/unpack.py" "$DATA" || exit 1
mkdir -p "$RUNS" "$OUTDIR"
for f in "$PACK"/runs/*.tar.gz; do [ -f "$f" ] && tar -xzf "$f" -C "$RUNS"; done
QUEUES=()
for name in "$@"; do
  FBL=$FBL DEVICE=${DEVICE:-cuda} OMP_NUM_THREADS=${THREADS:-3} analysis/reproduce_cifar10_lt.sh "$DATA" "$RUNS" "$(mktemp -d)" "$name" &
  QUEUES+=($!)
done
stop() {  # SIG: the trainings of these queues only (another queue on the machine is not ours)
  for queue in "${QUEUES[@]}"; do pkill "-$1" -P "$queue" -f "fbl train"; done
}
progress() {
  local line="t=$(($(date +%s) - START))s"
  for name in "$@"; do line+=" | $name $(tail -n1 "$RUNS/$name/metrics.jsonl" 2>/dev/null | cut -c1-14)"; done
  echo "$line"
}
while [ -n "$(jobs -r)" ] && [ $(($(date +%s) - START)) -lt "$DEADLINE" ]; do progress "$@"; sleep 20; done
stop TERM
for _ in $(seq 60); do [ -z "$(jobs -r)" ] && break; sleep 1; done
stop KILL
progress "$@"
$PYTHON - "$RUNS" <<'PY'
import sys
from pathlib import Path
from fbl.engine.checkpoint import load_checkpoint, save_checkpoint, weights_only
for path in Path(sys.argv[1]).glob("*/checkpoints/best.pt"):
    save_checkpoint(weights_only(load_checkpoint(path)), path)
PY
for name in "$@"; do
  tail -n 3 "$RUNS/$name.log"
  tar -czf "$OUTDIR/$name.tar.gz" --exclude=summary.json --exclude=predictions -C "$RUNS" "$name" "$name.log"
done
ls -la "$OUTDIR"
