"""One epoch of DIN at the Amazon configuration: dinctl vs DeepCTR-Torch on identical rows.

Amazon configuration: 64 + 64 embeddings over the Electronics vocabulary (63,001 items, 801
categories), attention 80 → 40, MLP 200 → 80, batch 1024, max_len 100, Adam, one epoch.
Synthetic rows with the Amazon shape (5-core Pareto-tailed sequence lengths, mean ≈ 8.8
behaviours per user, the paper's sliding-window samples with one uniform negative per positive,
planted category interests so AUC means something) are written with `write_dataset` under
benchmarks/out/ (git-ignored). The user count is scaled down from 192,403 so that DeepCTR-Torch
finishes in a few minutes; both trainers see the same train rows, shuffled with the same seed.
Each trainer runs in its own subprocess so that peak RSS is its own.

    pip install -e '.[bench]'   # deepctr-torch
    python benchmarks/bench_train.py [--users 8000] [--act prelu|dice] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "out"
N_ITEMS, N_CATES, MEAN_LEN = 63_001, 801, 1_689_188 / 192_403
SEED = 20180801


# --- synthetic Amazon-shaped dataset ------------------------------------------------------------


def make_dataset(path: Path, n_users: int, seed: int = SEED, valid: bool = False) -> None:
    """Write an Amazon-shaped dataset with planted category interests to `path`; with `valid`,
    each user's second-to-last window is a valid row instead of a train row."""
    import polars as pl

    from dinctl.data.store import write_dataset

    rng = np.random.default_rng(seed)
    extra = int(round((MEAN_LEN - 5) * n_users))
    weight = rng.pareto(1.5, size=n_users) + 1e-3
    lengths = np.minimum(5 + rng.multinomial(extra, weight / weight.sum()), 400)  # (U,)
    cate_w = 1.0 / np.arange(1, N_CATES + 1) ** 1.0
    item_cate = rng.choice(N_CATES, size=N_ITEMS, p=cate_w / cate_w.sum()) + 1  # (N,) 1..C
    item_cate[rng.permutation(N_ITEMS)[:N_CATES]] = np.arange(1, N_CATES + 1)
    by_cate = np.argsort(item_cate, kind="stable") + 1  # item ids grouped by category
    cate_start = np.searchsorted(item_cate[by_cate - 1], np.arange(1, N_CATES + 2))
    cate_count = np.diff(cate_start)  # (C,)

    # each user likes 2 categories; 70% of behaviours come from them, the rest are popular items
    total = int(lengths.sum())
    user_of = np.repeat(np.arange(n_users), lengths)  # (S,)
    liked = rng.choice(N_CATES, size=(n_users, 2), p=cate_w / cate_w.sum()) + 1
    pick = liked[user_of, rng.integers(0, 2, size=total)]  # (S,)
    in_cate = by_cate[cate_start[pick - 1] + (rng.random(total) * cate_count[pick - 1]).astype(int)]
    pop = 1.0 / np.arange(1, N_ITEMS + 1) ** 0.8
    popular = rng.permutation(N_ITEMS)[rng.choice(N_ITEMS, size=total, p=pop / pop.sum())] + 1
    seq_items = np.where(rng.random(total) < 0.7, in_cate, popular)  # (S,)
    seq_cates = item_cate[seq_items - 1]
    offsets = np.concatenate([[0], np.cumsum(lengths)])

    # sliding windows (docs/protocols.md): targets b_{k+1} with history b_1..b_k; test = the last
    last_train = 2 if valid else 1  # train targets stop before the valid (n-2) and test (n-1) ones
    names = ("train", "valid", "test") if valid else ("train", "test")
    rows_user = [np.repeat(np.arange(n_users), lengths - 1 - last_train)]
    rows_len = [np.concatenate([np.arange(1, n - last_train) for n in lengths])]
    if valid:
        rows_user.append(np.arange(n_users))
        rows_len.append(lengths - 2)
    rows_user.append(np.arange(n_users))
    rows_len.append(lengths - 1)
    splits = {}
    for name, u, k in zip(names, rows_user, rows_len, strict=True):
        pos = seq_items[offsets[u] + k]
        neg = rng.integers(1, N_ITEMS + 1, size=len(u))
        item = np.stack([pos, neg], axis=1).reshape(-1)
        splits[name] = pl.DataFrame(
            {
                "user": np.repeat(u + 1, 2).astype(np.int32),
                "hist_len": np.repeat(k, 2).astype(np.int32),
                "item": item.astype(np.int32),
                "cate": item_cate[item - 1].astype(np.int32),
                "label": np.tile([1, 0], len(u)).astype(np.int8),
            }
        )
    freq = np.bincount(splits["train"]["item"].to_numpy(), minlength=N_ITEMS + 1)
    items = pl.DataFrame(
        {
            "item": np.arange(1, N_ITEMS + 1, dtype=np.int32),
            "raw_item": [f"I{i}" for i in range(1, N_ITEMS + 1)],
            "cate": item_cate.astype(np.int32),
            "cate_name": [f"C{c}" for c in item_cate],
            "freq": freq[1:].astype(np.int64),
        }
    )
    item_lists = [seq_items[offsets[i] : offsets[i + 1]] for i in range(n_users)]
    cate_lists = [seq_cates[offsets[i] : offsets[i + 1]] for i in range(n_users)]
    sequences = pl.DataFrame(
        {
            "user": np.arange(1, n_users + 1, dtype=np.int32),
            "raw_user": [f"U{i}" for i in range(1, n_users + 1)],
            "items": item_lists,
            "cates": cate_lists,
            "ts": [np.arange(n, dtype=np.int64) for n in lengths],
        }
    )
    meta = {
        "dataset": "synthetic-amazon",
        "protocol": "amazon",
        "seed": seed,
        "valid": valid,
        "counts": {name: len(df) for name, df in splits.items()},
        "vocab": {"user": n_users + 1, "item": N_ITEMS + 1, "cate": N_CATES + 1},
        "inputs": {},
    }
    write_dataset(path, meta=meta, items=items, sequences=sequences, splits=splits, overwrite=True)


