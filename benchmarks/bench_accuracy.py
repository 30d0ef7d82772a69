"""Test accuracy of DIN: dinctl vs DeepCTR-Torch on identical rows of a real dataset, several seeds.

The data is made once by `dinctl preprocess` (MovieLens from its release .zip, or an
Amazon-format raw folder), and exactly those train / valid / test rows go to both trainers:
DeepCTR-Torch gets every history padded to max_len (the most recent max_len behaviours, oldest
first, valid slots first) with its length, as its DIN expects. Matched settings: DIN, emb
64 + 64, attention 80 → 40, MLP 200 → 80, max_len 100, Adam lr 1e-3, batch 256, the same
number of epochs, no regularisation. After every epoch both sides score the valid and test rows;
the summary gives test global AUC and user-weighted AUC (Eq. 10) at the last epoch and at the
epoch with the best validation user-weighted AUC, as mean ± std over the seeds, plus wall time.

    pip install -e '.[bench]'     # deepctr-torch 0.3.0 (and requests)
    python benchmarks/bench_accuracy.py --raw ../shared/data/ml-latest-small.zip --seeds 1,2,3
    python benchmarks/bench_accuracy.py --amazon DIR --category Electronics --seeds 1,2,3

dinctl's side is DIN with `act = dice` and the other `ModelConfig` defaults; `--dinctl KEY=VALUE`
(repeatable) overrides a field, e.g. Dice in the activation unit only with `--dinctl
mlp_act=prelu`, or the peers' layout with `--dinctl mlp_act=relu --dinctl dice_alpha_init=0
--dinctl linear_init=xavier --dinctl init_std=1e-4 --dense-adam`. `--deepctr KEY=VALUE` sets one
of DeepCTR-Torch's DIN arguments (e.g. `--deepctr att_activation=prelu`); its defaults here are
its DIN's own (Dice in the activation unit, ReLU tower, embeddings and DNN weights N(0, 1e-4))
with `l2_reg_embedding = 0` as on dinctl's side. Each training runs in its own subprocess with
`--threads` intra-op threads (default 1).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

# --- shared helpers -------------------------------------------------------------------------------


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` strings → dict; VALUE is read as JSON when it parses (numbers, lists,
    true/false), else kept as a string."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"override {pair!r}: expected KEY=VALUE")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def scores(y: np.ndarray, p: np.ndarray, user: np.ndarray) -> dict[str, float]:
    """Global AUC and user-weighted AUC (Eq. 10) of predictions `p`."""
    from dinctl.metrics import auc_score, user_weighted_auc_score

    p = np.asarray(p, dtype=np.float64)
    return {
        "global_auc": auc_score(y, p),
        "user_weighted_auc": user_weighted_auc_score(y, p, user),
    }


def split_arrays(ds: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    split = ds.split(name)
    return split.label.astype(np.float32), split.user.astype(np.int64)


# --- dinctl worker --------------------------------------------------------------------------------


def run_dinctl(args: argparse.Namespace) -> dict[str, Any]:
    """dinctl's DIN with the trainer's optimiser set-up (lazy Adam on the tables unless
    `--dense-adam`) and loss (mean BCE), in a loop that scores valid and test after each epoch."""
    import torch

    from dinctl.data.batching import SplitTensors, WindowGatherer, iter_batches
    from dinctl.data.store import load_dataset
    from dinctl.models import ModelConfig, build_model
    from dinctl.training.config import TrainConfig
    from dinctl.training.loop import bce_loss, make_optimizers

    ds = load_dataset(args.data)
    gatherer = WindowGatherer(ds, max_len=args.max_len)
    rows = {name: SplitTensors(ds.split(name)) for name in ("train", "valid", "test")}
    fields = {
        "model": "din",
        "n_users": ds.n_users,
        "n_items": ds.n_items,
        "n_cates": ds.n_cates,
        "emb_dim": args.emb_dim,
        "act": "dice",
        "attn_hidden": (80, 40),
        "mlp_hidden": (200, 80),
    }
    fields.update(parse_overrides(args.dinctl))
    torch.manual_seed(args.seed)
    model = build_model(ModelConfig(**fields))
    tcfg = TrainConfig(optimizer="adam", lr=args.lr, batch_size=args.batch_size)
    optimizers = make_optimizers(tcfg, model, sparse=not args.dense_adam)

    def predict(name: str) -> np.ndarray:
        model.eval()
        with torch.no_grad():
            out = [torch.sigmoid(model(b).logits) for b in iter_batches(rows[name], gatherer, 4096)]
        model.train()
        return torch.cat(out).numpy()

    epochs, seconds = [], 0.0
    for epoch in range(args.epochs):
        gen = torch.Generator().manual_seed(args.seed * 1000 + epoch)
        order = torch.randperm(len(rows["train"]), generator=gen)
        t0 = time.perf_counter()
        model.train()
        for batch in iter_batches(rows["train"], gatherer, args.batch_size, order=order):
            loss = bce_loss(model(batch).logits, batch.label)
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            for opt in optimizers:
                opt.step()
        seconds += time.perf_counter() - t0
        epochs.append(evaluate_epoch(ds, predict))
    return {"epochs": epochs, "seconds": seconds, "config": {k: str(v) for k, v in fields.items()}}


def evaluate_epoch(ds: Any, predict: Any) -> dict[str, dict[str, float]]:
    """Valid and test scores of the current model; `predict(name)` gives probabilities."""
    out = {}
    for name in ("valid", "test"):
        y, user = split_arrays(ds, name)
        out[name] = scores(y, predict(name), user)
    return out


# --- DeepCTR-Torch worker -------------------------------------------------------------------------


def padded_inputs(ds: Any, name: str, max_len: int) -> dict[str, np.ndarray]:
    """DeepCTR-Torch's input for a split: histories padded to max_len, valid slots first."""
    from dinctl.data.batching import SplitTensors, WindowGatherer, iter_batches

    rows = SplitTensors(ds.split(name))
    gatherer = WindowGatherer(ds, max_len=max_len)
    hist_item = np.zeros((len(rows), max_len), dtype=np.int64)
    hist_cate = np.zeros((len(rows), max_len), dtype=np.int64)
    lo = 0
    for batch in iter_batches(rows, gatherer, 65536):
        b, t = batch.hist_item.shape
        hist_item[lo : lo + b, :t] = batch.hist_item.numpy()
        hist_cate[lo : lo + b, :t] = batch.hist_cate.numpy()
        lo += b
    return {
        "item": rows.item.numpy(),
        "cate": rows.cate.numpy(),
        "hist_item": hist_item,
        "hist_cate": hist_cate,
        "seq_length": rows.hist_len.clamp(max=max_len).numpy(),
    }


