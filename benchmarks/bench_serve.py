"""Serving speed against the arithmetic floor, measured in one run: in-process, HTTP, predict.

DIN at the paper's size (64 + 64 embeddings, activation unit 80-40, MLP 200-80), random
weights (speed does not depend on them), Amazon-shaped vocabulary (64,000 items, 800
categories); every request has 200 candidates and a 100-behaviour history (issue 25).

  * floor: the activation unit's two layers as bare fp32 matmuls over every (candidate,
    behaviour) pair, C·T·E·H1 = 200·100·128·80 and C·T·H1·H2 (·80·40), same threads; every
    latency is also printed as a ratio to its p50, so the figures carry over between machines;
  * in-process: encode + pad + forward per engine (eager fp32 with the activation unit's fused
    kernel, the same with the torch ops, torch.export, ONNX Runtime, and eager bf16 only on a
    CPU with native bf16), p50/p99/p99.9;
  * request path: per-stage medians (µs) of what POST /score does besides the forward, the fast
    path (orjson, plain-shape check, pre-encoded response) against the pydantic reference;
  * HTTP: `dinctl serve` in a subprocess on 127.0.0.1, keep-alive http.client clients with
    bounded loops: 1 client (p50/p99/p99.9) and 8 and 32 concurrent clients (requests/s, p50,
    p99), for each serving configuration;
  * `dinctl predict`: requests/s and peak RSS (/usr/bin/time) on seeded files of 1-candidate
    and 200-candidate requests.

  python benchmarks/bench_serve.py [--threads 2] [--requests 400] [--http-requests 300]
      [--predict-rows 100000] [--predict-wide-rows 2000] [--skip-http] [--skip-predict]
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# as `dinctl serve` and `dinctl predict` do (dinctl/serving/cpu_threads.py): set before torch
# is imported, or the floor and the in-process engines run with spinning OpenMP threads
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import orjson  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from gpu_check import synthetic_dataset  # noqa: E402

from dinctl.data.store import load_dataset  # noqa: E402
from dinctl.models.fused_unit import ENV_SWITCH  # noqa: E402
from dinctl.serving.engines import unit_dims  # noqa: E402
from dinctl.serving.export import export_run  # noqa: E402
from dinctl.serving.runtime import ServingModel, open_serving  # noqa: E402
from dinctl.serving.server import freeze_heap  # noqa: E402
from dinctl.serving.vocab import pad_requests  # noqa: E402
from dinctl.training.checkpoint import RunConfig, save_checkpoint, write_run_config  # noqa: E402
from dinctl.training.config import resolve_config  # noqa: E402
from dinctl.training.device import cpu_bf16_instructions, cpu_features  # noqa: E402

CANDIDATES, HISTORY = 200, 100
CLIENTS = (1, 8, 32)


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


def request(rng: np.random.Generator, n_items: int, c: int = CANDIDATES) -> dict[str, Any]:
    hist = rng.integers(1, n_items + 1, HISTORY)
    cands = rng.integers(1, n_items + 1, c)
    return {"history": [f"I{i}" for i in hist], "candidates": [f"I{i}" for i in cands]}


def stats(times: list[float], floor: float | None = None) -> dict[str, float]:
    """p50/p99/p99.9 in ms (and as multiples of the floor when given)."""
    ms = np.array(times) * 1000.0
    out = {f"{name}_ms": float(np.percentile(ms, q)) for name, q in PCTS}
    if floor:
        out.update({f"{name}_x_floor": out[f"{name}_ms"] / floor for name, _ in PCTS})
    return out


PCTS = (("p50", 50), ("p99", 99), ("p99.9", 99.9))


def timed(fn: Any, args: list[Any], warmup: int = 5) -> list[float]:
    for a in args[:warmup]:
        fn(a)
    times = []
    for a in args:
        started = time.perf_counter()
        fn(a)
        times.append(time.perf_counter() - started)
    return times


def floor_call() -> Any:
    """The activation unit's two matmuls at the request's shape, bare fp32: the floor."""
    dim, hidden = unit_dims({"emb_dim": 64, "attn_hidden": (80, 40)})
    g = torch.Generator().manual_seed(0)
    pairs = torch.randn(CANDIDATES * HISTORY, dim, generator=g)  # (C·T, E)
    first, second = torch.randn(dim, hidden[0], generator=g), torch.randn(*hidden, generator=g)

    def run(_: Any = None) -> None:
        with torch.inference_mode():
            torch.mm(torch.mm(pairs, first), second)  # (C·T, H2)

    return run


FLOOR = floor_call()


def floor_ms(n: int = 30) -> float:
    """The floor's p50 now (the machine's load moves it: measure it beside each figure)."""
    return stats(timed(FLOOR, list(range(n)), warmup=3))["p50_ms"]


def interleaved(fn: Any, args: list[Any], warmup: int = 5) -> dict[str, float]:
    """`fn` over `args`, a floor call before each one, so both see the same load: the
    latencies, the floor's p50 and their ratios."""
    for a in args[:warmup]:
        FLOOR()
        fn(a)
    times, floors = [], []
    for a in args:
        started = time.perf_counter()
        FLOOR()
        middle = time.perf_counter()
        fn(a)
        floors.append(middle - started)
        times.append(time.perf_counter() - middle)
    base = stats(floors)["p50_ms"]
    return {"floor_p50_ms": base, **stats(times, base)}