# --- workers ------------------------------------------------------------------------------------


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_auc(model, ds, max_len: int) -> float:  # type: ignore[no-untyped-def]
    """AUC of `model` (eval mode) on the test split."""
    import torch

    from dinctl.data.batching import SplitTensors, WindowGatherer, iter_batches
    from dinctl.metrics import auc_score

    test = SplitTensors(ds.split("test"))
    gatherer = WindowGatherer(ds, max_len=max_len)
    model.eval()
    with torch.no_grad():
        scores = [model(b).logits for b in iter_batches(test, gatherer, 4096)]
    return auc_score(test.label.numpy(), torch.cat(scores).numpy())


def run_ours(args: argparse.Namespace) -> dict[str, float]:
    """One epoch of dinctl's DIN through `dinctl.training.loop.train` (what `dinctl train` runs)."""

    from dinctl.data.store import load_dataset
    from dinctl.inference import open_run
    from dinctl.training.config import TrainConfig
    from dinctl.training.loop import train

    ds = load_dataset(args.data)
    run_dir = OUT / "bench_train_run"
    shutil.rmtree(run_dir, ignore_errors=True)
    cfg = TrainConfig(
        data=str(args.data),
        model="din",
        act=args.act,
        optimizer="adam",
        lr=args.lr,
        batch_size=args.batch_size,
        epochs=1,
        emb_dim=args.emb_dim,
        max_len=args.max_len,
        device="cpu",
        seed=args.seed,
        out=str(run_dir),
    )
    t0, c0 = time.perf_counter(), time.process_time()
    train(cfg)  # includes dataset loading, checkpoint and best.pt writes
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    auc = test_auc(open_run(run_dir, dataset=ds).model, ds, args.max_len)
    rows = len(ds.split("train"))
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    epochs = [r for r in log if r.get("event") == "epoch"]
    return {
        "loop_epoch_seconds": float(epochs[-1]["seconds"]),
        "seconds": seconds,
        "cpu_seconds": cpu,
        "rows": rows,
        "auc": auc,
        "peak_rss_mib": peak_rss_mib(),
    }