def run_deepctr(args: argparse.Namespace) -> dict[str, Any]:
    """DeepCTR-Torch's DIN through its own `fit`, one epoch per call, same rows and settings."""
    import torch
    from deepctr_torch.inputs import SparseFeat, VarLenSparseFeat
    from deepctr_torch.models import DIN

    from dinctl.data.store import load_dataset

    ds = load_dataset(args.data)
    x = {name: padded_inputs(ds, name, args.max_len) for name in ("train", "valid", "test")}
    y_train, _ = split_arrays(ds, "train")
    d = args.emb_dim
    columns = [
        SparseFeat("item", ds.n_items + 1, embedding_dim=d),
        SparseFeat("cate", ds.n_cates + 1, embedding_dim=d),
    ] + [
        VarLenSparseFeat(
            SparseFeat(f"hist_{f}", n + 1, embedding_dim=d, embedding_name=f),
            maxlen=args.max_len,
            length_name="seq_length",
        )
        for f, n in (("item", ds.n_items), ("cate", ds.n_cates))
    ]
    kwargs: dict[str, Any] = {
        "dnn_hidden_units": (200, 80),
        "dnn_activation": "relu",  # its DIN's default; its DNN cannot take Dice on 2-D input
        "att_hidden_size": (80, 40),
        "att_activation": "Dice",
        "l2_reg_embedding": 0.0,
    }
    kwargs.update(parse_overrides(args.deepctr))
    torch.manual_seed(args.seed)
    model = DIN(columns, ["item", "cate"], seed=args.seed, device="cpu", **kwargs)
    model.compile(torch.optim.Adam(model.parameters(), lr=args.lr), "binary_crossentropy")

    def predict(name: str) -> np.ndarray:
        return model.predict(x[name], batch_size=4096).reshape(-1)

    epochs, seconds = [], 0.0
    for _ in range(args.epochs):
        t0 = time.perf_counter()
        model.fit(x["train"], y_train, batch_size=args.batch_size, epochs=1, verbose=0)
        seconds += time.perf_counter() - t0
        epochs.append(evaluate_epoch(ds, predict))
    return {"epochs": epochs, "seconds": seconds, "config": {k: str(v) for k, v in kwargs.items()}}


# --- driver ---------------------------------------------------------------------------------------


def prepare_data(args: argparse.Namespace, tmp: Path) -> Path:
    """A dinctl dataset folder: `--data` as is, or `dinctl preprocess` into `tmp`."""
    if args.data is not None:
        return Path(args.data)
    out = tmp / "data"
    if args.raw is not None:
        cmd = ["movielens", "--raw", str(args.raw)]
    else:
        cmd = ["amazon", "--raw", str(args.amazon)]
        if args.category:
            cmd += ["--category", args.category]
    full = [sys.executable, "-m", "dinctl", "preprocess", *cmd, "--out", str(out)]
    subprocess.run([*full, "--seed", str(args.data_seed)], check=True, capture_output=True)
    return out