def in_process(engines: dict[str, ServingModel], reqs: list[Any]) -> Any:
    """encode + pad + forward per engine (interleaved with the floor), the forward alone."""
    out: dict[str, Any] = {}
    ref = None
    for name, model in engines.items():
        encoded = [model.vocab.encode(r["candidates"], history=r["history"]) for r in reqs]
        padded = [pad_requests([q]) for q in encoded]

        def call(r: dict[str, Any], m: ServingModel = model) -> Any:
            return m.score([m.vocab.encode(r["candidates"], history=r["history"])])

        out[name] = interleaved(call, reqs)
        out[name]["forward_p50_ms"] = stats(timed(model.engine, padded[:100]))["p50_ms"]
        scores = [model.score([q])[0].scores for q in encoded[:20]]
        if ref is None:
            ref = scores
        diff = max(float(np.abs(a - b).max()) for a, b in zip(scores, ref, strict=True))
        out[name]["max_abs_score_diff_vs_first"] = diff
    return out


def torch_ops(model: ServingModel) -> ServingModel:
    """The eager engine with the activation unit's fused kernel switched off: the torch ops
    it replaces, measured beside it."""
    engine = model.engine

    def run(inputs: dict[str, np.ndarray]) -> Any:
        os.environ[ENV_SWITCH] = "0"
        try:
            return engine(inputs)
        finally:
            del os.environ[ENV_SWITCH]

    info = {**model.info, "engine": {**model.info["engine"], "unit": "torch ops"}}
    return dataclasses.replace(model, engine=run, info=info)


def request_path(model: ServingModel, reqs: list[Any]) -> dict[str, dict[str, float]]:
    """Per-stage medians (µs) of POST /score's work besides the forward: fast and reference."""
    from fastapi.encoders import jsonable_encoder
    from fastapi.responses import JSONResponse

    from dinctl.serving.request_body import ScoreRequest, parse_fast, request_fields
    from dinctl.serving.server import Limits, encode_fields, render

    limits = Limits()
    bodies = [orjson.dumps(r) for r in reqs]
    fields = [parse_fast(b, "application/json") for b in bodies]
    encoded = [encode_fields(model, f, limits) for f in fields if f is not None]
    scored = [model.score([q])[0] for q in encoded[:50]]
    name = "din"

    def median_us(fn: Any, args: list[Any]) -> float:
        return float(np.median(timed(fn, args)) * 1e6)

    fast = {
        "parse + check (orjson)": median_us(lambda b: parse_fast(b, "application/json"), bodies),
        "encode (vocab)": median_us(lambda f: encode_fields(model, f, limits), fields),
        "pad": median_us(lambda q: pad_requests([q]), encoded),
        "respond (orjson bytes)": median_us(
            lambda k: render(name, scored[k], encoded[k], fields[k], False, 0.0),
            list(range(len(scored))),
        ),
    }
    reference = {
        "parse + validate (json + pydantic)": median_us(
            lambda b: request_fields(ScoreRequest.model_validate(json.loads(b))), bodies
        ),
        "encode (vocab)": fast["encode (vocab)"],
        "pad": fast["pad"],
        "respond (jsonable_encoder + JSONResponse)": median_us(
            lambda k: JSONResponse(
                jsonable_encoder(
                    {
                        "scores": scored[k].scores.tolist(),
                        "unknown_items": scored[k].unknown_items,
                        "model": name,
                        "took_ms": 1.0,
                    }
                )
            ),
            list(range(len(scored))),
        ),  # fmt: skip
    }
    for part in (fast, reference):
        part["total"] = sum(part.values())
    return {"fast": fast, "reference": reference}