def run_minimal(args: argparse.Namespace) -> dict[str, float]:
    """dinctl's DIN in a bare Adam loop over `iter_batches` (model + optimiser cost only)."""
    import torch
    import torch.nn.functional as F

    from dinctl.data.batching import SplitTensors, WindowGatherer, iter_batches
    from dinctl.data.store import load_dataset
    from dinctl.models import ModelConfig, build_model

    torch.manual_seed(args.seed)
    ds = load_dataset(args.data)
    gatherer = WindowGatherer(ds, max_len=args.max_len)
    train = SplitTensors(ds.split("train"))
    cfg = ModelConfig(
        model="din",
        n_users=ds.n_users,
        n_items=ds.n_items,
        n_cates=ds.n_cates,
        emb_dim=args.emb_dim,
        act=args.act,
    )
    model = build_model(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, fused=args.fused)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(args.seed))
    model.train()
    t0, c0 = time.perf_counter(), time.process_time()
    for batch in iter_batches(train, gatherer, args.batch_size, order=order):
        logits = model(batch).logits  # (B,)
        loss = F.binary_cross_entropy_with_logits(logits, batch.label)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    auc = test_auc(model, ds, args.max_len)
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "rows": len(train),
        "auc": auc,
        "peak_rss_mib": peak_rss_mib(),
    }


def padded_inputs(ds, split_name: str, max_len: int) -> tuple[dict[str, np.ndarray], np.ndarray]:  # type: ignore[no-untyped-def]
    """DeepCTR-Torch's input (histories materialised, padded to max_len) and the labels."""
    from bench_accuracy import padded_inputs as deepctr_inputs

    return deepctr_inputs(ds, split_name, max_len), ds.split(split_name).label


def deepctr_din(args: argparse.Namespace, ds):  # type: ignore[no-untyped-def]
    """DeepCTR-Torch's DIN at the Amazon configuration, compiled with Adam and BCE."""
    import torch
    from deepctr_torch.inputs import SparseFeat, VarLenSparseFeat
    from deepctr_torch.models import DIN

    d = args.emb_dim
    columns = [
        SparseFeat("item", ds.n_items + 1, embedding_dim=d),
        SparseFeat("cate", ds.n_cates + 1, embedding_dim=d),
        VarLenSparseFeat(
            SparseFeat("hist_item", ds.n_items + 1, embedding_dim=d, embedding_name="item"),
            maxlen=args.max_len,
            length_name="seq_length",
        ),
        VarLenSparseFeat(
            SparseFeat("hist_cate", ds.n_cates + 1, embedding_dim=d, embedding_name="cate"),
            maxlen=args.max_len,
            length_name="seq_length",
        ),
    ]
    act = "prelu" if args.act == "prelu" else "Dice"
    model = DIN(
        columns,
        ["item", "cate"],
        dnn_hidden_units=(200, 80),
        dnn_activation="prelu",  # its DNN cannot take Dice on 2-D input
        att_hidden_size=(80, 40),
        att_activation=act,
        l2_reg_embedding=0.0,
        init_std=0.01,
        seed=args.seed,
        device="cpu",
    )
    model.compile(torch.optim.Adam(model.parameters(), lr=args.lr), "binary_crossentropy")
    return model


