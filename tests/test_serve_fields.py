"""Export, predict and serve of runs trained on a feature schema (brand, user, context, numeric).

The oracle is the training-time forward: the run model on a `Batch` the training gatherer
builds from the dataset's own test rows. Requests are written in raw values (ids mapped back
through items.parquet / values.parquet, numbers de-standardised with meta's statistics), so
every step of the serving path, raw value → id → scorer → logit, is compared against it for
a DIN and a BaseModel, with the eager, torch.export and ONNX engines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from test_serve_fixtures import _train
from typer.testing import CliRunner

from dinctl.cli.main import app
from dinctl.data.datasets.logs import LogColumns, preprocess_logs
from dinctl.data.schema_file import columns_from_toml
from dinctl.errors import DinctlError
from dinctl.serving.runtime import ServingModel, open_serving
from dinctl.serving.scorer import INPUT_NAMES
from dinctl.serving.vocab import RequestError

LOGS = Path(__file__).resolve().parents[1] / "sample_data" / "logs"
COLUMNS = columns_from_toml(LOGS / "schema.toml")  # every field kind (= test_features')
MODELS = ("din", "base")
ENGINES = ("eager", "torch", "onnx")
TOL = 1e-5  # max |Δ logit|
N_ROWS = 40  # test rows compared per check

runner = CliRunner()


@pytest.fixture(scope="module")
def fielded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The logs sample with every field group, a DIN and a BaseModel run, and their bundles."""
    from dinctl.serving.export import export_run

    root = tmp_path_factory.mktemp("fields")
    data = root / "data"
    preprocess_logs(LOGS / "events.csv", data, columns=COLUMNS)
    out: dict[str, Any] = {"data": data, "parity": {}}
    for model in MODELS:
        run = _train(data, root / model, model=model, batch_size=64, epochs=2)
        out[model, "eager"] = run
        for fmt in ("torch", "onnx"):
            result = export_run(run, fmt, root / f"{model}-{fmt}")
            out[model, fmt] = result.out
            out["parity"][model, fmt] = result.parity_max_abs_diff
    return out


def _oracle(run_dir: Path, rows: slice | torch.Tensor) -> tuple[np.ndarray, Any]:
    """Training-time logits of test rows and the Batch they came from."""
    from dinctl.data.batching import SplitTensors, WindowGatherer
    from dinctl.inference import open_run

    run = open_run(run_dir)
    ds = run.dataset
    gatherer = WindowGatherer(ds, run.config.max_len)
    batch = gatherer.gather(*SplitTensors(ds.split("test")).rows(rows))
    with torch.inference_mode():
        return run.model(batch).logits.numpy(), batch


class RawValues:
    """Ids of a dataset back to the raw values a client would send."""

    def __init__(self, data: Path) -> None:
        from dinctl.data.store import load_dataset

        self.ds = load_dataset(data)
        self.schema = self.ds.schema
        items = self.ds.items_frame().sort("item")
        self.item = ["?", *items["raw_item"].to_list()]
        self.user = ["?", *self.ds.users_frame().sort("user")["raw_user"].to_list()]
        names = (*self.schema.extra_behaviour, *self.schema.user, *self.schema.context)
        self.names = {n: ["?", *self.ds.value_names(n)] for n in names}
        self.stats = self.ds.meta["counts"].get("numeric", {})

    def event(self, item: int, fields: Any) -> dict[str, Any]:
        beh = self.schema.extra_behaviour
        return {
            "item": self.item[item],
            **{n: self.names[n][int(fields[i])] for i, n in enumerate(beh)},
        }

    def candidate(self, batch: Any, k: int, bare: bool = False) -> dict[str, Any]:
        """Row k's candidate as an object: its own fields, or (`bare`) the item id alone plus
        the context and numeric fields the request must send."""
        out = {"item": self.item[int(batch.item[k])]}
        if not bare and batch.cand_fields is not None:
            out = self.event(int(batch.item[k]), batch.cand_fields[k])
        for i, n in enumerate(self.schema.context):
            out[n] = self.names[n][int(batch.context[k, i])]
        for i, n in enumerate(self.schema.numeric):
            stats = self.stats[n]
            out[n] = float(batch.numeric[k, i]) * stats["std"] + stats["mean"]
        return out

    def request(self, batch: Any, k: int, bare: bool = False) -> dict[str, Any]:
        """Row k of a Batch as a request: the known user (its fields from users.parquet), the
        row's own history as event objects, its candidate as an object."""
        n = int(batch.hist_mask[k].sum())
        fields = batch.hist_fields if batch.hist_fields is not None else batch.hist_item[..., None]
        history = [self.event(int(batch.hist_item[k, t]), fields[k, t]) for t in range(n)]
        user = self.user[int(batch.user[k])]
        return {"user": user, "history": history, "candidates": [self.candidate(batch, k, bare)]}