class Server:
    """`dinctl serve SOURCE ...` in a subprocess on a loopback port; its stderr kept."""

    def __init__(self, source: Path, port: int, args: list[str], log: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        cmd = [sys.executable, "-m", "dinctl", "serve", str(source), "--port", str(port)]
        cmd += ["--log-level", "warning", *args]
        self.port, self.log = port, log
        with open(log, "w") as err:
            self.proc = subprocess.Popen(cmd, env=env, stdout=err, stderr=err)
        for _ in range(1200):
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited:\n{log.read_text()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                time.sleep(0.2)
        raise SystemExit("server did not start")

    def stop(self) -> str:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        return self.log.read_text()


def post(conn: http.client.HTTPConnection, body: bytes) -> None:
    conn.request("POST", "/score", body, {"content-type": "application/json"})
    res = conn.getresponse()
    payload = res.read()
    if res.status != 200:
        raise SystemExit(f"HTTP {res.status}: {payload[:200]!r}")


def client_loop(port: int, bodies: list[bytes], times: list[float]) -> None:
    """One keep-alive client posting `bodies` in turn (a bounded loop)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for body in bodies:
        started = time.perf_counter()
        post(conn, body)
        times.append(time.perf_counter() - started)
    conn.close()


def one_client(port: int, bodies: list[bytes], local: Any) -> dict[str, Any]:
    """One client, and before each of its requests (the server idle) the floor and the same
    request scored in this process by the same engine at the same threads (`local`), so the
    three see the same load: HTTP p99 − in-process p99 is the cost of the HTTP path."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    times: dict[str, list[float]] = {"floor": [], "local": [], "http": []}
    started = time.perf_counter()
    for body in bodies:
        request = orjson.loads(body)
        for part, call in (("floor", FLOOR), ("local", local), ("http", None)):
            begun = time.perf_counter()
            post(conn, body) if call is None else call(request)
            times[part].append(time.perf_counter() - begun)
    conn.close()
    wall = time.perf_counter() - started - sum(times["floor"]) - sum(times["local"])
    base = stats(times["floor"])["p50_ms"]
    local_stats = stats(times["local"], base)
    out = {"floor_p50_ms": base, **stats(times["http"], base)}
    out["in-process"] = local_stats
    out["http_minus_in_process_ms"] = {
        name: out[f"{name}_ms"] - local_stats[f"{name}_ms"] for name, _ in PCTS
    }
    out["requests_per_s"] = len(bodies) / wall
    out["x_floor_rate"] = out["requests_per_s"] * base / 1000.0
    return out


def load(port: int, bodies: list[bytes], clients: int) -> dict[str, float]:
    """`clients` concurrent clients sharing `bodies`: requests/s and latency against the
    floor, measured before and after the load."""
    times: list[float] = []
    before = floor_ms()
    parts = [bodies[k::clients] for k in range(clients)]
    threads = [threading.Thread(target=client_loop, args=(port, p, times)) for p in parts]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    base = (before + floor_ms()) / 2
    out = {"floor_p50_ms": base, **stats(times, base)}
    out["requests_per_s"] = len(times) / wall
    out["x_floor_rate"] = out["requests_per_s"] * base / 1000.0  # vs 1 / floor
    return out


def http_runs(
    source: Path, args: list[str], bodies: list[bytes], root: Path, port: int, local: Any
) -> dict[str, Any]:
    server = Server(source, port, args, root / f"serve-{port}.log")
    try:
        client_loop(port, bodies[:10], [])  # warm-up
        out: dict[str, Any] = {"1 clients": one_client(port, bodies, local)}
        out.update({f"{c} clients": load(port, bodies, c) for c in CLIENTS if c > 1})
    finally:
        log = server.stop()
    out["engine line"] = next((ln for ln in log.splitlines() if "engine:" in ln), "")
    return out


def predict(source: Path, root: Path, users: int, n_items: int, rows: int, c: int) -> Any:
    """`dinctl predict` on `rows` seeded requests of `c` candidates (a stored user history)."""
    import polars as pl

    rng = np.random.default_rng(2)
    path = root / f"requests-{rows}-{c}.parquet"
    cands = rng.integers(1, n_items + 1, (rows, c))
    pl.DataFrame({
        "user": [f"U{u}" for u in rng.integers(1, users + 1, rows)],
        "candidates": [[f"I{i}" for i in row] for row in cands] if c > 1
        else [f"I{i}" for i in cands[:, 0]],
    }).write_parquet(path)  # fmt: skip
    out = root / "scores.parquet"
    cmd = ["/usr/bin/time", "-f", "peak_rss_kb=%M", sys.executable, "-m", "dinctl", "predict"]
    cmd += [str(source), "--input", str(path), "--out", str(out), "--json", "--no-progress"]
    cmd += ["--overwrite"]
    started = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if res.returncode != 0:
        raise SystemExit(res.stderr)
    summary = json.loads(res.stdout)
    rss = int(res.stderr.strip().splitlines()[-1].split("=")[1])
    return {
        "requests": rows,
        "candidates": c,
        "source": source.name,
        "scoring_requests_per_s": summary["rows_per_s"],
        "end_to_end_requests_per_s": rows / wall,
        "peak_rss_mib": rss / 1024,
        "engine line": next((ln for ln in res.stderr.splitlines() if "engine:" in ln), ""),
    }


def machine(threads: int) -> dict[str, Any]:
    import onnxruntime

    return {
        "cpu": platform.processor() or platform.machine(),
        "cpu_flags": cpu_features(),
        "cores": os.cpu_count(),
        "threads": threads,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "load_before": os.getloadavg(),
    }


TARGETS = {
    "in-process p99 / floor": ("≤", 1.5),
    "HTTP p99 − in-process p99, ms": ("≤", 3.0),
    "8 clients requests/s × floor": ("≥", 0.6),
}


def verdict(results: dict[str, Any]) -> dict[str, Any]:
    """The issue's three targets, each from figures of this run: every in-process engine,
    and per HTTP configuration the gap to the same engine in-process beside it and the
    8-client rate (`verdict_lines` judges each target by its best figure)."""
    out: dict[str, Any] = {
        "in-process p99 / floor": {k: r["p99_x_floor"] for k, r in results["in_process"].items()}
    }
    for label, run in results.get("http", {}).items():
        one, eight = run["1 clients"], run["8 clients"]
        out.setdefault("HTTP p99 − in-process p99, ms", {})[label] = one[
            "http_minus_in_process_ms"
        ]["p99"]
        out.setdefault("8 clients requests/s × floor", {})[label] = eight["x_floor_rate"]
    return out


def verdict_lines(found: dict[str, Any]) -> list[str]:
    """One line per target: MET when its best configuration meets it, and every figure."""
    lines = []
    for target, (sign, bound) in TARGETS.items():
        figures = found.get(target, {})
        if not figures:
            lines.append(f"{target} (target {sign} {bound}): not measured")
            continue
        pick = min if sign == "≤" else max
        label = pick(figures, key=lambda k: figures[k])
        value = figures[label]
        met = value <= bound if sign == "≤" else value >= bound
        others = "; ".join(f"{k} {v:.2f}" for k, v in figures.items())
        lines.append(
            f"{'MET' if met else 'NOT MET'}: {target} {value:.3f} ({label}), target {sign} "
            f"{bound} [{others}]"
        )
    return lines


def local_call(model: ServingModel, server_args: list[str]) -> Any:
    """The request scored in this process as the server configured by `server_args` scores it
    (its engine, its --threads for the forward)."""
    threads = int(server_args[server_args.index("--threads") + 1])

    def call(request: dict[str, Any]) -> None:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            model.score([model.vocab.encode(request["candidates"], history=request["history"])])
        finally:
            torch.set_num_threads(before)

    return call


def http_configs(threads: int) -> dict[str, tuple[str, list[str]]]:
    t = str(threads)
    return {
        f"run, --threads {t} --lanes 1": ("run", ["--threads", t, "--lanes", "1"]),
        f"run, --threads {t} --lanes 2": ("run", ["--threads", t, "--lanes", "2"]),
        f"onnx bundle, --threads {t}": ("onnx", ["--threads", t]),
        f"run, --threads 1 --workers {t}": ("run", ["--threads", "1", "--workers", t]),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=20000)
    p.add_argument("--act", default="prelu", choices=["prelu", "dice"])
    p.add_argument("--requests", type=int, default=400, help="timed in-process requests")
    p.add_argument("--http-requests", type=int, default=300, help="requests per client count")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--predict-rows", type=int, default=100_000, help="1-candidate requests")
    p.add_argument("--predict-wide-rows", type=int, default=2_000, help="200-candidate ones")
    p.add_argument("--skip-http", action="store_true")
    p.add_argument("--skip-predict", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    results: dict[str, Any] = {"machine": machine(args.threads)}
    print(json.dumps(results["machine"]), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run_dir = make_run(root, args.users, args.act)
        sources = {
            "run": run_dir,
            "onnx": export_run(run_dir, "onnx").out,
            "torch": export_run(run_dir, "torch").out,
        }
        n_items = load_dataset(root / "data").n_items
        engines = {
            "eager fp32": open_serving(run_dir),
            "eager fp32, torch ops": torch_ops(open_serving(run_dir)),
            "torch.export": open_serving(sources["torch"]),
            "onnx": open_serving(sources["onnx"], threads=args.threads),
        }
        if cpu_bf16_instructions():  # elsewhere --bf16 is refused
            engines["eager bf16"] = open_serving(run_dir, bf16=True)
        rng = np.random.default_rng(0)
        reqs = [request(rng, n_items) for _ in range(args.requests)]
        freeze_heap()  # as `dinctl serve` does once its model is open
        results["in_process"] = in_process(engines, reqs)
        print(json.dumps({"in_process": results["in_process"]}, indent=1), flush=True)
        results["request_path_us"] = request_path(engines["eager fp32"], reqs)
        print(json.dumps({"request_path_us": results["request_path_us"]}, indent=1), flush=True)
        if not args.skip_http:
            bodies = [orjson.dumps(request(rng, n_items)) for _ in range(args.http_requests)]
            results["http"] = {}
            for k, (label, (src, extra)) in enumerate(http_configs(args.threads).items()):
                local = local_call(engines["onnx" if src == "onnx" else "eager fp32"], extra)
                run = http_runs(sources[src], extra, bodies, root, 8790 + k, local)
                results["http"][label] = run
                print(json.dumps({label: run}, indent=1), flush=True)
        if not args.skip_predict:
            results["predict"] = [
                predict(run_dir, root, args.users, n_items, rows, c)
                for rows, c in ((args.predict_rows, 1), (args.predict_wide_rows, CANDIDATES))
            ]
            print(json.dumps({"predict": results["predict"]}, indent=1), flush=True)
    results["verdict"] = verdict(results)
    results["machine"]["load_after"] = os.getloadavg()
    print(json.dumps({"verdict": results["verdict"]}, indent=1))
    print(json.dumps(results))
    flags = ", ".join(k for k, v in results["machine"]["cpu_flags"].items() if v) or "none"
    load = "/".join(f"{x:.1f}" for x in results["machine"]["load_before"])
    print(f"verdict ({flags}; load {load} before, ", end="")
    print("/".join(f"{x:.1f}" for x in results["machine"]["load_after"]) + " after):")
    for line in verdict_lines(results["verdict"]):
        print("  " + line)


if __name__ == "__main__":
    main()