def run_deepctr(args: argparse.Namespace) -> dict[str, float]:
    """One epoch of DeepCTR-Torch's DIN through its own `fit`, same rows and configuration."""
    import torch

    from dinctl.data.store import load_dataset
    from dinctl.metrics import auc_score

    torch.manual_seed(args.seed)
    ds = load_dataset(args.data)
    x, y = padded_inputs(ds, "train", args.max_len)
    x_test, y_test = padded_inputs(ds, "test", args.max_len)
    model = deepctr_din(args, ds)
    # the shuffle order is DeepCTR's own DataLoader's (seeded above); same rows, same epoch
    t0, c0 = time.perf_counter(), time.process_time()
    model.fit(x, y, batch_size=args.batch_size, epochs=1, verbose=0, shuffle=True)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    scores = model.predict(x_test, batch_size=4096).reshape(-1)
    auc = auc_score(y_test, scores)
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "rows": len(y),
        "auc": auc,
        "peak_rss_mib": peak_rss_mib(),
    }


# --- whole processes ----------------------------------------------------------------------------


def test_metrics(ds, prob: np.ndarray) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Global and user-weighted (Eq. 10) AUC of test-split scores in file order."""
    from dinctl.metrics import auc_score, user_weighted_auc_score

    test = ds.split("test")
    return {
        "auc": auc_score(test.label, prob),
        "user_weighted_auc": user_weighted_auc_score(test.label, prob, test.user),
    }


def run_deepctr_whole(args: argparse.Namespace) -> dict[str, float]:
    """DeepCTR-Torch as its user runs it: load the rows, pad them, `fit` --epochs with the valid
    split predicted after each epoch. The clock stops when `fit` returns (`trained_at`); the test
    split is scored after that, untimed."""
    import torch

    from dinctl.data.store import load_dataset

    torch.manual_seed(args.seed)
    ds = load_dataset(args.data)
    x, y = padded_inputs(ds, "train", args.max_len)
    valid = padded_inputs(ds, "valid", args.max_len)
    model = deepctr_din(args, ds)
    model.fit(
        x,
        y,
        batch_size=args.batch_size,
        epochs=args.epochs,
        verbose=0,
        shuffle=True,
        validation_data=valid,
    )
    trained_at, cpu = time.time(), time.process_time()
    x_test, _ = padded_inputs(ds, "test", args.max_len)
    prob = model.predict(x_test, batch_size=4096).reshape(-1)
    return {"trained_at": trained_at, "cpu_seconds": cpu, "rows": len(y), **test_metrics(ds, prob)}


def run_score(args: argparse.Namespace) -> dict[str, float]:
    """Test metrics of a `dinctl train` run folder's best.pt (untimed)."""
    from dinctl.data.store import load_dataset
    from dinctl.inference import open_run
    from dinctl.training.predict import score_split

    ds = load_dataset(args.data)
    model = open_run(args.run_dir, dataset=ds).model
    prob = score_split(model, ds, "test", args.max_len, 4096, "cpu")
    return test_metrics(ds, prob)


