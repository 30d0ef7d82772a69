"""Test accuracy of DIN on identical rows of a real dataset: dinctl against two peers, paired seeds.

The data is made once by `dinctl preprocess` (MovieLens from its release .zip, or an
Amazon-format raw folder), and exactly those train / valid / test rows go to every trainer.
Each compared setting is an *arm* (`--arm 'LABEL=SIDE [ARG ...]'`, repeatable; the first is the
reference of the paired differences). Sides:

- `train`: `dinctl train` as a user runs it (its recipe, early stopping, best.pt), ARGS are its
  flags (`--act dice --reg mba`); the figure is best.pt scored on test.
- `dinctl`: dinctl's DIN in a fixed-epoch loop with the trainer's optimiser set-up (lazy Adam
  on the tables, mean BCE); DIN with `act = dice` and the other `ModelConfig` defaults, ARGS
  override fields (`mlp_act=same` for Dice in the tower too).
- `deepctr`: DeepCTR-Torch 0.3.0's DIN through its own `fit`; ARGS are its DIN arguments
  (`att_activation=prelu`). Its defaults here: Dice in the activation unit, ReLU tower,
  embeddings and DNN weights N(0, 1e-4), `l2_reg_embedding = 0`.
- `rechub`: torch-rechub 0.9.0's DIN through its `CTRTrainer`; ARGS are `mlp.KEY=VALUE` /
  `attention.KEY=VALUE` of its MLP parameters (`attention.activation=prelu`). Its DIN: a Dice
  tower with BatchNorm before each activation, one Dice activation unit per behaviour field,
  embeddings N(0, 1e-4), padding id 0.

The fixed-epoch sides share: emb 64 + 64, attention 80 → 40, MLP 200 → 80, max_len 100 (the
peers get histories padded to the longest history of the data when that is shorter; most
recent behaviours, valid slots first), Adam lr 1e-3, batch 256, `--epochs` epochs, no
regularisation; they score valid and test after every epoch and the figure is the test score at
the epoch with the best validation user-weighted AUC (the last epoch's is shown beside it).
The summary gives each arm's test user-weighted AUC (Eq. 10) and global AUC, mean ± std over
the seeds, and its paired difference from the reference arm (mean over seeds ± standard error,
seeds ahead). Each training runs in its own subprocess with `--threads` intra-op threads
(default 1), `--jobs` at a time; `--cache DIR` keeps every finished result, keyed by the dataset
checksum, side, arguments, seed and settings, so a rerun or a wider comparison reuses them.

    pip install -e '.[bench]'     # deepctr-torch 0.3.0, torch-rechub 0.9.0 (and requests)
    python benchmarks/bench_accuracy.py --raw ../shared/data/ml-latest-small.zip --seeds 1,2,3 \
        --arm 'dice=train --act dice' --arm 'deepctr=deepctr' --arm 'rechub=rechub'
    python benchmarks/bench_accuracy.py --amazon ../shared/data/amazon-mi \
        --category Musical_Instruments --seeds 1,2,3,4,5 --arm 'dice=train --act dice' ...

Without `--arm`, `--sides` (default `dinctl,deepctr`) makes one arm per side with the
`--dinctl` / `--deepctr` / `--rechub` KEY=VALUE pairs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
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


def pad_length(ds: Any, max_len: int) -> int:
    """The peers' padded history length: max_len, or the longest history of the data when
    shorter (the same model output for DeepCTR-Torch, which masks by length; far less work)."""
    from dinctl.data.batching import SplitTensors

    longest = max(int(SplitTensors(ds.split(n)).hist_len.max()) for n in ("train", "valid", "test"))
    return max(1, min(max_len, longest))


def padded_inputs(ds: Any, name: str, max_len: int) -> dict[str, np.ndarray]:
    """A peer's input for a split: histories padded to `pad_length`, valid slots first."""
    from dinctl.data.batching import SplitTensors, WindowGatherer, iter_batches

    max_len = pad_length(ds, max_len)
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
            maxlen=pad_length(ds, args.max_len),
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


