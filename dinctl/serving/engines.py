"""Engines: callables that take the scorer's padded numpy inputs and return logits (R, C) and,
for DIN, attention weights (R, C, T):
  eager  the RequestScorer (optionally bf16 matmuls)
  torch  a bundle's torch.export ExportedProgram
  onnx   a bundle's ONNX graph on ONNX Runtime
`engine_speeds` times engines at the request shape that speed is quoted for, as `dinctl export`
records it in a bundle (`speed`), and `unit_floor_ms` the arithmetic floor at that shape.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dinctl.errors import DinctlError
from dinctl.serving.scorer import INPUT_NAMES

Engine = Callable[[dict[str, np.ndarray]], tuple[np.ndarray, np.ndarray | None]]
ENGINE_NAMES = {"eager": "torch eager", "torch": "torch.export", "onnx": "onnxruntime"}
REQUEST_SHAPE = {"candidates": 200, "history": 100}  # the request that speed is quoted for


def missing_extra(module: str) -> DinctlError:
    return DinctlError(
        f"the serving extra is not installed (no module named {module!r})",
        hint="pip install 'dinctl[serve]'",
    )


def eager_engine(scorer: Any) -> Engine:
    """The RequestScorer: its model's numpy serving path (DIN's fused kernel) where it
    applies, else its forward in inference mode."""
    import torch

    names = scorer.input_names

    def run(inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        fast = scorer.serve_arrays(inputs)
        if fast is not None:
            return fast
        with torch.inference_mode():
            out = scorer(**{name: torch.from_numpy(inputs[name]) for name in names})
        att = out[1].float().numpy() if len(out) > 1 else None
        return out[0].float().numpy(), att

    return run


def exported_engine(path: Path, names: Sequence[str] = INPUT_NAMES) -> Engine:
    """A torch.export archive (no pickle: `torch.export.load`); `names`: its inputs, the five
    basic ones positionally, the extra ones by keyword (as they were exported)."""
    import torch

    module = torch.export.load(str(path)).module()
    extra = [n for n in names if n not in INPUT_NAMES]

    def run(inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        args = [torch.from_numpy(inputs[name]) for name in INPUT_NAMES]
        kwargs = {name: torch.from_numpy(inputs[name]) for name in extra}
        with torch.inference_mode():
            out = module(*args, **kwargs)
        return out[0].numpy(), out[1].numpy() if len(out) > 1 else None

    return run


def onnx_session(path: Path, threads: int = 0) -> Any:
    """An ONNX Runtime CPU session whose idle workers sleep instead of spinning: spinning took
    the cores from the next forward and from torch beside it (benchmarks/README.md, serving)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise missing_extra("onnxruntime") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    for pool in SPINNING_OPTIONS:
        options.add_session_config_entry(pool, "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


SPINNING_OPTIONS = ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning")


def onnx_engine(path: Path, threads: int = 0, names: Sequence[str] = INPUT_NAMES) -> Engine:
    """An ONNX graph on ONNX Runtime's CPU provider."""
    session = onnx_session(path, threads)

    def run(inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        out = session.run(None, {name: inputs[name] for name in names})
        return out[0], out[1] if len(out) > 1 else None

    return run


def engine_info(
    fmt: str, bf16: bool = False, threads: int = 0, unit: str | None = None
) -> dict[str, Any]:
    """What runs the forward: the engine's name, its precision, intra-op threads and, given,
    how the activation unit runs (`fused kernel` or `torch ops`, dinctl/models/fused_unit.py)."""
    import torch

    info: dict[str, Any] = {
        "name": ENGINE_NAMES[fmt],
        "precision": "bf16 matmul" if bf16 else "fp32",
        "threads": threads if (threads > 0 and fmt == "onnx") else torch.get_num_threads(),
    }
    if unit is not None:
        info["unit"] = unit
    return info


def request_inputs(
    signature: dict[str, Any], candidates: int, history: int, model: dict[str, Any] | None = None
) -> dict[str, np.ndarray]:
    """One request's padded inputs of `signature`'s shapes with full histories, its item and
    category ids drawn (seeded) from `model`'s vocabularies (ids 1 without one; other fields
    1). The ids move the cost: ONNX Runtime took 10 ms on all-ones ids and 20 ms on varied ones
    (the signs after the first layer), torch the same on both."""
    sizes = {"R": 1, "C": candidates, "T": history}
    highs = {
        "item": int((model or {}).get("n_items", 1)),
        "cate": int((model or {}).get("n_cates", 1)),
    }
    rng = np.random.default_rng(0)
    out = {}
    for spec in signature["inputs"]:
        shape = [sizes.get(axis, axis) for axis in spec["shape"]]
        kind = spec["name"].rsplit("_", 1)[-1]  # hist_item → item
        if kind in highs and spec["name"] != "hist_len":
            out[spec["name"]] = rng.integers(1, highs[kind] + 1, shape).astype(spec["dtype"])
        else:
            out[spec["name"]] = np.ones(shape, dtype=spec["dtype"])
    out["hist_len"] = np.full(1, history, dtype=np.int64)
    return out


def time_engine(engine: Engine, inputs: dict[str, np.ndarray], repeats: int = 5) -> float:
    """Median milliseconds of `engine` on `inputs` after two warm-up calls."""
    for _ in range(2):
        engine(inputs)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        engine(inputs)
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1000.0)


def unit_floor_ms(
    candidates: int, history: int, dim: int, hidden: Sequence[int], repeats: int = 5
) -> float:
    """The arithmetic floor of a DIN request: the activation unit's two matmuls over every
    (candidate, behaviour) pair, C·T·E·H1 and C·T·H1·H2, as bare fp32 matmuls (median ms)."""
    import torch

    g = torch.Generator().manual_seed(0)
    pairs = torch.randn(candidates * history, dim, generator=g)  # (C·T, E)
    first = torch.randn(dim, hidden[0], generator=g)  # (E, H1)
    second = torch.randn(hidden[0], hidden[1] if len(hidden) > 1 else 1, generator=g)

    def run(_: Any) -> tuple[np.ndarray, None]:
        with torch.inference_mode():
            return torch.mm(torch.mm(pairs, first), second).numpy(), None  # (C·T, H2)

    return time_engine(run, {}, repeats)


def unit_dims(cfg: dict[str, Any]) -> tuple[int, tuple[int, ...]]:
    """A model config's behaviour width E and activation-unit layers (H1, H2, ...)."""
    ids = 2 if cfg.get("use_item_ids", True) else 1
    width = int(cfg.get("emb_dim", 64)) * (ids + len(cfg.get("behaviour_fields", ())))
    return width, tuple(int(h) for h in cfg.get("attn_hidden", (80, 40)))


def engine_speeds(
    engines: dict[str, Engine],
    signature: dict[str, Any],
    model: dict[str, Any] | None = None,
    repeats: int = 5,
) -> dict[str, Any]:
    """Each engine's median ms per request of REQUEST_SHAPE on this machine, as a bundle
    records it (`speed`): the threads, the CPU's instruction sets and the fastest engine."""
    import torch

    from dinctl.training.device import cpu_features

    c, t = REQUEST_SHAPE["candidates"], REQUEST_SHAPE["history"]
    inputs = request_inputs(signature, c, t, model)
    ms = {name: time_engine(engine, inputs, repeats) for name, engine in engines.items()}
    return {
        "request": dict(REQUEST_SHAPE),
        "threads": torch.get_num_threads(),
        "cpu": cpu_features(),
        "ms": ms,
        "fastest": min(ms, key=lambda name: ms[name]),
    }