def _encode(model: ServingModel, req: dict[str, Any]) -> Any:
    return model.vocab.encode(
        req["candidates"],
        req.get("user"),
        req.get("history"),
        req.get("item_cates"),
        user_fields=req.get("user_fields"),
        context=req.get("context"),
        numeric=req.get("numeric"),
    )


def _logits(model: ServingModel, requests: list[dict[str, Any]]) -> np.ndarray:
    scored = model.score([_encode(model, r) for r in requests])
    return np.concatenate([s.logits for s in scored])


@pytest.fixture(scope="module")
def raw_values(fielded: dict[str, Any]) -> RawValues:
    return RawValues(fielded["data"])


# ------------------------------------------------------------------ parity


@pytest.mark.parametrize("model", MODELS)
def test_export_checks_parity_on_every_field(model: str, fielded: dict[str, Any]) -> None:
    for fmt in ("torch", "onnx"):
        manifest = json.loads((fielded[model, fmt] / "bundle.json").read_text())
        assert manifest["parity"]["max_abs_logit_diff"] == fielded["parity"][model, fmt]
        assert manifest["format_version"] == 2
        assert manifest["schema"]["numeric"] == ["price"]
        assert set(manifest["numeric_stats"]["price"]) == {"mean", "std"}
        inputs = {i["name"]: i["shape"] for i in manifest["signature"]["inputs"]}
        assert inputs["hist_fields"] == ["R", "T", 1]
        assert inputs["user_fields"] == ["R", 3]
        assert inputs["context"] == ["R", "C", 2]
        assert inputs["numeric"] == ["R", "C", 1]
        assert (fielded[model, fmt] / "values.parquet").is_file()


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("model", MODELS)
def test_raw_requests_score_as_training(
    model: str, engine: str, fielded: dict[str, Any], raw_values: RawValues
) -> None:
    """One request per test row (history and candidate as raw objects) and one request of
    row 0's user side against every row's candidate: logits equal the training forward."""
    expected, batch = _oracle(fielded[model, "eager"], slice(0, N_ROWS))
    serving = open_serving(fielded[model, engine])
    requests = [raw_values.request(batch, k) for k in range(N_ROWS)]
    got = _logits(serving, requests)
    assert np.abs(got - expected).max() <= TOL
    _, shared_batch = _oracle(fielded[model, "eager"], torch.zeros(N_ROWS, dtype=torch.long))
    one = dict(requests[0])
    one["candidates"] = [raw_values.candidate(batch, k) for k in range(N_ROWS)]
    with torch.inference_mode():  # row 0's user side, every row's candidate: the oracle
        from dinctl.inference import open_run

        shared_batch.item, shared_batch.cate = batch.item, batch.cate
        shared_batch.cand_fields, shared_batch.context = batch.cand_fields, batch.context
        shared_batch.numeric = batch.numeric
        shared = open_run(fielded[model, "eager"]).model(shared_batch).logits.numpy()
    assert np.abs(_logits(serving, [one]) - shared).max() <= TOL