# --- torch-rechub worker -------------------------------------------------------------------------


def run_rechub(args: argparse.Namespace) -> dict[str, Any]:
    """torch-rechub's DIN trained by its own `CTRTrainer`, one epoch per call, same rows and
    settings. Its DIN needs one non-behaviour feature: a constant one (a learned bias vector
    in the tower's input). Its defaults: a Dice tower (fixed) with BatchNorm before every
    activation, one activation unit per behaviour field, embeddings N(0, 1e-4)."""
    import os

    os.environ.setdefault("TQDM_DISABLE", "1")
    import torch
    from torch.utils.data import DataLoader
    from torch_rechub.basic.features import SequenceFeature, SparseFeature
    from torch_rechub.models.ranking import DIN
    from torch_rechub.trainers import CTRTrainer
    from torch_rechub.utils.data import TorchDataset

    from dinctl.data.store import load_dataset

    ds = load_dataset(args.data)
    x = {name: padded_inputs(ds, name, args.max_len) for name in ("train", "valid", "test")}
    for rows in x.values():
        rows.pop("seq_length")  # padding id 0 is its mask
        rows["const"] = np.zeros(len(rows["item"]), dtype=np.int64)
    d, n = args.emb_dim, {"item": ds.n_items + 1, "cate": ds.n_cates + 1}
    target = [SparseFeature(f, n[f], embed_dim=d, padding_idx=0) for f in ("item", "cate")]
    history = [
        SequenceFeature(
            f"hist_{f}", n[f], embed_dim=d, pooling="concat", shared_with=f, padding_idx=0
        )
        for f in ("item", "cate")
    ]
    params: dict[str, Any] = {"mlp": {"dims": [200, 80]}, "attention": {"dims": [80, 40]}}
    for key, value in parse_overrides(args.rechub).items():
        part, _, name = key.partition(".")  # e.g. attention.activation=prelu, mlp.dropout=0.2
        params.setdefault(part, {})[name] = value
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    model = DIN(
        [SparseFeature("const", 1, embed_dim=d)],
        history,
        target,
        mlp_params=params["mlp"],
        attention_mlp_params=params["attention"],
    )
    trainer = CTRTrainer(
        model,
        optimizer_params={"lr": args.lr, "weight_decay": 0.0},
        n_epoch=args.epochs,
        device="cpu",
    )

    def loader(name: str, shuffle: bool, batch_size: int) -> Any:
        y, _ = split_arrays(ds, name)
        tensors = {k: torch.from_numpy(v) for k, v in x[name].items()}
        return DataLoader(
            TorchDataset(tensors, torch.from_numpy(y)), batch_size=batch_size, shuffle=shuffle
        )

    train_rows = loader("train", True, args.batch_size)

    def predict(name: str) -> np.ndarray:
        return np.asarray(trainer.predict(model, loader(name, False, 4096)), dtype=np.float64)

    epochs, seconds = [], 0.0
    for _ in range(args.epochs):
        t0 = time.perf_counter()
        trainer.train_one_epoch(train_rows)
        seconds += time.perf_counter() - t0
        epochs.append(evaluate_epoch(ds, predict))
    return {"epochs": epochs, "seconds": seconds, "config": {k: str(v) for k, v in params.items()}}


# --- dinctl train (the CLI as a user runs it) ----------------------------------------------------


def run_train(args: argparse.Namespace) -> dict[str, Any]:
    """`dinctl train --data … --seed S --threads T --json <arm flags>` in a subprocess, as a
    user runs it (recipe defaults, early stopping, best.pt), then best.pt scored on test."""
    from dinctl.evaluation import evaluate_run

    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "dinctl", "train", "--data", str(args.data)]
        cmd += ["--seed", str(args.seed), "--threads", str(args.threads), "--out", str(out)]
        cmd += ["--json", *args.arm_args]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"dinctl train failed: {proc.stderr.strip()[-2000:]}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        test = evaluate_run(out, "test")
        config = json.loads((out / "config.json").read_text())
    valid = {k.removeprefix("valid_"): float(v) for k, v in result["best_valid"].items()}
    return {
        "best": {
            "valid": valid,
            "test": {"global_auc": test.global_auc, "user_weighted_auc": test.user_weighted_auc},
        },
        "best_epoch": result["best_epoch"],
        "epochs_run": result["epochs_run"],
        "seconds": seconds,
        "config": config,
    }


