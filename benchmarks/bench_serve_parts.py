"""Where one served request's time goes: each step of the eager serving path timed alone,
right after a floor call (so its caches are as cold as after the previous request's forward).

The request, model and floor are bench_serve.py's (DIN 64 + 64, unit 80-40, 200 candidates
against a 100-behaviour history). Steps, in the order a request runs them: encode (the
vocabulary, fresh strings parsed by orjson), pad, then the forward's own parts (the ids'
table rows, the kernels' weight-version checks, the kernel: `fused_unit.score_arrays`, which
gathers the embedding rows itself)
and the answer (probabilities); "request" is the whole `ServingModel.score(encode(...))`. Also
when the kernel's second thread starts after it is handed its job, and the engine and the
floor on one thread.

  python benchmarks/bench_serve_parts.py [--requests 300] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as bench_serve.py and `dinctl serve`

import numpy as np  # noqa: E402
import orjson  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_serve as bench  # noqa: E402

from dinctl.data.store import load_dataset  # noqa: E402
from dinctl.models import fused_unit  # noqa: E402
from dinctl.serving.runtime import ServingModel, open_serving, shaped_request  # noqa: E402
from dinctl.serving.server import freeze_heap  # noqa: E402
from dinctl.serving.vocab import pad_requests  # noqa: E402


def after_floor(fn: Any, args: list[Any]) -> list[float]:
    """`fn(a)` for each a, a floor call before each; its times (ms)."""
    times = []
    for a in args:
        bench.FLOOR()
        started = time.perf_counter()
        fn(a)
        times.append((time.perf_counter() - started) * 1000.0)
    return times


def steps(model: ServingModel, bodies: list[bytes]) -> dict[str, list[float]]:
    """Each step's times (ms) over the requests."""
    cells = model.engine.__closure__ or ()  # the eager engine's scorer, for its model's parts
    scorer = next(c.cell_contents for c in cells if hasattr(c.cell_contents, "model"))
    net = scorer.model
    encode = model.vocab.encode
    parsed = [orjson.loads(b) for b in bodies]
    encoded = [encode(p["candidates"], history=p["history"]) for p in parsed]
    padded = [pad_requests([q]) for q in encoded]
    unit, tower = net.attention.kernel_layers(), net.mlp.kernel_layers()
    emb, tables = net.emb, net.emb.kernel_tables()

    def ids(p: dict[str, Any]) -> tuple[Any, Any]:
        return emb.kernel_ids(p["hist_item"], p["hist_cate"]), emb.kernel_ids(
            p["cand_item"], p["cand_cate"]
        )

    looked_up = [ids(p) for p in padded]
    side = np.zeros((1, padded[0]["cand_item"].shape[1], 0), np.float32)
    threads = torch.get_num_threads()
    logits = [model.engine(p)[0] for p in padded]  # (1, C) each

    def kernel(k: int) -> None:
        hist, cand = looked_up[k]
        fused_unit.score_arrays(unit, tower, tables, hist, cand, padded[k]["hist_len"], side,
                                0.0, threads)  # fmt: skip

    def request(p: dict[str, Any]) -> None:
        model.score([encode(p["candidates"], history=p["history"])])

    fresh = [orjson.loads(b) for b in bodies]  # strings not looked up before
    idx = list(range(len(bodies)))
    return {
        "request (encode + pad + forward + answer)": after_floor(request, fresh),
        "encode": after_floor(
            lambda p: encode(p["candidates"], history=p["history"]),
            [orjson.loads(b) for b in bodies],
        ),  # fmt: skip
        "pad": after_floor(lambda q: pad_requests([q]), encoded),
        "forward (engine)": after_floor(model.engine, padded),
        "  table rows of the ids (kernel_ids)": after_floor(ids, padded),
        "  weight-version checks": after_floor(
            lambda _: (net.attention.kernel_layers(), net.mlp.kernel_layers(), emb.kernel_tables()),
            idx,
        ),
        "  kernel (score_arrays: the rows gathered inside)": after_floor(kernel, idx),
        "answer (probabilities)": after_floor(
            lambda x: 1.0 / (1.0 + np.exp(-x.astype(np.float64))), logits
        ),
    }


def second_thread(model: ServingModel, bodies: list[bytes]) -> list[float]:
    """How long (ms) after being handed its job the kernel's second thread starts, per
    request (the pool's submit wrapped for the measurement)."""
    pool = fused_unit._pool(os.getpid())
    submit, starts = pool.submit, []

    def timed_submit(fn: Any, *args: Any) -> Any:
        handed = time.perf_counter()

        def run(*a: Any) -> Any:
            starts.append((time.perf_counter() - handed) * 1000.0)
            return fn(*a)

        return submit(run, *args)

    pool.submit = timed_submit  # type: ignore[method-assign]
    try:
        for body in bodies:
            bench.FLOOR()
            p = orjson.loads(body)
            model.score([model.vocab.encode(p["candidates"], history=p["history"])])
    finally:
        del pool.submit
    return starts


def one_thread(model: ServingModel, n: int = 30) -> dict[str, float]:
    """The floor and the engine (one request of 200 × 100) on one thread, ms medians."""
    inputs = shaped_request(model)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        floor = float(np.median([timed(bench.FLOOR) for _ in range(n)]))
        engine = float(np.median([timed(lambda: model.engine(inputs)) for _ in range(n)]))
    finally:
        torch.set_num_threads(previous)
    return {"floor_ms": floor, "engine_ms": engine, "ratio": engine / floor}


def timed(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--users", type=int, default=20000)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(json.dumps(bench.machine(args.threads)), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = open_serving(bench.make_run(root, args.users, "prelu"))
        n_items = load_dataset(root / "data").n_items
        rng = np.random.default_rng(0)
        bodies = [orjson.dumps(bench.request(rng, n_items)) for _ in range(args.requests)]
        freeze_heap()
        parts = steps(model, bodies)
        parts["second thread's start after its job is handed"] = second_thread(model, bodies)
        single = one_thread(model)
    floor = bench.floor_ms()
    print(f"floor p50 {floor:.3f} ms ({args.threads} threads); medians after a floor call:")
    out: dict[str, Any] = {"floor_p50_ms": floor}
    for name, times in parts.items():
        if not times:
            continue
        p50, p99 = np.percentile(times, [50, 99])
        out[name.strip()] = {"p50_ms": p50, "p99_ms": p99}
        print(f"  {name:40s} p50 {p50:7.3f}  p99 {p99:7.3f} ms  ({p50 / floor:.3f} × floor)")
    out["one thread"] = single
    print(f"one thread: engine {single['engine_ms']:.3f} ms, floor {single['floor_ms']:.3f} ms, "
          f"{single['ratio']:.3f} × floor")  # fmt: skip
    print(json.dumps(out))


if __name__ == "__main__":
    main()
