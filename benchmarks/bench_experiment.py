"""How long `dinctl experiment table3` takes on full-size Amazon: measured step rates per model.

Builds a synthetic dataset with the Amazon Electronics shape (192,403 users, 63,001 items, 801
categories, mean 8.8 behaviours per user; `bench_train.make_dataset`) under benchmarks/out/,
then for every Table 3 model and each recipe times `--steps` optimiser steps of the real
trainer (after `--warmup` steps; data loading and model building excluded) and prints steps/s,
samples/s and the epoch and experiment times they imply for the real Electronics training split
(2,223,958 rows = 2,608,764 train+valid rows minus 384,806 validation rows). Validation and
test scoring are not included in those times.

    python benchmarks/bench_experiment.py [--device cpu|cuda] [--steps 200] [--recipes paper,fast]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

AMAZON_USERS = 192_403
AMAZON_TRAIN_ROWS = 2_608_764 - 2 * AMAZON_USERS


class _Done(Exception):
    pass


def time_steps(cfg: object, warmup: int, steps: int, sync: object) -> float:
    """Seconds for `steps` optimiser steps after `warmup` ones."""
    from dinctl.training.loop import train

    marks: dict[int, float] = {}

    def on_step(step: int) -> None:
        if step == warmup or step == warmup + steps:
            sync()  # type: ignore[operator]
            marks[step] = time.perf_counter()
        if step == warmup + steps:
            raise _Done

    try:
        train(cfg, on_step=on_step)  # type: ignore[arg-type]
    except _Done:
        pass
    return marks[warmup + steps] - marks[warmup]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=AMAZON_USERS)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--recipes", default="paper,fast")
    parser.add_argument("--models", default="", help="comma-separated Table 3 keys (default all)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    import torch
    from bench_train import make_dataset

    from dinctl.experiment import TABLE3
    from dinctl.training.config import resolve_config

    data = HERE / "out" / f"exp_amazon_u{args.users}"
    if not (data / "meta.json").exists():
        t0 = time.perf_counter()
        make_dataset(data, args.users)
        print(f"built {data} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    keys = args.models.split(",") if args.models else [v.key for v in TABLE3.variants]
    rows = []
    for recipe in args.recipes.split(","):
        total_s = 0.0
        for variant in TABLE3.variants:
            if variant.key not in keys:
                continue
            out = HERE / "out" / "bench_experiment_run"
            shutil.rmtree(out, ignore_errors=True)
            overrides = {
                **dict(variant.settings),
                "data": str(data),
                "recipe": recipe,
                "device": args.device,
                "out": str(out),
                "log_every": 10**9,
            }
            cfg = resolve_config(overrides)
            seconds = time_steps(cfg, args.warmup, args.steps, sync)
            steps_per_s = args.steps / seconds
            epoch_s = math.ceil(AMAZON_TRAIN_ROWS / cfg.batch_size) / steps_per_s
            total_s += epoch_s * cfg.epochs * args.seeds
            row = {
                "recipe": recipe,
                "model": variant.key,
                "batch_size": cfg.batch_size,
                "epochs": cfg.epochs,
                "steps_per_s": round(steps_per_s, 1),
                "samples_per_s": round(steps_per_s * cfg.batch_size),
                "epoch_min": round(epoch_s / 60, 1),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
        print(
            f"recipe {recipe}: {args.seeds} seeds × {len(keys)} models, training only: "
            f"{total_s / 3600:.1f} h on {args.device}",
            flush=True,
        )
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    summary = {"device": name, "threads": torch.get_num_threads(), "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
