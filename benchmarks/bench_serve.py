"""Serving speed: the in-process scorer, HTTP on loopback, and `dinctl predict` on a big file.

DIN at the paper's size (64 + 64 embeddings, attention 80-40, MLP 200-80), random weights (speed
does not depend on them), Amazon-shaped vocabulary (64,000 items, 800 categories), requests with
a 100-behaviour history. Measured in the same run:
  * in-process: p50/p99 of vocab lookup + one forward, for 100, 200 and 1,000 candidates, per
    engine (eager fp32, eager bf16, ONNX Runtime), against the naive eager forward (the training
    forward with one row per candidate, the history repeated C times);
  * HTTP: `dinctl serve` in a subprocess, p50/p99 per request from one keep-alive client, and
    requests/s under 8 concurrent clients (200 candidates), without and with dynamic batching;
  * `dinctl predict` rows/s and peak RSS (/usr/bin/time) on a seeded file of N requests.
  python benchmarks/bench_serve.py [--threads 2] [--predict-rows 1000000] [--skip-http]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from gpu_check import synthetic_dataset  # noqa: E402

from dinctl.data.batching import Batch  # noqa: E402
from dinctl.data.store import load_dataset  # noqa: E402
from dinctl.serving.export import export_run  # noqa: E402
from dinctl.serving.runtime import ServingModel, open_servable_run, open_serving  # noqa: E402
from dinctl.training.checkpoint import RunConfig, save_checkpoint, write_run_config  # noqa: E402
from dinctl.training.config import resolve_config  # noqa: E402

SIZES = (100, 200, 1000)
HISTORY = 100


def make_run(root: Path, users: int, act: str) -> Path:
    """A dataset and a run folder holding a freshly initialised DIN (as `dinctl train` writes)."""
    from dinctl.models import ModelConfig, build_model

    data = synthetic_dataset(root / "data", users)
    ds = load_dataset(data)
    cfg = ModelConfig(
        model="din", n_users=ds.n_users, n_items=ds.n_items, n_cates=ds.n_cates, act=act
    )
    torch.manual_seed(0)
    model = build_model(cfg)
    train = resolve_config({"data": str(data), "out": str(root / "run"), "act": act})
    rc = RunConfig(train, cfg, data, ds.checksum, ds.n_items, dict(ds.meta))
    write_run_config(root / "run", rc)
    save_checkpoint(root / "run" / "best.pt", {"model": model.state_dict(), "epoch": 0})
    return root / "run"


def request(rng: np.random.Generator, n_items: int, c: int) -> dict[str, Any]:
    hist = rng.integers(1, n_items + 1, HISTORY)
    cands = rng.integers(1, n_items + 1, c)
    return {"history": [f"I{i}" for i in hist], "candidates": [f"I{i}" for i in cands]}


def percentiles(times: list[float]) -> dict[str, float]:
    ms = np.array(times) * 1000.0
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def time_calls(fn: Any, args: list[Any], warmup: int = 5) -> dict[str, float]:
    for a in args[:warmup]:
        fn(a)
    times = []
    for a in args:
        t = time.perf_counter()
        fn(a)
        times.append(time.perf_counter() - t)
    return percentiles(times)


def naive_eager(run: Any, ds: Any) -> Any:
    """The training forward: one row per candidate, the history repeated C times."""
    item_cate = torch.from_numpy(ds.item_cate.astype(np.int64))

    def score(req: dict[str, Any]) -> Any:
        hist = torch.tensor([int(h[1:]) for h in req["history"]])  # (T,)
        item = torch.tensor([int(c[1:]) for c in req["candidates"]])  # (C,)
        c, t = item.shape[0], hist.shape[0]
        batch = Batch(
            user=torch.zeros(c, dtype=torch.long),
            item=item,
            cate=item_cate[item],
            hist_item=hist.expand(c, t),
            hist_cate=item_cate[hist].expand(c, t),
            hist_mask=torch.ones(c, t, dtype=torch.bool),
            label=torch.zeros(c),
        )
        with torch.inference_mode():
            return torch.sigmoid(run.model(batch).logits)

    return score


def in_process(run_dir: Path, bundle: Path, n: int, threads: int) -> dict[str, Any]:
    run = open_servable_run(run_dir)
    ds = run.dataset
    engines: dict[str, ServingModel] = {
        "eager fp32": open_serving(run_dir),
        "eager bf16": open_serving(run_dir, bf16=True),
        "onnx": open_serving(bundle, threads=threads),
    }
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {}
    for c in SIZES:
        reqs = [request(rng, ds.n_items, c) for _ in range(n if c < 1000 else n // 4)]
        row: dict[str, Any] = {
            "naive eager": time_calls(naive_eager(run, ds), reqs[: max(10, len(reqs) // 10)])
        }
        for name, model in engines.items():

            def call(req: dict[str, Any], m: ServingModel = model) -> Any:
                return m.score([m.vocab.encode(req["candidates"], history=req["history"])])

            row[name] = time_calls(call, reqs)
        ref = [engines["eager fp32"].score([engines["eager fp32"].vocab.encode(
            r["candidates"], history=r["history"])])[0].scores for r in reqs[:20]]  # fmt: skip
        for name in ("eager bf16", "onnx"):
            m = engines[name]
            got = [m.score([m.vocab.encode(r["candidates"], history=r["history"])])[0].scores
                   for r in reqs[:20]]  # fmt: skip
            row[name]["max_abs_score_diff"] = float(
                max(np.abs(a - b).max() for a, b in zip(got, ref, strict=True))
            )
        out[str(c)] = row
    return out


def start_server(source: Path, port: int, threads: int, *args: str) -> subprocess.Popen[bytes]:
    import httpx

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "dinctl", "serve", str(source), "--port", str(port)]
    cmd += ["--threads", str(threads), "--log-level", "warning", *args]
    proc = subprocess.Popen(cmd, env=env)
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not start")


def http(source: Path, n_items: int, n: int, threads: int, window_ms: float) -> dict[str, Any]:
    import httpx

    port = 8760 + int(window_ms * 10) % 100
    proc = start_server(source, port, threads, "--batch-window-ms", str(window_ms))
    url = f"http://127.0.0.1:{port}/score"
    rng = np.random.default_rng(1)
    out: dict[str, Any] = {}
    try:
        with httpx.Client() as client:
            for c in SIZES:
                reqs = [request(rng, n_items, c) for _ in range(n if c < 1000 else n // 4)]
                out[str(c)] = time_calls(
                    lambda r: client.post(url, json=r).raise_for_status(), reqs
                )
        reqs = [request(rng, n_items, 200) for _ in range(n)]

        def client_loop(k: int) -> int:
            with httpx.Client() as cl:
                for r in reqs[k::8]:
                    cl.post(url, json=r).raise_for_status()
            return len(reqs[k::8])

        t = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            done = sum(pool.map(client_loop, range(8)))
        out["8 clients, 200 candidates: requests/s"] = done / (time.perf_counter() - t)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return out


def predict(source: Path, root: Path, users: int, n_items: int, rows: int) -> dict[str, Any]:
    """`dinctl predict` on a seeded Parquet of `rows` requests (a user id and one candidate)."""
    import polars as pl

    rng = np.random.default_rng(2)
    path = root / f"requests-{rows}.parquet"
    pl.DataFrame(
        {
            "user": [f"U{u}" for u in rng.integers(1, users + 1, rows)],
            "candidates": [f"I{i}" for i in rng.integers(1, n_items + 1, rows)],
        }
    ).write_parquet(path)
    out = root / "scores.parquet"
    cmd = ["/usr/bin/time", "-f", "peak_rss_kb=%M", sys.executable, "-m", "dinctl", "predict"]
    cmd += [str(source), "--input", str(path), "--out", str(out), "--json", "--no-progress"]
    cmd += ["--overwrite"]
    t = time.perf_counter()
    res = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    wall = time.perf_counter() - t
    if res.returncode != 0:
        raise SystemExit(res.stderr)
    summary = json.loads(res.stdout)
    rss = int(res.stderr.strip().splitlines()[-1].split("=")[1])
    return {
        "rows": rows,
        "source": str(source.name),
        "scoring_rows_per_s": summary["rows_per_s"],
        "end_to_end_rows_per_s": rows / wall,
        "wall_s": wall,
        "peak_rss_mib": rss / 1024,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=20000)
    p.add_argument("--act", default="prelu", choices=["prelu", "dice"])
    p.add_argument("--requests", type=int, default=200, help="timed requests per size")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--predict-rows", type=int, default=1_000_000)
    p.add_argument("--http-source", default="onnx", choices=["onnx", "run"])
    p.add_argument("--skip-http", action="store_true")
    p.add_argument("--skip-predict", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    results: dict[str, Any] = {"threads": args.threads, "act": args.act, "load": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run_dir = make_run(root, args.users, args.act)
        bundle = export_run(run_dir, "onnx").out
        n_items = load_dataset(root / "data").n_items
        results["in_process"] = in_process(run_dir, bundle, args.requests, args.threads)
        print(json.dumps(results, indent=2), flush=True)
        source = bundle if args.http_source == "onnx" else run_dir
        if not args.skip_http:
            results["http"] = {
                f"window {w} ms": http(source, n_items, args.requests, args.threads, w)
                for w in (0.0, 2.0)
            }
            print(json.dumps(results["http"], indent=2), flush=True)
        if not args.skip_predict:
            results["predict"] = predict(source, root, args.users, n_items, args.predict_rows)
            print(json.dumps(results["predict"], indent=2), flush=True)
    results["load_after"] = os.getloadavg()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