def spawn(cmd: list[str], log: Path) -> dict[str, float]:
    """Run `cmd` to the end; its start time, wall seconds, CPU seconds and peak RSS (wait4)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    with open(log, "w") as sink:
        start, t0 = time.time(), time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    if code != 0:
        print(log.read_text()[-4000:], file=sys.stderr)
        raise SystemExit(f"{cmd[:4]} failed with exit code {code} (log: {log})")
    return {
        "start": start,
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "peak_rss_mib": usage.ru_maxrss / 1024,
    }


def result_of(log: Path) -> dict[str, float]:
    lines = [ln for ln in log.read_text().splitlines() if ln.startswith("RESULT ")]
    return json.loads(lines[-1][len("RESULT ") :])


def whole_ours(
    args: argparse.Namespace, data: Path, batch: int, amp: bool = False
) -> dict[str, float]:
    """`dinctl train` as a process, start to exit (imports, load, epochs, validation, writes)."""
    tag = f"whole_ours{'_amp' if amp else ''}_b{batch}"
    run_dir = OUT / tag
    shutil.rmtree(run_dir, ignore_errors=True)
    flags = {
        "--data": data,
        "--model": "din",
        "--act": args.act,
        "--optimizer": "adam",
        "--lr": args.lr,
        "--batch-size": batch,
        "--epochs": args.epochs,
        "--patience": 0,
        "--emb-dim": args.emb_dim,
        "--max-len": args.max_len,
        "--device": "cpu",
        "--seed": args.seed,
        "--threads": args.threads,
        "--out": run_dir,
    }
    cmd = [sys.executable, "-m", "dinctl", "train", *(str(x) for kv in flags.items() for x in kv)]
    cmd += ["--json"] + (["--amp"] if amp else [])
    r = spawn(cmd, OUT / f"{tag}.log")
    score = OUT / f"{tag}_score.log"
    spawn([*worker_cmd(args, "score", data), "--run-dir", str(run_dir)], score)
    rows = json.loads((data / "meta.json").read_text())["counts"]["train"]
    return {**r, "samples": rows * args.epochs, **result_of(score)}


def whole_deepctr(args: argparse.Namespace, data: Path, batch: int) -> dict[str, float]:
    """DeepCTR-Torch's process from its start until `fit` returns."""
    log = OUT / f"whole_deepctr_b{batch}.log"
    r = spawn([*worker_cmd(args, "deepctr-whole", data), "--batch-size", str(batch)], log)
    res = result_of(log)
    wall = res["trained_at"] - r["start"]
    return {
        **r,
        **res,
        "wall": wall,
        "cpu": res["cpu_seconds"],
        "samples": res["rows"] * args.epochs,
    }


def main_whole(args: argparse.Namespace) -> None:
    """Both trainers as whole processes on the same rows (with a valid split), per batch size."""
    data = OUT / f"bench_train_amazon_u{args.users}_valid"
    if not (data / "meta.json").exists():
        make_dataset(data, args.users, valid=True)
    counts = json.loads((data / "meta.json").read_text())["counts"]
    print(
        f"whole processes, synthetic Amazon shape: {args.users:,} users, {counts['train']:,} train "
        f"/ {counts['valid']:,} valid / {counts['test']:,} test rows; {args.epochs} epochs with "
        f"validation; DIN {args.act}, emb {args.emb_dim}+{args.emb_dim}, max_len {args.max_len}, "
        f"Adam lr {args.lr}, {args.threads} threads"
    )
    runs: dict[str, Callable[[argparse.Namespace, Path, int], dict[str, float]]] = {
        "ours": whole_ours,
        "ours-amp": lambda a, d, b: whole_ours(a, d, b, amp=True),
        "deepctr": whole_deepctr,
    }
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        got = {}
        for which in args.runs.split(","):
            r = got[which] = runs[which](args, data, batch)
            print(
                f"batch {batch:5d} {which:8s} {r['samples'] / r['wall']:9,.0f} samples/s  "
                f"{r['wall']:7.1f} s wall  {r['cpu']:7.1f} CPU-s  test AUC {r['auc']:.4f}  "
                f"user-weighted {r['user_weighted_auc']:.4f}  "
                f"peak RSS {r['peak_rss_mib']:,.0f} MiB",
                flush=True,
            )
        for name in (n for n in ("ours", "ours-amp") if n in got and "deepctr" in got):
            ours, theirs = got[name], got["deepctr"]
            print(
                f"batch {batch:5d} {name} speed-up {theirs['wall'] / ours['wall']:.1f}x "
                f"wall-clock, {theirs['cpu'] / ours['cpu']:.1f}x per CPU-second; test AUC "
                f"{ours['auc'] - theirs['auc']:+.4f}, user-weighted "
                f"{ours['user_weighted_auc'] - theirs['user_weighted_auc']:+.4f}",
                flush=True,
            )


# --- driver -------------------------------------------------------------------------------------