# --- arms, the cache and the driver --------------------------------------------------------------

SIDES = ("train", "dinctl", "deepctr", "rechub")
WORKERS = {"train": run_train, "dinctl": run_dinctl, "deepctr": run_deepctr, "rechub": run_rechub}


def parse_arm(text: str) -> tuple[str, str, list[str]]:
    """`LABEL=SIDE [ARG ...]` → (label, side, args): `train` takes `dinctl train` flags, the
    other sides KEY=VALUE overrides (a ModelConfig field, or a peer's DIN argument)."""
    label, sep, rest = text.partition("=")
    words = shlex.split(rest)
    if not sep or not label or not words or words[0] not in SIDES:
        raise SystemExit(f"arm {text!r}: expected LABEL=SIDE [ARG ...], SIDE one of {SIDES}")
    return label, words[0], words[1:]


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


def _dinctl_defaults() -> str:
    """dinctl's default settings (the config's, the recipes', the λs), hashed: a cached `train`
    result made under other defaults (the same flags meant another model then) is not reused."""
    from dataclasses import asdict

    from dinctl.training.config import RECIPE_DEFAULTS, REG_LAMBDA_DEFAULTS, TrainConfig

    defaults = [asdict(TrainConfig()), RECIPE_DEFAULTS, REG_LAMBDA_DEFAULTS]
    text = json.dumps(defaults, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def cache_key(
    args: argparse.Namespace, side: str, arm_args: list[str], seed: int, data: Path
) -> str:
    """What decides a worker's result: the rows (dataset checksum), the side, its arguments,
    the seed and, for the fixed-epoch sides, the shared settings."""
    meta = json.loads((data / "meta.json").read_text())
    key: dict[str, Any] = {"data": meta["checksum"], "side": side, "args": arm_args, "seed": seed}
    key["threads"] = args.threads
    key["pad"] = "longest"  # peers pad to min(max_len, the longest history)
    if side in ("train", "dinctl"):
        key["defaults"] = _dinctl_defaults()  # a changed default is another run
    if side != "train":
        for flag in ("epochs", "lr", "batch_size", "max_len", "emb_dim", "dense_adam"):
            key[flag] = getattr(args, flag)
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]


def worker(
    args: argparse.Namespace, side: str, arm_args: list[str], seed: int, data: Path
) -> dict[str, Any]:
    """One training (a subprocess), or its cached result from `--cache`."""
    cached = None
    if args.cache is not None:
        cached = args.cache / f"{side}-{cache_key(args, side, arm_args, seed, data)}.json"
        if cached.is_file():
            return dict(json.loads(cached.read_text()))
    if args.cached_only:
        raise SystemExit(f"--cached-only: no cached result for {side} {arm_args} seed {seed}")
    cmd = [sys.executable, __file__, "--worker", side, "--data", str(data), "--seed", str(seed)]
    for flag in ("epochs", "lr", "batch_size", "max_len", "emb_dim", "threads"):
        cmd += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    cmd += ["--arm-args", json.dumps(arm_args)]
    if args.dense_adam:
        cmd.append("--dense-adam")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
        raise SystemExit(f"{side} worker (seed {seed}) failed with exit code {proc.returncode}")
    result = dict(json.loads(lines[-1][len("RESULT ") :]))
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp")
        tmp.write_text(json.dumps(result))
        tmp.replace(cached)
    return result


