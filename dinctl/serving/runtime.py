"""Open a RUN folder or an export BUNDLE as a `ServingModel`: vocabulary + one engine.

A run serves through the eager RequestScorer over its best weights (optionally bf16); a
bundle through its exported model on the torch or onnx engine (dinctl/serving/engines.py).
A --bf16 run is refused on a CPU without native bf16 (emulated, it is many times slower than
float32). Which engine runs is in `info["engine"]`; `measure_speed` times it at the quoted
request shape against the floor (the activation unit's two matmuls there, the same threads).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dinctl.errors import DinctlError
from dinctl.serving.dataset_tables import dataset_info, vocab_of_dataset
from dinctl.serving.engines import (
    ENGINE_NAMES,
    REQUEST_SHAPE,
    Engine,
    eager_engine,
    engine_info,
    exported_engine,
    onnx_engine,
    request_inputs,
    time_engine,
    unit_dims,
    unit_floor_ms,
)
from dinctl.serving.fields import FieldTables
from dinctl.serving.parity import check_bf16
from dinctl.serving.vocab import EncodedRequest, RequestEncoder, pad_requests


@dataclass(frozen=True)
class Scored:
    """One request's answer: probabilities (C,), attention (C, T) when asked and available."""

    scores: np.ndarray
    logits: np.ndarray
    attention: np.ndarray | None
    unknown_items: list[str]


@dataclass
class ServingModel:
    """What predict and serve score with: a vocabulary, an engine and a description."""

    vocab: RequestEncoder
    engine: Engine
    info: dict[str, Any]  # model config, dataset, source, format, signature
    has_attention: bool

    def score(self, requests: Sequence[EncodedRequest], attention: bool = False) -> list[Scored]:
        """Score requests in one forward (padded to the longest history and candidate list)."""
        logits, weights = self.engine(pad_requests(requests))  # (R, C), (R, C, T) | None
        probs = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))  # (R, C)
        out = []
        for k, q in enumerate(requests):
            c, t = len(q.cand_item), len(q.hist_item)
            att = weights[k, :c, :t] if (attention and weights is not None) else None
            out.append(Scored(probs[k, :c], logits[k, :c], att, q.unknown_items))
        return out


def open_servable_run(run_dir: Path) -> Any:
    """A run's best weights (eval mode, CPU; its dataset is `run.dataset`). Runs trained on a
    feature schema serve too; which models can is RequestScorer's check. Never the last
    checkpoint in place of a missing best.pt: it would be served as the best epoch."""
    from dinctl.inference import open_run
    from dinctl.runs import BEST_FILE, CONFIG_FILE

    best = Path(run_dir) / BEST_FILE
    if (Path(run_dir) / CONFIG_FILE).is_file() and not best.is_file():
        raise DinctlError(f"{best} does not exist: the run has no best weights to serve",
                          hint="restore best.pt, or train the run again")  # fmt: skip
    return open_run(run_dir, "cpu")


def open_serving(source: Path | str, bf16: bool = False, threads: int = 0) -> ServingModel:
    """A RUN folder (eager scorer over its best weights) or a BUNDLE (its exported model)."""
    from dinctl.serving.bundle import is_bundle, read_bundle

    source = Path(source)
    if is_bundle(source):
        bundle = read_bundle(source)
        if bf16:
            raise DinctlError("--bf16 applies to a RUN, not a bundle", hint="pass the run folder")
        max_len = int(bundle.manifest["max_len"])
        items, users = bundle.items_frame(), bundle.users_frame()
        fields = None
        if not bundle.schema.is_basic:
            stats = bundle.manifest.get("numeric_stats", {})
            values = bundle.values_frame()
            fields = FieldTables.from_frames(bundle.schema, items, users, values, stats, max_len)
        vocab = RequestEncoder.from_frames(items, users, max_len, fields)
        names = [i["name"] for i in bundle.manifest["signature"]["inputs"]]
        model_file = bundle.model_file
        if bundle.format == "onnx":
            engine = onnx_engine(model_file, threads, names)
        else:
            engine = exported_engine(model_file, names)
        info = {k: v for k, v in bundle.manifest.items() if k != "format_version"}
        info["source"] = str(source)
        info["engine"] = engine_info(bundle.format, threads=threads)
        outputs = [o["name"] for o in bundle.manifest["signature"]["outputs"]]
        return ServingModel(vocab, engine, info, has_attention="attention" in outputs)
    return open_run_serving(source, bf16)