def test_stored_user_and_item_defaults(fielded: dict[str, Any], raw_values: RawValues) -> None:
    """A known user alone: its end-of-data history with its events' fields, its user fields;
    a bare candidate id: the item's latest brand; shared context and numeric for all."""
    from dinctl.data.batching import Batch
    from dinctl.inference import open_run

    ds = raw_values.ds
    run = open_run(fielded["din", "eager"])
    u, items = 5, [3, 17, 40]
    lo, hi = int(ds.seq_offsets[u]), int(ds.seq_offsets[u + 1])
    span = slice(max(lo, hi - run.config.max_len), hi)
    t, c = span.stop - span.start, len(items)
    cand = torch.tensor(items)
    slot, hour = raw_values.names["slot"][2], raw_values.names["hour"][4]
    price = 120.0
    z = (price - raw_values.stats["price"]["mean"]) / raw_values.stats["price"]["std"]
    batch = Batch(
        user=torch.full((c,), u),
        item=cand,
        cate=torch.from_numpy(ds.item_cate.astype(np.int64))[cand],
        hist_item=torch.from_numpy(ds.seq_items[span].astype(np.int64)).expand(c, t),
        hist_cate=torch.from_numpy(ds.seq_cates[span].astype(np.int64)).expand(c, t),
        hist_mask=torch.ones(c, t, dtype=torch.bool),
        label=torch.zeros(c),
        hist_fields=torch.from_numpy(ds.seq_fields["brand"][span].astype(np.int64))
        .reshape(1, t, 1)
        .expand(c, t, 1),
        cand_fields=torch.from_numpy(ds.item_fields()[items]),
        user_fields=torch.from_numpy(ds.user_table[[u] * c].astype(np.int64)),
        context=torch.tensor([[2, 4]] * c),
        numeric=torch.full((c, 1), float(np.float32(z))),
    )
    with torch.inference_mode():
        expected = run.model(batch).logits.numpy()
    request = {
        "user": raw_values.user[u],
        "candidates": [raw_values.item[i] for i in items],
        "context": {"slot": slot, "hour": hour},
        "numeric": {"price": price},
    }
    for engine in ENGINES:
        got = _logits(open_serving(fielded["din", engine]), [request])
        assert np.abs(got - expected).max() <= TOL, engine


# ------------------------------------------------------------------ unknown and missing


def test_unknown_values_get_id_zero_and_are_listed(
    fielded: dict[str, Any], raw_values: RawValues
) -> None:
    serving = open_serving(fielded["din", "onnx"])
    item = raw_values.item[3]
    base = {"history": [item], "user_fields": {"age": "18-24", "gender": "f", "city": "north"}}
    base.update(context={"slot": raw_values.names["slot"][1], "hour": "7"}, numeric={"price": 10})
    q = _encode(serving, {**base, "candidates": [{"item": item, "brand": "NO-SUCH-BRAND"}]})
    assert q.cand_fields.tolist() == [[0]]
    assert q.unknown_values == {"brand": ["NO-SUCH-BRAND"]}
    q = _encode(serving, {**base, "user_fields": {"age": "99+", "gender": "f", "city": "north"},
                          "candidates": [item]})  # fmt: skip
    assert q.user_fields[0] == 0 and q.unknown_values == {"age": ["99+"]}
    # an unknown item with no fields is a behaviour of all-zero ids: dropped from the history
    q = _encode(serving, {**base, "history": ["NEW", item], "candidates": ["NEW2"]})
    assert q.hist_item.tolist() == [3] and q.cand_fields.tolist() == [[0]]
    assert q.unknown_items == ["NEW2", "NEW"]
    # ... but kept when it brings a known brand
    brand = raw_values.names["brand"][2]
    q = _encode(
        serving, {**base, "history": [{"item": "NEW", "brand": brand}], "candidates": [item]}
    )
    assert q.hist_item.tolist() == [0] and q.hist_fields.tolist() == [[2]]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"user": None}, "the user field 'age' is missing; this model needs it"),
        ({"context": {"slot": "feed"}}, "the context field 'hour' is missing; this model needs it"),
        ({"numeric": None}, "the numeric field 'price' is missing; this model needs it"),
        (
            {"numeric": {"price": "cheap"}},
            "candidate 0 price: expected a finite number, got 'cheap'",
        ),
        ({"context": {"slot": "feed", "hour": 3, "weather": "sun"}}, "context: 'weather' is not"),
        ({"candidates": [{"item": "i001", "shop": 1}]}, "candidate 0: 'shop' is not a field"),
        ({"candidates": [{"brand": "acme"}]}, "candidate 0: an object needs the key 'item'"),
        ({"history": [{"item": "i001", "slot": "x"}]}, "history event 0: 'slot' is not a field"),
    ],
)
def test_missing_and_bad_fields_are_one_line(
    change: dict[str, Any], message: str, fielded: dict[str, Any], raw_values: RawValues
) -> None:
    serving = open_serving(fielded["base", "torch"])
    request = {
        "user": raw_values.user[1],
        "candidates": ["i001"],
        "context": {"slot": "feed", "hour": 3},
        "numeric": {"price": 10.5},
        **change,
    }
    if request["user"] is None:
        request["history"] = ["i001"]
    with pytest.raises(RequestError) as err:
        _encode(serving, request)
    assert message in err.value.message and "\n" not in err.value.message
    assert err.value.status == 422 and err.value.hint


