"""Open a RUN folder or an export BUNDLE as a `ServingModel`: vocabulary + one engine.

Engines take the scorer's padded numpy inputs and return logits (R, C) and, for DIN,
attention weights (R, C, T):
  eager  the RequestScorer over a run's best weights (optionally bf16 matmuls)
  torch  a bundle's torch.export ExportedProgram
  onnx   a bundle's ONNX graph on ONNX Runtime
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dinctl.errors import DinctlError
from dinctl.serving.fields import FieldTables
from dinctl.serving.scorer import INPUT_NAMES
from dinctl.serving.vocab import EncodedRequest, RequestEncoder, pad_requests

Engine = Callable[[dict[str, np.ndarray]], tuple[np.ndarray, np.ndarray | None]]


def missing_extra(module: str) -> DinctlError:
    return DinctlError(
        f"the serving extra is not installed (no module named {module!r})",
        hint="pip install 'dinctl[serve]'",
    )


def open_servable_run(run_dir: Path) -> Any:
    """A run's best weights (eval mode, CPU; its dataset is `run.dataset`). Runs trained on a
    feature schema serve too; which models can is RequestScorer's check."""
    from dinctl.inference import open_run

    return open_run(run_dir, "cpu")


def eager_engine(scorer: Any) -> Engine:
    """The RequestScorer in inference mode."""
    import torch

    names = scorer.input_names

    def run(inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
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


def onnx_engine(path: Path, threads: int = 0, names: Sequence[str] = INPUT_NAMES) -> Engine:
    """An ONNX graph on ONNX Runtime's CPU provider."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise missing_extra("onnxruntime") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        out = session.run(None, {name: inputs[name] for name in names})
        return out[0], out[1] if len(out) > 1 else None

    return run


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
        outputs = [o["name"] for o in bundle.manifest["signature"]["outputs"]]
        return ServingModel(vocab, engine, info, has_attention="attention" in outputs)
    return open_run_serving(source, bf16)


def open_run_serving(run_dir: Path, bf16: bool = False) -> ServingModel:
    """The eager RequestScorer over a run's best weights."""
    from dinctl.serving.scorer import RequestScorer

    run = open_servable_run(run_dir)
    ds = run.dataset
    scorer = RequestScorer(run.model, bf16=bf16)
    if bf16:
        from dinctl.serving.export import check_bf16

        check_bf16(eager_engine(RequestScorer(run.model)), eager_engine(scorer), run, ds)
    vocab = vocab_of_dataset(ds, run.config.max_len)
    info = {
        "format": "eager-bf16" if bf16 else "eager",
        "source": str(run_dir),
        "model": run.model_config,
        "max_len": run.config.max_len,
        "dataset": dataset_info(ds),
        "signature": scorer.signature(),
    }
    if not ds.schema.is_basic:
        info["schema"] = ds.schema.to_dict()
    return ServingModel(vocab, eager_engine(scorer), info, scorer.has_attention)


def user_histories(ds: Any, max_len: int) -> Any:
    """(raw_user, items) of a preprocessed dataset, each user's last max_len items; with a
    feature schema also hist_<f> (the same behaviours' extra fields) and the user fields."""
    import polars as pl

    beh = [f"hist_{n}" for n in ds.schema.extra_behaviour]
    users = pl.read_parquet(
        ds.path / "sequences.parquet", columns=["user", "raw_user", "items", *beh]
    )
    users = users.with_columns(pl.col(c).list.tail(max_len) for c in ("items", *beh))
    if ds.schema.user:
        table = ds.user_table[users["user"].to_numpy()]  # (users, U)
        users = users.with_columns(
            pl.Series(name, table[:, k], dtype=pl.Int32) for k, name in enumerate(ds.schema.user)
        )
    return users.drop("user")


def items_with_fields(ds: Any) -> Any:
    """items.parquet's frame plus, per extra behaviour field f, `hist_<f>` (the item's value in
    its latest behaviour) and `cand_<f>` (a candidate's default, dinctl/serving/fields.py)."""
    import polars as pl

    items = ds.items_frame()
    beh = ds.schema.extra_behaviour
    if not beh:
        return items
    latest = ds.item_fields()  # (N+1, F)
    cand = latest.copy()
    if ds.has_split("train"):
        train = ds.split("train")
        for k, name in enumerate(beh):
            values = train.fields[name]
            if len(values) and (values == values[0]).all():  # one value for every candidate
                cand[1:, k] = values[0]
            else:
                cand[train.item, k] = values  # the item's last training sample wins
    ids = items["item"].to_numpy()
    return items.with_columns(
        *(pl.Series(f"hist_{n}", latest[ids, k], dtype=pl.Int32) for k, n in enumerate(beh)),
        *(pl.Series(f"cand_{n}", cand[ids, k], dtype=pl.Int32) for k, n in enumerate(beh)),
    )


def values_frame(ds: Any) -> Any:
    """(field, id, raw) of every extra categorical field of the dataset (values.parquet)."""
    import polars as pl

    columns: dict[str, list[Any]] = {"field": [], "id": [], "raw": []}
    for name in (*ds.schema.extra_behaviour, *ds.schema.user, *ds.schema.context):
        raw = ds.value_names(name)  # ids 1..V
        columns["field"] += [name] * len(raw)
        columns["id"] += list(range(1, len(raw) + 1))
        columns["raw"] += raw
    return pl.DataFrame(columns, schema={"field": pl.Utf8, "id": pl.Int32, "raw": pl.Utf8})


def numeric_stats(ds: Any) -> dict[str, dict[str, float]]:
    """The training split's mean/std of each numeric field, as preprocessing recorded them."""
    stats = ds.meta.get("counts", {}).get("numeric", {})
    return {n: dict(stats[n]) for n in ds.schema.numeric if n in stats}


def vocab_of_dataset(ds: Any, max_len: int) -> RequestEncoder:
    """The vocabulary and end-of-data histories of a preprocessed dataset."""
    items, users = items_with_fields(ds), user_histories(ds, max_len)
    fields = None
    if not ds.schema.is_basic:
        fields = FieldTables.from_frames(
            ds.schema, items, users, values_frame(ds), numeric_stats(ds), max_len
        )
    return RequestEncoder.from_frames(items, users, max_len, fields)


def dataset_info(ds: Any) -> dict[str, Any]:
    return {
        "path": str(ds.path),
        "checksum": ds.checksum,
        "n_users": ds.n_users,
        "n_items": ds.n_items,
        "n_cates": ds.n_cates,
    }