def open_run_serving(run_dir: Path, bf16: bool = False) -> ServingModel:
    """The eager RequestScorer over a run's best weights."""
    from dinctl.serving.scorer import RequestScorer

    if bf16:
        refuse_emulated_bf16()
    run = open_servable_run(run_dir)
    ds = run.dataset
    scorer = RequestScorer(run.model, bf16=bf16)
    if bf16:
        check_bf16(eager_engine(RequestScorer(run.model)), eager_engine(scorer), run, ds)
    vocab = vocab_of_dataset(ds, run.config.max_len)
    info = {
        "format": "eager-bf16" if bf16 else "eager",
        "engine": engine_info("eager", bf16, unit=scorer.unit),
        "source": str(run_dir),
        "model": run.model_config,
        "max_len": run.config.max_len,
        "dataset": dataset_info(ds),
        "signature": scorer.signature(),
    }
    if not ds.schema.is_basic:
        info["schema"] = ds.schema.to_dict()
    return ServingModel(vocab, eager_engine(scorer), info, scorer.has_attention)


def refuse_emulated_bf16() -> None:
    """--bf16 only where the CPU has bf16 instructions (the check `train --amp` makes)."""
    import torch

    from dinctl.training.device import amp_device

    native, why_not = amp_device(torch.device("cpu"))
    if not native:
        raise DinctlError(
            f"--bf16 is refused: {why_not}",
            hint="drop --bf16; emulated bf16 is many times slower than float32 here",
        )


def shaped_request(model: ServingModel) -> dict[str, Any]:
    """The padded inputs of one request of REQUEST_SHAPE for `model` (speed is quoted for it)."""
    c, t = REQUEST_SHAPE["candidates"], REQUEST_SHAPE["history"]
    return request_inputs(model.info["signature"], c, t, model.info.get("model"))


def warm_up(model: ServingModel) -> None:
    """One forward of REQUEST_SHAPE, so a worker's first request finds the engine loaded (the
    activation unit's kernel loads from numba's cache on its first call: ~0.5 s)."""
    model.engine(shaped_request(model))


def measure_speed(model: ServingModel, repeats: int = 5) -> dict[str, Any]:
    """The engine's milliseconds per request of REQUEST_SHAPE and the floor at that shape
    (the same threads): a start-up measurement for the log."""
    c, t = REQUEST_SHAPE["candidates"], REQUEST_SHAPE["history"]
    engine_ms = time_engine(model.engine, shaped_request(model), repeats)
    dim, hidden = unit_dims(model.info.get("model", {}))
    floor = unit_floor_ms(c, t, dim, hidden, repeats)
    return {**REQUEST_SHAPE, "engine_ms": engine_ms, "floor_ms": floor, "ratio": engine_ms / floor}


def describe_engine(model: ServingModel, speed: dict[str, Any] | None = None) -> str:
    """One line: which engine serves, and (when measured) how fast against the floor and
    against the other engine the bundle's export timed."""
    eng = model.info.get("engine", {})
    line = f"engine: {eng.get('name')} {eng.get('precision')}, {eng.get('threads')} threads"
    if eng.get("unit"):
        line += f", activation unit: {eng['unit']}"
    if speed is not None:
        line += (
            f"; {speed['engine_ms']:.1f} ms per request of {speed['candidates']} candidates × "
            f"{speed['history']} history = {speed['ratio']:.2f}× the floor "
            f"({speed['floor_ms']:.1f} ms)"
        )
    recorded = model.info.get("speed", {}).get("ms")
    if recorded:
        fastest = min(recorded, key=lambda name: recorded[name])
        times = ", ".join(f"{ENGINE_NAMES.get(k, k)} {v:.1f} ms" for k, v in recorded.items())
        line += f"; at export: {times}"
        if fastest != model.info.get("format"):
            how = "serve the run folder" if fastest == "eager" else f"export --format {fastest}"
            line += f" ({ENGINE_NAMES.get(fastest, fastest)} was faster: {how})"
    return line
