"""Where a training step's time goes: gather / forward / backward / optimiser, ms per step.

Amazon-shaped synthetic rows (benchmarks/gpu_check.synthetic_dataset), DIN at the paper's
configuration (64 + 64 embeddings, batch 1024, max_len 100), Adam with dense gradients vs
sparse gradients (SparseAdam on the tables, what `dinctl train` uses by default).
  python benchmarks/bench_train_step.py [--users 20000] [--steps 30] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpu_check import synthetic_dataset  # noqa: E402

from dinctl.data.batching import SplitTensors, WindowGatherer  # noqa: E402
from dinctl.data.store import load_dataset  # noqa: E402
from dinctl.models import ModelConfig, build_model  # noqa: E402
from dinctl.training.config import resolve_config  # noqa: E402
from dinctl.training.loop import bce_loss, make_optimizers  # noqa: E402


def time_steps(
    data: Path, model_name: str, sparse: bool, steps: int, batch: int
) -> dict[str, float]:
    ds = load_dataset(data)
    rows = SplitTensors(ds.split("train"))
    gatherer = WindowGatherer(ds, 100)
    torch.manual_seed(0)
    model = build_model(
        ModelConfig(model=model_name, n_users=ds.n_users, n_items=ds.n_items, n_cates=ds.n_cates)
    )
    opts = make_optimizers(resolve_config({"out": "x"}, None), model, sparse)
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(0))
    parts = dict.fromkeys(("gather", "forward", "backward", "optimiser"), 0.0)
    warmup = 5
    for i in range(warmup + steps):
        if i == warmup:
            parts = dict.fromkeys(parts, 0.0)
        t = time.perf_counter()
        b = gatherer.gather(*rows.rows(order[i * batch : (i + 1) * batch]))
        parts["gather"] += time.perf_counter() - t
        t = time.perf_counter()
        loss = bce_loss(model(b).logits, b.label)
        parts["forward"] += time.perf_counter() - t
        t = time.perf_counter()
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        parts["backward"] += time.perf_counter() - t
        t = time.perf_counter()
        for opt in opts:
            opt.step()
        parts["optimiser"] += time.perf_counter() - t
    out = {k: 1000 * v / steps for k, v in parts.items()}
    out["total"] = sum(out.values())
    out["samples_per_s"] = batch / (out["total"] / 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--models", default="din,base")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data = synthetic_dataset(Path(tmp) / "data", args.users)
        print(f"torch {torch.__version__}, {args.threads} thread(s), batch {args.batch}")
        cols = ("gather", "fwd", "bwd", "opt", "total")
        print(f"{'model':<6} {'grads':<7} " + " ".join(f"{c:>7}" for c in cols) + " samples/s")
        for name in args.models.split(","):
            for sparse in (False, True):
                r = time_steps(data, name, sparse, args.steps, args.batch)
                print(
                    f"{name:<6} {'sparse' if sparse else 'dense':<7} {r['gather']:>7.1f} "
                    f"{r['forward']:>7.1f} {r['backward']:>7.1f} {r['optimiser']:>7.1f} "
                    f"{r['total']:>7.1f} {r['samples_per_s']:>10,.0f}"
                )


if __name__ == "__main__":
    main()