def best_epoch(result: dict[str, Any]) -> int:
    """Index of the epoch with the best validation user-weighted AUC (first on ties)."""
    if "best" in result:
        return int(result["best_epoch"]) - 1
    valid = [e["valid"]["user_weighted_auc"] for e in result["epochs"]]
    return int(np.argmax(valid))


def test_scores(result: dict[str, Any], pick: str) -> dict[str, float]:
    """Test scores at the epoch validation picks (`best`; `dinctl train`'s best.pt) or at the
    last epoch (`last`; fixed-epoch sides only, else the best)."""
    if "best" in result:
        return dict(result["best"]["test"])
    epoch = result["epochs"][-1] if pick == "last" else result["epochs"][best_epoch(result)]
    return dict(epoch["test"])


def mean_std(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.4f} ± {sd:.4f}"


def paired(ref: list[float], other: list[float]) -> str:
    """Mean paired difference other − ref over seeds ± its standard error, and the wins."""
    diffs = [b - a for a, b in zip(ref, other, strict=True)]
    se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else 0.0
    wins = sum(d > 0 for d in diffs)
    return f"{statistics.fmean(diffs):+.4f} ± {se:.4f} (SE; {wins}/{len(diffs)} seeds ahead)"


def summarise(arms: list[tuple[str, str, list[str]]], results: dict[str, list[Any]]) -> None:
    """Per arm: test AUC (user-weighted, Eq. 10) and global AUC, mean ± std over the seeds,
    at the validation-picked epoch (and the last one for fixed-epoch sides); then each arm's
    paired difference from the first arm."""
    ref = arms[0][0]
    print(
        f"\n| arm | side | seeds | test uAUC (Eq. 10), val-picked | global AUC | "
        f"uAUC − {ref} (paired ± SE) | gAUC − {ref} | last-epoch uAUC | best epochs | s/seed |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---|---:|")
    ref_rows = [test_scores(r, "best") for r in results[ref]]
    for label, side, _ in arms:
        rows = [test_scores(r, "best") for r in results[label]]
        u = [r["user_weighted_auc"] for r in rows]
        g = [r["global_auc"] for r in rows]
        last = (
            "–"
            if side == "train"
            else mean_std([test_scores(r, "last")["user_weighted_auc"] for r in results[label]])
        )
        du = paired([r["user_weighted_auc"] for r in ref_rows], u) if label != ref else "–"
        dg = paired([r["global_auc"] for r in ref_rows], g) if label != ref else "–"
        picked = ",".join(str(best_epoch(r) + 1) for r in results[label])
        secs = statistics.fmean(r["seconds"] for r in results[label])
        print(
            f"| {label} | {side} | {len(u)} | {mean_std(u)} | {mean_std(g)} | {du} | {dg} | "
            f"{last} | {picked} | {secs:.0f} |"
        )
    for label, _, _ in arms:
        per = ", ".join(
            f"{s['user_weighted_auc']:.4f}/{s['global_auc']:.4f}"
            for s in (test_scores(r, "best") for r in results[label])
        )
        print(f"  {label} per seed (uAUC/gAUC): {per}")