def worker_cmd(args: argparse.Namespace, which: str, data: Path) -> list[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", which, "--data", str(data)]
    for flag in ("act", "lr", "batch_size", "max_len", "emb_dim", "seed", "threads", "epochs"):
        cmd += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    return cmd + (["--fused"] if args.fused else [])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=8_000)
    ap.add_argument("--act", choices=("prelu", "dice"), default="prelu")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--max-len", type=int, default=100)
    ap.add_argument("--emb-dim", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--runs",
        default="ours,deepctr",
        help="comma list of: ours (dinctl.training.loop), minimal (bare Adam loop), deepctr; "
        "with --whole: ours (`dinctl train`), ours-amp (`dinctl train --amp`), deepctr",
    )
    ap.add_argument("--fused", action="store_true", help="minimal: Adam(fused=True)")
    ap.add_argument(
        "--whole",
        action="store_true",
        help="time `dinctl train` and DeepCTR-Torch as whole processes (runs: ours,deepctr)",
    )
    ap.add_argument("--batch-sizes", default="256,1024", help="--whole: comma list")
    ap.add_argument("--epochs", type=int, default=None, help="--whole: 3; else 1")
    ap.add_argument("--worker", choices=tuple(WORKERS), help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--run-dir", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.epochs is None:
        args.epochs = 3 if args.whole or args.worker == "deepctr-whole" else 1

    if args.worker is not None:
        import torch

        torch.set_num_threads(args.threads)
        result = WORKERS[args.worker](args)
        print("RESULT " + json.dumps(result), flush=True)
        return
    OUT.mkdir(exist_ok=True)
    if args.whole:
        main_whole(args)
        return

    data = OUT / f"bench_train_amazon_u{args.users}"
    if not (data / "meta.json").exists():
        t = time.perf_counter()
        make_dataset(data, args.users)
        print(f"wrote {data} in {time.perf_counter() - t:.1f}s", file=sys.stderr)
    meta = json.loads((data / "meta.json").read_text())
    print(
        f"synthetic Amazon shape: {args.users:,} users, {N_ITEMS:,} items, {N_CATES} categories, "
        f"{meta['counts']['train']:,} train rows, {meta['counts']['test']:,} test rows; "
        f"emb {args.emb_dim}+{args.emb_dim}, batch {args.batch_size}, max_len {args.max_len}, "
        f"act {args.act}, Adam lr {args.lr}, {args.threads} threads"
    )
    results = {}
    for which in args.runs.split(","):
        proc = subprocess.run(worker_cmd(args, which, data), capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
            raise SystemExit(f"{which} worker failed with exit code {proc.returncode}")
        r = json.loads(lines[-1][len("RESULT ") :])
        results[which] = r
        print(
            f"{which:8s} {r['rows'] / r['seconds']:10,.0f} samples/s  epoch {r['seconds']:8.1f} s  "
            f"({r['rows'] / r['cpu_seconds']:,.0f} samples per CPU-second)  "
            f"test AUC {r['auc']:.4f}  peak RSS {r['peak_rss_mib']:,.0f} MiB"
        )
        if "loop_epoch_seconds" in r:
            print(
                f"{'':8s} {r['rows'] / r['loop_epoch_seconds']:10,.0f} samples/s by the epoch time "
                f"in log.jsonl ({r['loop_epoch_seconds']:.1f} s: no dataset load, no checkpoint.pt)"
            )
    if "ours" in results and "deepctr" in results:
        ours, theirs = results["ours"], results["deepctr"]
        ratio = (ours["rows"] / ours["seconds"]) / (theirs["rows"] / theirs["seconds"])
        cpu_ratio = theirs["cpu_seconds"] / ours["cpu_seconds"] * ours["rows"] / theirs["rows"]
        print(
            f"speed-up {ratio:.1f}x wall-clock, {cpu_ratio:.1f}x per CPU-second; "
            f"AUC difference {ours['auc'] - theirs['auc']:+.4f}"
        )


WORKERS: dict[str, Callable[[argparse.Namespace], dict[str, float]]] = {
    "ours": run_ours,
    "minimal": run_minimal,
    "deepctr": run_deepctr,
    "deepctr-whole": run_deepctr_whole,
    "score": run_score,
}

if __name__ == "__main__":
    main()
