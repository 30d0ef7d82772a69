"""One short GPU check (run by benchmarks/gpu.sh): agreement, speed, AMP, torchrun/NCCL.

1. writes a synthetic Amazon-shaped dataset (planted interests, histories up to 100);
2. trains DIN (Dice) for 2 epochs at batch 4096 in fp32, then with --amp (bf16 autocast),
   printing epoch time and samples/s of the second epoch (the first pays CUDA warm-up);
3. CPU/GPU agreement on the trained weights: the same batch on both devices, eval mode, max
   |Δlogit| (fp32 tolerance 1e-3, bf16 tolerance 0.1) and valid AUC (fp32 |ΔAUC| ≤ 1e-4,
   bf16 |ΔAUC| ≤ 2e-3);
4. `torchrun --nproc-per-node 1 -m dinctl train` (the DDP path, NCCL on GPU) for 2 epochs,
   whose valid AUC must match a single-process fp32 run with dense embedding gradients
   (|ΔAUC| ≤ 2e-3): DDP always trains with dense gradients (dense Adam), while step 2's runs
   use the default sparse ones (LazyAdam), which reach a different AUC.
`--cpu-smoke` runs the same on a small dataset on CPU (gloo, bf16 CPU autocast for step 3).
Results are printed and written as JSON to $OUT/gpu_check.json (or ./gpu_check.json).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dinctl.data.batching import SplitTensors, WindowGatherer  # noqa: E402
from dinctl.data.store import load_dataset, write_dataset  # noqa: E402
from dinctl.inference import open_run  # noqa: E402
from dinctl.metrics import auc_score  # noqa: E402
from dinctl.training.config import resolve_config  # noqa: E402
from dinctl.training.distributed import DistInfo  # noqa: E402
from dinctl.training.loop import train  # noqa: E402
from dinctl.training.predict import predict_proba, to_device  # noqa: E402


def synthetic_dataset(out: Path, n_users: int, seed: int = 0) -> Path:
    """Amazon-shaped rows: 5-core-like histories, 2 preferred categories per user, Zipf items."""
    import polars as pl

    rng = np.random.default_rng(seed)
    n_cates, per_cate = 800, 80
    n_items = n_cates * per_cate
    lengths = np.minimum(5 + rng.geometric(1 / 6, n_users), 100)  # (U,) mean ≈ 11
    prefs = rng.integers(0, n_cates, (n_users, 2))  # (U, 2)
    user_of = np.repeat(np.arange(n_users), lengths)  # (S,)
    cate0 = prefs[user_of, rng.integers(0, 2, user_of.shape[0])]  # (S,)
    zipf = 1.0 / np.arange(1, per_cate + 1)
    rank = rng.choice(per_cate, size=user_of.shape[0], p=zipf / zipf.sum())  # (S,)
    items = (cate0 * per_cate + rank + 1).astype(np.int32)  # (S,) ids 1..N
    item_cate = np.concatenate([[0], np.repeat(np.arange(1, n_cates + 1), per_cate)]).astype(
        np.int32
    )
    offsets = np.concatenate([[0], np.cumsum(lengths)])

    # targets at positions k = 1..n-1 of each user: k = n-1 test, k = n-2 valid, the rest train
    counts = lengths - 1  # (U,) targets per user
    k_user = np.repeat(np.arange(n_users), counts)  # (R,)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])  # (U,) each user's first target row
    k = np.arange(k_user.shape[0]) - np.repeat(first, counts) + 1  # (R,) 1..n-1 within each user
    pos_item = items[offsets[k_user] + k]
    split = np.where(k == lengths[k_user] - 1, 2, np.where(k == lengths[k_user] - 2, 1, 0))

    def rows(mask: np.ndarray) -> pl.DataFrame:
        u, h, it = k_user[mask] + 1, k[mask], pos_item[mask]
        neg = rng.integers(1, n_items + 1, it.shape[0])
        return pl.DataFrame(
            {
                "user": np.concatenate([u, u]).astype(np.int32),
                "hist_len": np.concatenate([h, h]).astype(np.int32),
                "item": np.concatenate([it, neg]).astype(np.int32),
                "cate": item_cate[np.concatenate([it, neg])],
                "label": np.concatenate([np.ones_like(it), np.zeros_like(neg)]).astype(np.int8),
            }
        )

    splits = {name: rows(split == i) for i, name in enumerate(("train", "valid", "test"))}
    freq = np.bincount(splits["train"]["item"].to_numpy(), minlength=n_items + 1)
    items_df = pl.DataFrame(
        {
            "item": np.arange(1, n_items + 1, dtype=np.int32),
            "raw_item": [f"I{i}" for i in range(1, n_items + 1)],
            "cate": item_cate[1:],
            "cate_name": [f"C{c}" for c in item_cate[1:]],
            "freq": freq[1:].astype(np.int64),
        }
    )
    seq_items = pl.Series("items", np.split(items, offsets[1:-1]), dtype=pl.List(pl.Int32))
    sequences = pl.DataFrame(
        {
            "user": np.arange(1, n_users + 1, dtype=np.int32),
            "raw_user": [f"U{u}" for u in range(1, n_users + 1)],
            "items": seq_items,
            "cates": pl.Series(np.split(item_cate[items], offsets[1:-1]), dtype=pl.List(pl.Int32)),
            "ts": pl.Series(
                [np.arange(n, dtype=np.int64) for n in lengths], dtype=pl.List(pl.Int64)
            ),
        }
    )
    meta = {
        "dataset": "synthetic-amazon",
        "protocol": "amazon-windows",
        "seed": seed,
        "valid": True,
        "counts": {
            "users": n_users,
            "items": n_items,
            **{s: df.height for s, df in splits.items()},
        },
        "vocab": {"user": n_users + 1, "item": n_items + 1, "cate": n_cates + 1},
    }
    return write_dataset(
        out, meta=meta, items=items_df, sequences=sequences, splits=splits, overwrite=True
    )


def timed_run(
    data: Path, out: Path, device: str, amp: bool, batch: int, epochs: int, sparse: bool = True
) -> dict[str, Any]:
    cfg = resolve_config(
        {
            "data": str(data),
            "out": str(out),
            "device": device,
            "amp": amp,
            "batch_size": batch,
            "epochs": epochs,
            "act": "dice",
            "log_every": 20,
            "sparse_grads": sparse,
        },
        None,
    )
    t0 = time.perf_counter()
    result = train(cfg)
    wall = time.perf_counter() - t0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    last = [r for r in log if r["event"] == "epoch"][-1]
    speeds = [
        r["samples_per_s"] for r in log if r["event"] == "step" and r["epoch"] == last["epoch"]
    ]
    return {
        "amp": amp,
        "wall_s": round(wall, 2),
        "epoch_s": last["seconds"],
        "train_samples_per_s": round(float(np.median(speeds)), 0) if speeds else None,
        "valid_auc": result.best_valid.get("valid_global_auc"),
        "last_epoch_valid_auc": last.get("valid_global_auc"),
    }


def agreement(run_dir: Path, data: Path, device: str, smoke: bool) -> dict[str, Any]:
    ds = load_dataset(data)
    rows = SplitTensors(ds.split("valid"))
    g = WindowGatherer(ds, 100)
    cpu = open_run(run_dir, "cpu").model
    dev = open_run(run_dir, device).model
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    batch = g.gather(*rows.rows(slice(0, 4096)))
    with torch.no_grad():
        ref = cpu(batch).logits  # (B,)
        got = dev(batch.to(device)).logits.float().cpu()
        with torch.autocast(device_type=device, dtype=torch.bfloat16):
            got_bf16 = dev(batch.to(device)).logits.float().cpu()
    info = DistInfo()
    p_cpu = predict_proba(cpu, rows, g, 4096, info, amp=False).numpy()
    g_dev = WindowGatherer(ds, 100)
    rows_dev = SplitTensors(ds.split("valid"))

    to_device(rows_dev, g_dev, torch.device(device))
    p_dev = predict_proba(dev, rows_dev, g_dev, 4096, info, amp=False).numpy()
    p_bf16 = predict_proba(dev, rows_dev, g_dev, 4096, info, amp=True).numpy()
    y = rows.label.numpy()
    auc_cpu = auc_score(y, p_cpu)
    out = {
        "logit_max_abs_diff_fp32": float((got - ref).abs().max()),
        "logit_max_abs_diff_bf16": float((got_bf16 - ref).abs().max()),
        "logit_scale": float(ref.abs().mean()),
        "auc_cpu": auc_cpu,
        "auc_diff_fp32": abs(auc_score(y, p_dev) - auc_cpu),
        "auc_diff_bf16": abs(auc_score(y, p_bf16) - auc_cpu),
    }
    out["pass"] = bool(
        out["logit_max_abs_diff_fp32"] <= 1e-3
        and out["logit_max_abs_diff_bf16"] <= 0.1
        and out["auc_diff_fp32"] <= 1e-4
        and out["auc_diff_bf16"] <= 2e-3
    )
    return out


def torchrun_ws1(data: Path, out: Path, device: str, batch: int, epochs: int) -> dict[str, Any]:
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1",
        "-m", "dinctl", "train", "--data", str(data), "--out", str(out), "--device", device,
        "--batch-size", str(batch), "--epochs", str(epochs), "--act", "dice", "--log-every", "20",
        "--json",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    res: dict[str, Any] = {
        "returncode": proc.returncode,
        "wall_s": round(time.perf_counter() - t0, 2),
    }
    if proc.returncode != 0:
        res["stderr_tail"] = proc.stderr[-2000:]
        return res
    res["valid_auc"] = json.loads(proc.stdout)["best_valid"]["valid_global_auc"]
    res["backend"] = "nccl" if device == "cuda" else "gloo"
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--cpu-smoke", action="store_true", help="small data on CPU: checks the script runs"
    )
    ap.add_argument(
        "--users", type=int, default=None, help="synthetic users (default 150000; smoke 3000)"
    )
    args = ap.parse_args()
    device = "cpu" if args.cpu_smoke else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: no CUDA device; run with --cpu-smoke to check the script on CPU")
    users = args.users or (3000 if args.cpu_smoke else 150_000)
    work = Path(os.environ.get("DINCTL_GPU_WORK", "/tmp/dinctl_gpu_check"))
    out_dir = Path(os.environ.get("OUT", "."))
    batch, epochs = 4096, 2
    report: dict[str, Any] = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        "users": users,
        "batch_size": batch,
    }
    t0 = time.perf_counter()
    data = synthetic_dataset(work / "data", users)
    report["train_rows"] = len(load_dataset(data).split("train"))
    report["gen_s"] = round(time.perf_counter() - t0, 1)
    print(
        json.dumps(
            {"dataset": str(data), "train_rows": report["train_rows"], "gen_s": report["gen_s"]}
        ),
        flush=True,
    )

    for amp in (False, True):
        run = work / ("run-amp" if amp else "run-fp32")
        if run.exists():
            import shutil

            shutil.rmtree(run)
        report["amp" if amp else "fp32"] = timed_run(data, run, device, amp, batch, epochs)
        print(json.dumps({"train": report["amp" if amp else "fp32"]}), flush=True)

    report["agreement"] = agreement(work / "run-fp32", data, device, args.cpu_smoke)
    print(json.dumps({"agreement": report["agreement"]}), flush=True)

    for name in ("run-ddp", "run-fp32-dense"):
        if (work / name).exists():
            import shutil

            shutil.rmtree(work / name)
    report["fp32_dense"] = timed_run(
        data, work / "run-fp32-dense", device, False, batch, epochs, False
    )
    report["torchrun_ws1"] = torchrun_ws1(data, work / "run-ddp", device, batch, epochs)
    fp32_auc = report["fp32_dense"]["valid_auc"]
    ddp_auc = report["torchrun_ws1"].get("valid_auc")
    report["torchrun_ws1"]["pass"] = ddp_auc is not None and abs(ddp_auc - fp32_auc) <= 2e-3
    print(json.dumps({"torchrun_ws1": report["torchrun_ws1"]}), flush=True)
    report["total_s"] = round(time.perf_counter() - t0, 1)

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{'setting':<10} {'epoch s':>9} {'samples/s':>12} {'valid AUC':>10}")
    for key in ("fp32", "amp"):
        r = report[key]
        speed = r["train_samples_per_s"] or 0
        print(f"{key:<10} {r['epoch_s']:>9.2f} {speed:>12,.0f} {r['valid_auc']:>10.4f}")
    ag = report["agreement"]
    print(
        f"agreement: max|Δlogit| fp32 {ag['logit_max_abs_diff_fp32']:.2e} (≤1e-3), "
        f"bf16 {ag['logit_max_abs_diff_bf16']:.2e} (≤0.1); "
        f"|ΔAUC| fp32 {ag['auc_diff_fp32']:.1e} (≤1e-4), "
        f"bf16 {ag['auc_diff_bf16']:.1e} (≤2e-3) → {'PASS' if ag['pass'] else 'FAIL'}"
    )
    tr = report["torchrun_ws1"]
    verdict = "PASS" if tr["pass"] else "FAIL"
    print(
        f"torchrun world size 1 ({tr.get('backend', '?')}): rc {tr['returncode']}, "
        f"valid AUC {ddp_auc} (single process, dense gradients: {fp32_auc}) → {verdict}"
    )
    print(f"total {report['total_s']} s; report in {out_dir / 'gpu_check.json'}")
    if not (ag["pass"] and tr["pass"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