def test_item_category_run_refuses_fields(tiny_dataset: Path, tmp_path: Path) -> None:
    from dinctl.serving.vocab import RequestEncoder

    items = __import__("polars").read_parquet(tiny_dataset / "items.parquet")
    users = __import__("polars").DataFrame({"raw_user": ["u"], "items": [[1, 2]]})
    vocab = RequestEncoder.from_frames(items, users, 10)
    with pytest.raises(RequestError, match="context: 'slot' is not one of this model's fields"):
        vocab.encode(["I0001"], "u", context={"slot": "feed"})
    assert vocab.encode([{"item": "I0001"}], "u").cand_item.tolist() == [1]


# ------------------------------------------------------------------ predict and serve


def test_predict_jsonl_with_fields(
    fielded: dict[str, Any], raw_values: RawValues, tmp_path: Path
) -> None:
    import polars as pl

    expected, batch = _oracle(fielded["din", "eager"], slice(0, N_ROWS))
    requests = tmp_path / "requests.jsonl"
    rows = [{"request": f"r{k}", **raw_values.request(batch, k)} for k in range(N_ROWS)]
    requests.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "scores.parquet"
    result = runner.invoke(
        app, ["predict", str(fielded["din", "onnx"]), "--input", str(requests), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    scores = pl.read_parquet(out)
    assert scores["request"].to_list() == [f"r{k}" for k in range(N_ROWS)]
    assert scores["candidate"].to_list() == [r["candidates"][0]["item"] for r in rows]
    logits = np.log(scores["score"].to_numpy() / (1 - scores["score"].to_numpy()))
    assert np.abs(logits - expected).max() <= 1e-4  # float32 probabilities in the file
    # a missing field stops the run naming the row
    rows[3]["candidates"][0].pop("price")
    requests.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = runner.invoke(
        app,
        [
            "predict",
            str(fielded["din", "onnx"]),
            "--input",
            str(requests),
            "--out",
            str(out),
            "--overwrite",
        ],
    )
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "row 4: the numeric field 'price' is missing" in errors[0]


def test_http_request_with_fields(fielded: dict[str, Any], raw_values: RawValues) -> None:
    from fastapi.testclient import TestClient

    from dinctl.serving.server import Limits, create_app

    expected, batch = _oracle(fielded["din", "eager"], slice(0, 2))
    request = raw_values.request(batch, 1)
    client = TestClient(create_app(open_serving(fielded["din", "torch"]), Limits()))
    answer = client.post("/score", json={**request, "attention": True})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    got = np.log(np.array(body["scores"]) / (1 - np.array(body["scores"])))
    assert abs(got[0] - expected[1]) <= 1e-5
    assert body["unknown_values"] == {} and body["unknown_items"] == []
    assert len(body["attention"][0]) == len(request["history"])
    bad = dict(request)
    bad["candidates"] = [{**request["candidates"][0], "brand": "NOPE"}]
    assert client.post("/score", json=bad).json()["unknown_values"] == {"brand": ["NOPE"]}
    del bad["candidates"][0]["slot"]
    answer = client.post("/score", json=bad)
    assert answer.status_code == 422
    assert answer.json() == {
        "error": "the context field 'slot' is missing; this model needs it",
        "hint": 'send "context": {"slot": ...} (or the candidate\'s own value)',
    }
    meta = client.get("/metadata").json()
    assert meta["schema"]["user"] == ["age", "gender", "city"]


def test_bundle_serves_without_the_dataset(
    fielded: dict[str, Any], raw_values: RawValues, tmp_path: Path
) -> None:
    import shutil

    expected, batch = _oracle(fielded["base", "eager"], slice(0, 5))
    requests = [raw_values.request(batch, k) for k in range(5)]
    moved = tmp_path / "bundle"
    shutil.copytree(fielded["base", "onnx"], moved)
    hidden = tmp_path / "hidden-data"
    shutil.move(fielded["data"], hidden)
    try:
        got = _logits(open_serving(moved), requests)
    finally:
        shutil.move(hidden, fielded["data"])
    assert np.abs(got - expected).max() <= TOL


def test_bundle_without_values_is_refused(fielded: dict[str, Any], tmp_path: Path) -> None:
    import shutil

    from dinctl.serving.bundle import read_bundle

    copy = tmp_path / "bundle"
    shutil.copytree(fielded["din", "torch"], copy)
    (copy / "values.parquet").unlink()
    with pytest.raises(DinctlError, match="values.parquet does not exist"):
        read_bundle(copy)
    shutil.copy(fielded["din", "torch"] / "values.parquet", copy / "values.parquet")
    import polars as pl

    items = pl.read_parquet(copy / "items.parquet")
    cand = [c for c in items.columns if c.startswith("cand_")]
    assert cand
    items.drop(cand[0]).write_parquet(copy / "items.parquet")  # a bundle of an older layout
    with pytest.raises(DinctlError, match=f"items.parquet lacks the column\\(s\\) {cand[0]}"):
        read_bundle(copy)
    (copy / "users.parquet").write_text("not parquet")
    items.write_parquet(copy / "items.parquet")
    with pytest.raises(DinctlError, match="users.parquet is not a Parquet file"):
        read_bundle(copy)


def test_taobao_ad_bare_candidates_score_as_training(tmp_path: Path) -> None:
    """taobao-ad: candidates sent as bare ad ids get the training candidates' fields (the ad's
    brand, btag "ad"); user fields come from the known user, context from the request."""
    from dinctl.data.datasets.taobao import preprocess_taobao_ad
    from dinctl.serving.export import export_run

    data = tmp_path / "ad"
    preprocess_taobao_ad(LOGS.parent / "taobao-ad", data, max_len=20)
    run = _train(data, tmp_path / "din", batch_size=64)
    bundle = export_run(run, "onnx", tmp_path / "bundle")
    recorded = json.loads((bundle.out / "bundle.json").read_text())["parity"]
    assert recorded["max_abs_logit_diff"] == bundle.parity_max_abs_diff and recorded["rows"] > 0
    raw = RawValues(data)
    expected, batch = _oracle(run, slice(0, N_ROWS))
    requests = [raw.request(batch, k, bare=True) for k in range(N_ROWS)]
    assert requests[0]["candidates"][0].keys() == {"item", "pid", "adgroup", "campaign", "customer"}
    for source in (run, bundle.out):
        got = _logits(open_serving(source), requests)
        assert np.abs(got - expected).max() <= TOL, source


@pytest.mark.parametrize(
    "groups",
    [
        {"context": ("slot",)},
        {
            "user_features": LOGS / "users.csv",
            "user_feature_cols": ("city",),
            "numeric": ("price",),
        },
    ],
    ids=["context-only", "user-numeric"],
)
def test_partial_schemas_export_and_serve(groups: dict[str, Any], tmp_path: Path) -> None:
    """A schema with some groups only: the signature has just those inputs, scores still equal
    the training forward."""
    from dinctl.serving.export import export_run

    columns = LogColumns(
        user="user_id", item="item_id", category="cate", time="ts", label="click", **groups
    )
    data = tmp_path / "data"
    preprocess_logs(LOGS / "events.csv", data, columns=columns)
    run = _train(data, tmp_path / "run", batch_size=64)
    bundle = export_run(run, "torch", tmp_path / "bundle")
    inputs = json.loads((bundle.out / "bundle.json").read_text())["signature"]["inputs"]
    extra = {"context"} if "context" in groups else {"user_fields", "numeric"}
    assert {i["name"] for i in inputs} == {*INPUT_NAMES, *extra}
    raw = RawValues(data)
    expected, batch = _oracle(run, slice(0, N_ROWS))
    requests = [raw.request(batch, k) for k in range(N_ROWS)]
    for source in (run, bundle.out):
        got = _logits(open_serving(source), requests)
        assert np.abs(got - expected).max() <= TOL, source