def worker(args: argparse.Namespace, side: str, seed: int, data: Path) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", side, "--data", str(data), "--seed", str(seed)]
    for flag in ("epochs", "lr", "batch_size", "max_len", "emb_dim", "threads"):
        cmd += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    for pair in args.dinctl:
        cmd += ["--dinctl", pair]
    for pair in args.deepctr:
        cmd += ["--deepctr", pair]
    if args.dense_adam:
        cmd.append("--dense-adam")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
        raise SystemExit(f"{side} worker (seed {seed}) failed with exit code {proc.returncode}")
    return dict(json.loads(lines[-1][len("RESULT ") :]))


def best_epoch(result: dict[str, Any]) -> int:
    """Index of the epoch with the best validation user-weighted AUC (first on ties)."""
    valid = [e["valid"]["user_weighted_auc"] for e in result["epochs"]]
    return int(np.argmax(valid))


def mean_std(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.4f} ± {sd:.4f}"


def summarise(side: str, results: list[dict[str, Any]]) -> None:
    """Per-seed lines and mean ± std for the last and the best-validation epoch."""
    for pick in ("last", "best valid"):
        rows = []
        for r in results:
            e = r["epochs"][-1] if pick == "last" else r["epochs"][best_epoch(r)]
            rows.append(e["test"])
        g = [r["global_auc"] for r in rows]
        u = [r["user_weighted_auc"] for r in rows]
        print(
            f"{side:8s} {pick:10s} test AUC (user-weighted, Eq. 10) {mean_std(u)}  "
            f"global AUC {mean_std(g)}  per seed: "
            + ", ".join(f"{a:.4f}/{b:.4f}" for a, b in zip(u, g, strict=True))
        )
    secs = [r["seconds"] for r in results]
    print(f"{side:8s} training wall time {statistics.fmean(secs):.1f} s per seed (mean)")


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--raw", type=Path, help="MovieLens release .zip or folder")
    src.add_argument("--amazon", type=Path, help="Amazon-format raw folder (reviews + meta)")
    src.add_argument("--data", type=Path, help="an existing `dinctl preprocess` output folder")
    ap.add_argument("--category", default="", help="--amazon: the release category")
    ap.add_argument("--data-seed", type=int, default=1234, help="seed of `dinctl preprocess`")
    ap.add_argument("--seeds", default="1,2,3", help="comma list of training seeds")
    ap.add_argument("--sides", default="dinctl,deepctr", help="comma list: dinctl, deepctr")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--max-len", type=int, default=100)
    ap.add_argument("--emb-dim", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dinctl", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--deepctr", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--dense-adam", action="store_true", help="dinctl: dense Adam on the tables")
    ap.add_argument("--json", type=Path, help="also write every per-epoch figure here")
    ap.add_argument("--worker", choices=("dinctl", "deepctr"), help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker is not None:
        import torch

        torch.set_num_threads(args.threads)
        run = run_dinctl if args.worker == "dinctl" else run_deepctr
        print("RESULT " + json.dumps(run(args)), flush=True)
        return
    if args.raw is None and args.amazon is None and args.data is None:
        ap.error("one of --raw, --amazon, --data is required")

    seeds = [int(s) for s in args.seeds.split(",") if s]
    sides = [s for s in args.sides.split(",") if s]
    with tempfile.TemporaryDirectory(prefix="bench_accuracy_") as tmp:
        data = prepare_data(args, Path(tmp))
        meta = json.loads((data / "meta.json").read_text())
        counts = meta["counts"]["samples"] if "samples" in meta["counts"] else meta["counts"]
        print(
            f"{meta['dataset']} ({meta['protocol']}): rows {counts}; DIN emb "
            f"{args.emb_dim}+{args.emb_dim}, max_len {args.max_len}, Adam {args.lr}, batch "
            f"{args.batch_size}, {args.epochs} epochs, seeds {seeds}, {args.threads} thread(s); "
            f"dinctl overrides {args.dinctl or 'none'}, deepctr overrides {args.deepctr or 'none'}"
        )
        results: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
        for seed in seeds:
            for side in sides:
                r = worker(args, side, seed, data)
                results[side].append(r)
                last = r["epochs"][-1]["test"]
                print(
                    f"  seed {seed} {side}: test user-weighted {last['user_weighted_auc']:.4f} "
                    f"global {last['global_auc']:.4f} (last epoch), best valid epoch "
                    f"{best_epoch(r) + 1}, {r['seconds']:.1f} s",
                    flush=True,
                )
    for side in sides:
        summarise(side, results[side])
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
