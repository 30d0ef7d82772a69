#!/usr/bin/env bash
# Sharded tables on CUDA (issue 23), prepared to run unchanged when a GPU is lent: a paper-shaped
# dataset with a 20-million-row item table (benchmarks/gen_scale.py), then
# `torchrun -m dinctl train --shard-embeddings` on every GPU here: TorchRec tables over NCCL with
# the fused Adam that CUDA's FBGEMM kernels have (CPU has none). Prints the run's valid AUC and
# the median step time; log and JSON go to $OUT (else ./).
#   benchmarks/gpu_sharded.sh            # on the GPU machine: needs the CUDA fbgemm-gpu 1.8.0 and
#                                        # `pip install --no-deps torchrec==1.8.0` in its Python
#   benchmarks/gpu_sharded.sh --dry-run  # anywhere: small data, 2 gloo ranks on CPU with SGD
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-.}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python -c "import torchrec" 2>/dev/null || {
  echo "error: TorchRec does not load here; install fbgemm-gpu==1.8.0 (CUDA; fbgemm-gpu-cpu on" \
       "CPU), then pip install --no-deps torchrec==1.8.0" >&2
  exit 1
}
if [ "${1:-}" = --dry-run ]; then
  ITEMS=200000 USERS=2000 NPROC=2 DEVICE=cpu OPTIMIZER=sgd LR=0.5 BATCH=512
else
  ITEMS=20000000 USERS=200000 NPROC=$(nvidia-smi -L | wc -l) DEVICE=cuda OPTIMIZER=adam LR=0.001
  BATCH=4096
fi
DATA="$OUT/scale-data" RUN="$OUT/scale-run"
python benchmarks/gen_scale.py --out "$DATA" --items "$ITEMS" --users "$USERS"
rm -rf "$RUN"
python -m torch.distributed.run --standalone --nproc-per-node "$NPROC" -m dinctl train \
  --shard-embeddings --data "$DATA" --out "$RUN" --device "$DEVICE" --optimizer "$OPTIMIZER" \
  --lr "$LR" --emb-dim 64 --batch-size "$BATCH" --epochs 1 --log-every 20 --act dice --reg mba \
  --json | tee "$OUT/gpu_sharded.json"
python - "$RUN" "$BATCH" "$NPROC" "$DEVICE" <<'PY'
import json, statistics, sys
run, batch, nproc, device = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
steps = [json.loads(l) for l in open(f"{run}/log.jsonl") if '"event": "step"' in l]
ms = statistics.median(1000 * batch / s["samples_per_s"] for s in steps[1:])
print(f"sharded {device} x{nproc}: {len(steps)} step lines, median step {ms:.1f} ms at batch {batch}")
PY
