"""Issue 25: the fast request path answers as the pydantic reference does, the engine and its
measured speed are recorded and reported, and emulated bf16 is refused in one line."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from test_serve_fixtures import build_served, sample_requests
from typer.testing import CliRunner

from dinctl.cli.main import app
from dinctl.errors import DinctlError
from dinctl.serving.request_body import ScoreRequest, parse_fast, request_fields
from dinctl.serving.runtime import describe_engine, open_serving
from dinctl.serving.server import Limits, create_app

runner = CliRunner()


@pytest.fixture(scope="session")
def served(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return build_served(tiny_dataset, tmp_path_factory)


@pytest.fixture(scope="module")
def clients(served: dict[str, Any]) -> dict[str, TestClient]:
    """The same model behind the fast path and behind the pydantic reference path."""
    model = open_serving(served["run"])
    limits = Limits(max_candidates=50, max_history=30)
    return {
        "fast": TestClient(create_app(model, limits)),
        "reference": TestClient(create_app(model, limits, fast=False)),
    }


BODIES: list[tuple[bytes, str | None]] = [
    *[(json.dumps({k: v for k, v in r.items() if k != "request"}).encode(), None)
      for r in sample_requests()],
    (b'{"history": ["I0005", 7, "I0020"], "candidates": [3, "I0007"], "attention": true}', None),
    (b'{"user": 1, "candidates": ["I0001"], "item_cates": {"NEW": "C001"}}', None),
    (b'{"user": "U0001", "candidates": ["NEW"], "item_cates": {"NEW": 5}}', None),
    (b'{"user": "U0001", "candidates": ["I0001"], "history": null, "attention": false}', None),
    (b'{"user": ', None),
    (b"", None),
    (b"NaN", None),
    (b'{"user": "U0001", "candidates": [1e400]}', None),
    (b'{"user": "U0001", "candidates": [123456789012345678901234567890]}', None),
    (b'{"user": "U0001", "candidates": ["I0001", 1.5]}', None),
    (b'{"user": "U0001", "candidates": ["I0001", true]}', None),
    (b'{"user": true, "candidates": ["I0001"]}', None),
    (b'{"user": "U0001", "candidates": "I0001"}', None),
    (b'{"user": "U0001", "candidates": ["I0001"], "attention": "yes"}', None),
    (b'{"user": "U0001", "candidates": ["I0001"], "attention": 1}', None),
    (b'{"user": "U0001", "candidates": ["I0001"], "extra": 1}', None),
    (b'{"user": "U0001", "candidates": [{"item": "I0001"}]}', None),
    (b'{"user": "U0001", "candidates": [{"item": "I0001", "brand": 2.5}]}', None),
    (b'{"user": "U0001", "candidates": ["I0001"], "context": {"slot": 1}}', None),
    (b'{"user": "U0001", "candidates": ["I0001"], "numeric": {"price": 1e300}}', None),
    (b'{"user": "U0001", "candidates": ["I0001"], "item_cates": {"I0001": null}}', None),
    (b'{"user": "U0001"}', None),
    (b'{"user": "U0001", "candidates": []}', None),
    (b'{"user": "nobody", "candidates": ["I0001"]}', None),
    (b'{"candidates": ["I0001"]}', None),
    (b'{"history": ["I0001"], "candidates": ["I0002"]}', "application/json; charset=utf-8"),
    (b'{"history": ["I0001"], "candidates": ["I0002"]}', "application/vnd.api+json"),
    (b'{"history": ["I0001"], "candidates": ["I0002"]}', "text/json"),
    (b'{"history": ["I0001"], "candidates": ["I0002"]}', "text/plain"),
    (b'{"history": ["I0001"] , "candidates": ["I0002"]}', ""),
    (b"[1, 2]", None),
    (b'"\\ud800"', None),
    (json.dumps({"user": "U0001", "candidates": [f"I{i:04d}" for i in range(1, 52)]}).encode(),
     None),
    (json.dumps({"history": ["I0001"] * 31, "candidates": ["I0002"]}).encode(), None),
]  # fmt: skip


def _answer(client: TestClient, body: bytes, kind: str | None) -> tuple[int, Any]:
    headers = {} if kind == "" else {"content-type": kind or "application/json"}
    res = client.post("/score", content=body, headers=headers)
    payload = res.json()
    if isinstance(payload, dict):
        payload.pop("took_ms", None)
    return res.status_code, payload


@pytest.mark.parametrize(("body", "kind"), BODIES)
def test_fast_path_answers_as_the_reference(
    clients: dict[str, TestClient], body: bytes, kind: str | None
) -> None:
    fast = _answer(clients["fast"], body, kind)
    assert fast == _answer(clients["reference"], body, kind)
    if fast[0] == 200:
        assert len(fast[1]["scores"]) == len(json.loads(body)["candidates"])
    else:
        assert 400 <= fast[0] < 500 and "\n" not in fast[1]["error"]


def test_the_fast_path_reads_plain_bodies_and_declines_the_rest() -> None:
    plain = b'{"history": ["I0001", 2], "candidates": ["I0002"], "numeric": {"x": 1.5}}'
    assert parse_fast(plain, "application/json") == request_fields(
        ScoreRequest.model_validate(json.loads(plain))
    )
    assert parse_fast(plain, "text/plain") is None
    for body, _ in BODIES[: len(sample_requests())]:  # the fast path itself answers these
        assert parse_fast(body, "application/json") is not None
    for bad in (b'{"candidates": [true]}', b'{"candidates": [1.0]}', b"[1]", b'{"user": 1}'):
        assert parse_fast(bad, "application/json") is None


IDS = st.one_of(st.text(max_size=4), st.integers(-(2**70), 2**70), st.booleans(), st.floats(),
                st.none())  # fmt: skip
VALUES = st.dictionaries(st.sampled_from(["item", "brand", "slot"]), IDS, max_size=3)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["user", "history", "candidates", "item_cates", "numeric", "attention",
                         "extra"]),
        st.one_of(IDS, st.lists(st.one_of(IDS, VALUES), max_size=4), VALUES),
        max_size=5,
    )
)  # fmt: skip
def test_the_fast_path_accepts_only_what_pydantic_accepts_unchanged(body: dict[str, Any]) -> None:
    raw = json.dumps(body).encode()
    fast = parse_fast(raw, "application/json")
    if fast is None:
        return
    assert fast == request_fields(ScoreRequest.model_validate(json.loads(raw)))


def test_export_records_engine_speeds_and_serve_reports_them(served: dict[str, Any]) -> None:
    for fmt in ("onnx", "torch"):
        manifest = json.loads((served[fmt] / "bundle.json").read_text())
        speed = manifest["speed"]
        assert speed["request"] == {"candidates": 200, "history": 100}
        assert set(speed["ms"]) == {"eager", fmt} and all(v > 0 for v in speed["ms"].values())
        assert speed["fastest"] == min(speed["ms"], key=speed["ms"].get)
        assert set(speed["cpu"]) >= {"avx2", "avx512f", "avx512_bf16"}
        model = open_serving(served[fmt])
        assert model.info["engine"]["name"] == {"onnx": "onnxruntime", "torch": "torch.export"}[fmt]
        line = describe_engine(model)
        assert line.startswith(f"engine: {model.info['engine']['name']} fp32") and "\n" not in line
        assert f"{speed['ms']['eager']:.1f} ms" in line
        assert ("was faster" in line) == (speed["fastest"] != fmt)


def test_describe_engine_with_a_start_up_measurement(served: dict[str, Any]) -> None:
    from dinctl.serving.runtime import measure_speed

    model = open_serving(served["run"])
    speed = measure_speed(model, repeats=2)
    assert speed["engine_ms"] > 0 and speed["floor_ms"] > 0
    assert speed["ratio"] == pytest.approx(speed["engine_ms"] / speed["floor_ms"])
    line = describe_engine(model, speed)
    assert line.startswith("engine: torch eager fp32, ")
    assert "per request of 200 candidates × 100 history" in line and "the floor" in line


def test_bf16_is_refused_on_a_cpu_without_bf16(
    served: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dinctl.training import device

    monkeypatch.setattr(device, "cpu_bf16_instructions", lambda: None)
    with pytest.raises(DinctlError, match=r"^--bf16 is refused: this CPU has no bf16"):
        open_serving(served["run"], bf16=True)
    for command in (["serve", str(served["run"]), "--bf16", "--port", "1"],
                    ["predict", str(served["run"]), "--bf16", "--input", "x.jsonl"]):  # fmt: skip
        res = runner.invoke(app, command)
        errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error: ")]
        assert res.exit_code == 1 and len(errors) == 1, res.stderr
        assert errors[0] == (
            "error: --bf16 is refused: this CPU has no bf16 instructions (avx512_bf16 or AMX)"
        )


def test_bf16_serves_where_the_cpu_has_it(
    served: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dinctl.serving import runtime
    from dinctl.training import device

    monkeypatch.setattr(device, "cpu_bf16_instructions", lambda: "avx512_bf16")
    # the tiny test model moves more than bf16's 1e-3 tolerance allows; that check is not
    # what this test is about
    monkeypatch.setattr(runtime, "check_bf16", lambda *args: 0.0)
    model = open_serving(served["run"], bf16=True)
    assert model.info["engine"]["precision"] == "bf16 matmul"
    assert model.info["format"] == "eager-bf16"
    plain = open_serving(served["run"])
    q = plain.vocab.encode(["I0001", "I0002"], history=["I0005", "I0010"])
    np.testing.assert_allclose(model.score([q])[0].scores, plain.score([q])[0].scores, atol=1e-2)


# a child process records OMP_WAIT_POLICY at the moment torch is first imported (libgomp reads
# it then, once), while `dinctl serve|predict` refuses a missing source
WAIT_PROBE = """
import importlib.abc, os, sys
seen = []
class Probe(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and not seen:
            seen.append(os.environ.get("OMP_WAIT_POLICY"))
        return None
sys.meta_path.insert(0, Probe())
from typer.testing import CliRunner
from dinctl.cli.main import app
res = CliRunner().invoke(app, sys.argv[1:])
print(seen[0] if seen else "torch not imported", res.exit_code)
"""


@pytest.mark.parametrize("command", ["serve", "predict"])
@pytest.mark.parametrize("given", [None, "ACTIVE"])
def test_serving_commands_wait_passively_unless_told(
    command: str, given: str | None, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given:
        env["OMP_WAIT_POLICY"] = given
    args = [command, str(tmp_path / "missing"), "--port", "1"] if command == "serve" else [
        command, str(tmp_path / "missing"), "--input", str(tmp_path / "x.jsonl")]  # fmt: skip
    out = subprocess.run([sys.executable, "-c", WAIT_PROBE, *args], env=env,
                         capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    assert out == [given or "PASSIVE", "1"]


def test_onnx_runtime_workers_do_not_spin(served: dict[str, Any]) -> None:
    from dinctl.serving.bundle import read_bundle
    from dinctl.serving.engines import SPINNING_OPTIONS, onnx_session

    options = onnx_session(read_bundle(served["onnx"]).model_file, 1).get_session_options()
    assert [options.get_session_config_entry(k) for k in SPINNING_OPTIONS] == ["0", "0"]


class RecordingModel:
    """A stand-in ServingModel whose forward waits until `together` forwards run at once,
    then records torch's intra-op threads."""

    def __init__(self, engine: str, together: int) -> None:
        self.info = {"engine": {"name": engine, "threads": 2}}
        self.barrier = threading.Barrier(together, timeout=20)
        self.seen: list[int] = []

    def score(self, requests: list[Any], attention: bool) -> list[Any]:
        import torch

        self.barrier.wait()  # every forward of the test is running now
        self.seen.append(torch.get_num_threads())
        self.barrier.wait()
        return list(requests)


@pytest.mark.parametrize(
    ("engine", "lanes", "expected"),
    [("torch eager", 1, [2]), ("torch eager", 2, [1, 2]), ("onnxruntime", 2, [3, 3])],
)
def test_lanes_share_out_the_intra_op_threads(engine: str, lanes: int, expected: list[int]) -> None:
    """Two requests at once on two lanes: the first handed over alone gets both threads, the
    second one; ONNX Runtime's lanes leave torch's setting alone."""
    import asyncio

    import torch

    from dinctl.serving.server import Batcher

    before = torch.get_num_threads()
    torch.set_num_threads(3)  # what a torch engine's lanes must not keep
    model = RecordingModel(engine, lanes)
    batcher = Batcher(model, Limits(lanes=lanes))  # type: ignore[arg-type]

    async def run(n: int) -> list[Any]:
        return await asyncio.gather(*(batcher.forward([k], False) for k in range(n)))

    try:
        assert asyncio.run(run(lanes)) == [[k] for k in range(lanes)]
        assert sorted(model.seen) == expected and batcher.busy == 0
        if engine != "onnxruntime":  # a lone request after them gets every thread back
            model.barrier, model.seen = threading.Barrier(1), []
            asyncio.run(run(1))
            assert model.seen == [2]
    finally:
        torch.set_num_threads(before)


def test_serve_freezes_the_start_up_heap(
    served: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What start-up allocated is out of the cyclic collector's reach when uvicorn starts."""
    import gc

    import uvicorn

    from dinctl.serving import server

    frozen: list[int] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: frozen.append(gc.get_freeze_count()))
    gc.unfreeze()
    try:
        server.serve(served["run"], port=1)
    finally:
        gc.unfreeze()
    assert len(frozen) == 1 and frozen[0] > 10_000


def test_each_worker_scores_one_request_before_it_serves(
    served: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--workers N`: every worker process opens its own model and warms its engine (the unit
    kernel's cache load) before its first request; the engine line names the kernel."""
    from dinctl.serving import server

    calls: list[tuple[int, ...]] = []
    real_open = server.open_serving

    def opened(*args: Any, **kwargs: Any) -> Any:
        model = real_open(*args, **kwargs)
        engine = model.engine
        model.engine = lambda inputs: (calls.append(inputs["cand_item"].shape), engine(inputs))[1]
        return model

    monkeypatch.setattr(server, "open_serving", opened)
    monkeypatch.setenv(server.ENV_CONFIG, json.dumps({
        "source": str(served["run"]), "bf16": False, "threads": 0, "limits": {},
    }))  # fmt: skip
    app = server.app_from_env()
    assert calls == [(1, 200)] and app is not None
    assert "activation unit: fused kernel" in describe_engine(real_open(served["run"]))


def test_speed_is_measured_on_ids_drawn_from_the_vocabularies() -> None:
    """ONNX Runtime took twice as long on varied ids as on all-ones: the timed request draws
    its item and category ids from the model's vocabularies, seeded."""
    from dinctl.serving.engines import request_inputs
    from dinctl.serving.scorer import signature

    model = {"n_items": 50, "n_cates": 4}
    inputs = request_inputs(signature(True), 30, 20, model)
    shapes = {k: v.shape for k, v in inputs.items()}
    assert shapes == {"hist_item": (1, 20), "hist_cate": (1, 20), "hist_len": (1,),
                      "cand_item": (1, 30), "cand_cate": (1, 30)}  # fmt: skip
    for name, high in (("item", 50), ("cate", 4)):
        ids = np.concatenate([inputs[f"hist_{name}"].ravel(), inputs[f"cand_{name}"].ravel()])
        assert ids.min() >= 1 and ids.max() <= high and len(np.unique(ids)) > 2
    assert inputs["hist_len"].tolist() == [20]
    again = request_inputs(signature(True), 30, 20, model)
    assert all(np.array_equal(inputs[k], again[k]) for k in inputs)
