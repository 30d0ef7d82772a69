#!/usr/bin/env bash
# The prepared GPU run (one script, ~8 minutes on an H100/H200 with torch + CUDA, data included):
# whole DIN-Dice epochs on full-scale synthetic Amazon data at batch 4096, end to end as
# `dinctl train` processes — float32, --amp, --compile --length-buckets — printing epoch seconds,
# samples/s and GPU utilisation (nvidia-smi every 200 ms). Logs, CSVs and gpu_epoch.json go to
# $OUT when it is set (else ./).
#   benchmarks/gpu.sh              # on the GPU machine
#   benchmarks/gpu.sh --dry-run    # anywhere: small data on CPU, checks the script itself
# Extra arguments go to benchmarks/gpu_epoch.py (--runs fp32,amp,compile, --run-timeout 150, ...).
# Then benchmarks/gpu_sharded.sh: `train --shard-embeddings` on CUDA (TorchRec, NCCL, Adam).
# The CPU/GPU agreement and torchrun/NCCL check is a separate script: benchmarks/gpu_check.py.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-.}"
mkdir -p "$OUT"
export OUT PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python - <<'PY' || { echo "error: dinctl's dependencies are missing here (pip install -e .)" >&2; exit 1; }
import numpy, polars, rich, torch, typer  # noqa: F401
PY
python benchmarks/gpu_epoch.py "$@" 2>&1 | tee "$OUT/gpu_epoch.log"
status="${PIPESTATUS[0]}"
# then the TorchRec-sharded tables over NCCL with fused Adam (issue 23; ~3 minutes)
dry=""
for arg in "$@"; do [ "$arg" = --dry-run ] && dry=--dry-run; done
benchmarks/gpu_sharded.sh $dry 2>&1 | tee "$OUT/gpu_sharded.log"
sharded="${PIPESTATUS[0]}"
[ "$status" = 0 ] && exit "$sharded"
exit "$status"
