"""Where a training step's time goes: gather / forward / backward / optimiser / the loop's own
Python, in CPU milliseconds per step, at batch 256 and 1024.

DIN at the Amazon configuration (64 + 64 embeddings, attention 80 → 40, MLP 200 → 80, max_len
100, Adam lr 1e-3 with the default sparse table gradients, i.e. LazyAdam on the tables) on
bench_train.py's synthetic Amazon-shaped rows. Each part is timed with the main thread's CPU
clock (`time.thread_time`, one torch thread), so other jobs on the machine shift it little.
"loop step" is `dinctl.training.loop.train_step` itself (the same work plus the loop's
bookkeeping: regulariser hooks, lr schedule, loss sums, progress); "loop overhead" is the
difference. Steady state: the batches are run once untimed first (a whole process pays the
first-seen shapes in its first epoch; bench_train.py --whole measures that).

    python benchmarks/bench_train_step.py [--users 4000] [--steps 40] [--batches 256,1024]
        [--acts prelu,dice] [--amp]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_train import OUT, make_dataset  # noqa: E402

from dinctl.reporting import SILENT  # noqa: E402
from dinctl.training import distributed  # noqa: E402
from dinctl.training.config import resolve_config  # noqa: E402
from dinctl.training.loop import bce_loss, setup_data, setup_model, train_step  # noqa: E402
from dinctl.training.optim import set_lr  # noqa: E402
from dinctl.training.progress import Progress  # noqa: E402
from dinctl.training.runlog import RunLog  # noqa: E402
from dinctl.training.state import Run, TrainState  # noqa: E402

PARTS = ("gather", "forward", "backward", "optimiser")
WARMUP = 5


def make_run(data: Path, act: str, batch: int, amp: bool) -> Run:
    """What `train` builds before its first step: the data, the seeded model and optimisers."""
    cfg = resolve_config(
        {
            "data": str(data),
            "out": str(OUT / "bench_train_step_run"),
            "model": "din",
            "act": act,
            "optimizer": "adam",
            "lr": 1e-3,
            "batch_size": batch,
            "device": "cpu",
            "amp": amp,
        },
        None,
    )
    device, info = torch.device("cpu"), distributed.DistInfo()
    data_ = setup_data(cfg, device)
    parts = setup_model(cfg, data_, device, info)
    log = RunLog(Path(cfg.out) / "log.jsonl", False, None)
    steps = len(data_.train_rows) // batch
    return Run(
        cfg=cfg,
        device=device,
        info=info,
        data=data_,
        parts=parts,
        state=TrainState(),
        log=log,
        bar=Progress(SILENT),
        reporter=SILENT,
        use_amp=amp,
        steps_per_epoch=steps,
    )


def time_parts(run: Run, order: torch.Tensor, steps: int) -> dict[str, float]:
    """CPU ms per step of each part, the same work as `train_step` without its bookkeeping."""
    cfg, data, parts = run.cfg, run.data, run.parts
    spent = dict.fromkeys(PARTS, 0.0)
    clock = time.thread_time
    for i in range(WARMUP + steps):
        if i == WARMUP:
            spent = dict.fromkeys(PARTS, 0.0)
        index = order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
        t = clock()
        batch = data.gatherer.gather(*data.train_rows.rows(index))
        spent["gather"] += clock() - t
        t = clock()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=run.use_amp):
            logits = parts.step_model(batch).logits  # (B,)
        loss = bce_loss(logits, batch.label)
        spent["forward"] += clock() - t
        t = clock()
        for opt in parts.optimizers:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        spent["backward"] += clock() - t
        t = clock()
        set_lr(parts.optimizers, cfg.lr)
        for opt in parts.optimizers:
            opt.step()
        spent["optimiser"] += clock() - t
    return {k: 1000 * v / steps for k, v in spent.items()}


def time_loop(run: Run, order: torch.Tensor, steps: int) -> float:
    """CPU ms per call of the loop's own `train_step`."""
    b = run.cfg.batch_size
    for i in range(WARMUP):
        train_step(run, order[i * b : (i + 1) * b])
    t = time.thread_time()
    for i in range(WARMUP, WARMUP + steps):
        train_step(run, order[i * b : (i + 1) * b])
    return 1000 * (time.thread_time() - t) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=4_000)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batches", default="256,1024")
    ap.add_argument("--acts", default="prelu,dice")
    ap.add_argument("--amp", action="store_true", help="bf16 autocast (CPU --amp)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = OUT / f"bench_train_amazon_u{args.users}_valid"
    if not (data / "meta.json").exists():
        make_dataset(data, args.users, valid=True)
    print(f"torch {torch.__version__}, 1 thread, {args.users:,} users, amp {args.amp}")
    cols = (*PARTS, "sum", "loop step", "loop overhead")
    print(f"{'act':<6} {'batch':>5} " + " ".join(f"{c:>13}" for c in cols) + "  samples/CPU-s")
    for act in args.acts.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            run = make_run(data, act, batch, args.amp)
            n = len(run.data.train_rows)
            order = torch.randperm(n, generator=torch.Generator().manual_seed(0))  # (n,)
            steps = min(args.steps, n // batch - WARMUP)
            # a first pass over the same batches warms per-shape caches (oneDNN's bf16
            # primitives under --amp), so both timed passes see the steady state
            time_loop(make_run(data, act, batch, args.amp), order, steps)
            parts = time_parts(run, order, steps)
            loop = time_loop(make_run(data, act, batch, args.amp), order, steps)
            total = sum(parts.values())
            row = [*(parts[k] for k in PARTS), total, loop, loop - total]
            print(
                f"{act:<6} {batch:>5} "
                + " ".join(f"{v:>13.2f}" for v in row)
                + f"  {batch / loop * 1000:>13,.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