def arms_from_args(args: argparse.Namespace) -> list[tuple[str, str, list[str]]]:
    """`--arm` specs, else one arm per `--sides` entry with the `--dinctl`/`--deepctr` pairs."""
    arms = [parse_arm(a) for a in args.arm]
    if not arms:
        extra = {"dinctl": args.dinctl, "deepctr": args.deepctr, "rechub": args.rechub}
        for side in (s for s in args.sides.split(",") if s):
            if side not in SIDES:
                raise SystemExit(f"unknown side {side!r}; expected one of {SIDES}")
            arms.append((side, side, list(extra.get(side, []))))
    labels = [a[0] for a in arms]
    if len(set(labels)) != len(labels):
        raise SystemExit(f"arm labels must differ, got {labels}")
    return arms


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--raw", type=Path, help="MovieLens release .zip or folder")
    src.add_argument("--amazon", type=Path, help="Amazon-format raw folder (reviews + meta)")
    src.add_argument("--data", type=Path, help="an existing `dinctl preprocess` output folder")
    ap.add_argument("--category", default="", help="--amazon: the release category")
    ap.add_argument("--data-seed", type=int, default=1234, help="seed of `dinctl preprocess`")
    ap.add_argument("--seeds", default="1,2,3", help="comma list of training seeds")
    ap.add_argument("--sides", default="dinctl,deepctr", help=f"comma list of {SIDES}")
    ap.add_argument(
        "--arm",
        action="append",
        default=[],
        metavar="'LABEL=SIDE [ARG ...]'",
        help="a compared setting (repeatable; the first is the reference)",
    )
    ap.add_argument("--epochs", type=int, default=3, help="fixed-epoch sides' epochs")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--max-len", type=int, default=100)
    ap.add_argument("--emb-dim", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=1, help="trainings run side by side")
    ap.add_argument("--dinctl", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--deepctr", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--rechub", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--dense-adam", action="store_true", help="dinctl: dense Adam on the tables")
    ap.add_argument("--cache", type=Path, help="folder of finished workers' results (reused)")
    ap.add_argument("--cached-only", action="store_true", help="summarise --cache, train nothing")
    ap.add_argument("--json", type=Path, help="also write every per-epoch figure here")
    ap.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    ap.add_argument("--arm-args", default="[]", help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)
    return ap


def main() -> None:
    ap = build_parser()
    args = ap.parse_args()
    if args.worker is not None:
        import torch

        torch.set_num_threads(args.threads)
        args.arm_args = json.loads(args.arm_args)
        args.dinctl = args.deepctr = args.rechub = args.arm_args
        print("RESULT " + json.dumps(WORKERS[args.worker](args)), flush=True)
        return
    if args.raw is None and args.amazon is None and args.data is None:
        ap.error("one of --raw, --amazon, --data is required")
    seeds = [int(s) for s in args.seeds.split(",") if s]
    arms = arms_from_args(args)
    with tempfile.TemporaryDirectory(prefix="bench_accuracy_") as tmp:
        data = prepare_data(args, Path(tmp))
        meta = json.loads((data / "meta.json").read_text())
        counts = meta["counts"]["samples"] if "samples" in meta["counts"] else meta["counts"]
        print(
            f"{meta['dataset']} ({meta['protocol']}): rows {counts}; fixed-epoch sides: DIN emb "
            f"{args.emb_dim}+{args.emb_dim}, max_len {args.max_len}, Adam {args.lr}, batch "
            f"{args.batch_size}, {args.epochs} epochs; seeds {seeds}, {args.threads} thread(s)"
        )
        for label, side, arm_args in arms:
            print(f"  arm {label}: {side} {shlex.join(arm_args)}")
        results = run_all(args, arms, seeds, data)
    summarise(arms, results)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))


def run_all(
    args: argparse.Namespace, arms: list[tuple[str, str, list[str]]], seeds: list[int], data: Path
) -> dict[str, list[Any]]:
    """Every (arm, seed) worker, `--jobs` at a time; results in seed order per arm."""
    from concurrent.futures import ThreadPoolExecutor

    jobs = [(arm, seed) for seed in seeds for arm in arms]

    def one(job: tuple[tuple[str, str, list[str]], int]) -> dict[str, Any]:
        (label, side, arm_args), seed = job
        r = worker(args, side, arm_args, seed, data)
        last = test_scores(r, "last")
        print(
            f"  seed {seed} {label}: test user-weighted {last['user_weighted_auc']:.4f} global "
            f"{last['global_auc']:.4f} (picked/last epoch), best valid epoch "
            f"{best_epoch(r) + 1}, {r['seconds']:.1f} s",
            flush=True,
        )
        return r

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        done = list(pool.map(one, jobs))
    results: dict[str, list[Any]] = {label: [] for label, _, _ in arms}
    for ((label, _, _), _), r in zip(jobs, done, strict=True):
        results[label].append(r)
    return results


if __name__ == "__main__":
    main()
