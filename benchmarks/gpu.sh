#!/usr/bin/env bash
# One short check for a lent GPU (H100/H200, torch with CUDA): CPU/GPU agreement (fp32, bf16),
# epoch time and samples/s at batch 4096 with and without --amp, and the torchrun world-size-1
# NCCL path. Under 5 minutes. The log and gpu_check.json go to $OUT when it is set.
#   benchmarks/gpu.sh              # on the GPU machine
#   benchmarks/gpu.sh --cpu-smoke  # anywhere: small data on CPU, checks the script itself
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-.}"
mkdir -p "$OUT"
export OUT PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python - <<'PY' || { echo "error: dinctl's dependencies are missing here (pip install -e .)" >&2; exit 1; }
import numpy, polars, rich, torch, typer  # noqa: F401
PY
python benchmarks/gpu_check.py "$@" 2>&1 | tee "$OUT/gpu_check.log"
exit "${PIPESTATUS[0]}"
