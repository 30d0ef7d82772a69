"""`dinctl serve` for real: uvicorn in a subprocess on a free loopback port, spoken to over HTTP.

Scores equal `dinctl predict`'s and the eager model's; every bad request gets its 4xx with a
one-line reason and the server lives on; concurrent clients get their own answers (with and
without dynamic batching); SIGTERM shuts it down cleanly; the extra is optional.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import polars as pl
import pytest
from test_serve_fixtures import (
    build_served,
    eager_scores,
    item_ids,
    sample_requests,
    user_history,
)
from typer.testing import CliRunner

from dinctl.cli.main import app
from dinctl.errors import DinctlError

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture(scope="session")
def served(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return build_served(tiny_dataset, tmp_path_factory)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`dinctl serve SOURCE ...` in a subprocess; stderr goes to a file we can read."""

    def __init__(self, source: Path, log: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "dinctl", "serve", str(source), "--port", str(self.port)]
        with open(log, "w") as err:
            self.proc = subprocess.Popen([*cmd, *args], stdout=err, stderr=err, env=env)

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited early:\n{self.log.read_text()}")
            try:
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError(f"server not ready in {timeout}s:\n{self.log.read_text()}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def servers(served: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Any:
    """ "plain": the ONNX bundle, small limits; "batching": the run itself, 5 ms window."""
    root = tmp_path_factory.mktemp("serve")
    limits = ["--max-candidates", "50", "--max-history", "30"]
    both = {
        "plain": Server(served["onnx"], root / "plain.log", *limits),
        "batching": Server(served["run"], root / "batching.log", "--batch-window-ms", "5"),
    }
    try:
        for s in both.values():
            s.wait_ready()
        yield both
    finally:
        for s in both.values():
            if s.proc.poll() is None:
                s.proc.kill()
                s.proc.wait()


def post(server: Server, body: Any) -> httpx.Response:
    return httpx.post(server.url + "/score", json=body, timeout=30.0)


def test_scores_equal_predict_and_eager(
    served: dict[str, Any], servers: dict[str, Server], tmp_path: Path
) -> None:
    from dinctl.serving.predict import predict_file
    from dinctl.serving.runtime import open_serving

    src = tmp_path / "req.jsonl"
    src.write_text("".join(pl.DataFrame([r]).write_ndjson() for r in sample_requests()))
    predict_file(open_serving(served["onnx"]), src, tmp_path / "o.parquet")
    predicted = pl.read_parquet(tmp_path / "o.parquet")
    data = served["data"]
    for row in sample_requests():
        body = {k: v for k, v in row.items() if k != "request"}
        want = predicted.filter(pl.col("request") == row["request"])["score"].to_numpy()
        for server in servers.values():
            res = post(server, body)
            assert res.status_code == 200, res.text
            got = res.json()
            assert got["unknown_items"] == (["NEW"] if "NEW" in row["candidates"] else [])
            np.testing.assert_allclose(got["scores"], want, atol=1e-6)
            assert got["took_ms"] > 0 and got["model"].startswith("din-dice (")
        hist = row.get("history")
        hist_ids = item_ids(data, hist) if hist else user_history(data, row["user"])
        known = [c for c in row["candidates"] if c != "NEW"]
        eager, _ = eager_scores(served["run"], hist_ids, item_ids(data, known))
        np.testing.assert_allclose(want[[c != "NEW" for c in row["candidates"]]], eager, atol=1e-6)


def test_attention_on_request(served: dict[str, Any], servers: dict[str, Server]) -> None:
    hist = ["I0005", "I0010", "I0020"]
    for server in servers.values():
        got = post(server, {"history": hist, "candidates": ["I0007", "I0008"], "attention": True})
        _, att = eager_scores(
            served["run"],
            item_ids(served["data"], hist),
            item_ids(served["data"], ["I0007", "I0008"]),
        )
        np.testing.assert_allclose(np.array(got.json()["attention"]), att, atol=1e-5)
        assert "attention" not in post(server, {"history": hist, "candidates": ["I0007"]}).json()


BAD = [
    (b'{"user": ', "application/json", 400, "malformed JSON body"),
    (
        b'{"user": "U0001", "candidates": "I0001"}',
        None,
        422,
        "candidates: Input should be a valid list",
    ),
    (
        b'{"user": "U0001", "candidates": ["I0001", 1.5]}',
        None,
        422,
        "candidates.1: expected a string or an integer id, got 1.5",
    ),
    (
        b'{"user": "U0001", "candidates": ["I0001"], "attention": "yes"}',
        None,
        422,
        "attention: Input should be a valid boolean",
    ),
    (
        b'{"user": ["U0001"], "candidates": ["I0001"]}',
        None,
        422,
        "user: expected a string or an integer id",
    ),
    (
        b'{"user": "U0001", "candidates": ["I0001"], "extra": 1}',
        None,
        422,
        "extra: Extra inputs are not permitted",
    ),
    (b'{"user": "U0001"}', None, 422, "candidates: Field required"),
    (
        b'{"user": "U0001", "candidates": []}',
        None,
        422,
        "candidates is empty; expected at least one",
    ),
    (
        b'{"user": "nobody", "candidates": ["I0001"]}',
        None,
        404,
        "unknown user 'nobody' and no history given",
    ),
    (b'{"candidates": ["I0001"]}', None, 422, "a request needs a user or a history; got neither"),
    (b"[1, 2]", None, 422, "the body must be a JSON object"),
    (
        b'{"user": "U0001", "candidates": ["I0001"]}',
        "text/plain",
        415,
        "content type 'text/plain' is not JSON",
    ),
]


@pytest.mark.parametrize(("body", "kind", "status", "message"), BAD)
def test_bad_requests_get_a_4xx_with_one_line(
    servers: dict[str, Server], body: bytes, kind: str | None, status: int, message: str
) -> None:
    server = servers["plain"]
    headers = {"content-type": kind or "application/json"}
    res = httpx.post(server.url + "/score", content=body, headers=headers, timeout=30.0)
    assert res.status_code == status, res.text
    error = res.json()["error"]
    assert message in error and "\n" not in error
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}


def test_limits_are_enforced(servers: dict[str, Server]) -> None:
    server = servers["plain"]
    res = post(server, {"user": "U0001", "candidates": [f"I{i:04d}" for i in range(1, 52)]})
    assert res.status_code == 422
    assert res.json()["error"] == "51 candidates exceed the limit of 50"
    res = post(server, {"history": ["I0001"] * 31, "candidates": ["I0002"]})
    assert res.status_code == 422
    assert res.json()["error"] == "a history of 31 items exceeds the limit of 30"
    assert (
        post(server, {"history": ["I0001"] * 30, "candidates": ["I0002"] * 50}).status_code == 200
    )


def test_metadata(served: dict[str, Any], servers: dict[str, Server]) -> None:
    meta = httpx.get(servers["plain"].url + "/metadata").json()
    assert meta["format"] == "onnx" and meta["model"]["model"] == "din"
    assert meta["dataset"]["checksum"] and meta["limits"]["max_candidates"] == 50
    assert [o["name"] for o in meta["signature"]["outputs"]] == ["logits", "attention"]
    assert httpx.get(servers["batching"].url + "/metadata").json()["format"] == "eager"
    assert httpx.get(servers["plain"].url + "/openapi.json").status_code == 200


def test_concurrent_clients_get_their_own_answers(
    served: dict[str, Any], servers: dict[str, Server]
) -> None:
    from dinctl.serving.runtime import open_serving

    model = open_serving(served["run"])
    bodies = [
        {"history": [f"I{(k * 13 + j) % 200 + 1:04d}" for j in range(1 + k % 9)],
         "candidates": [f"I{(k * 5 + j) % 200 + 1:04d}" for j in range(1 + k % 4)]}
        for k in range(24)
    ]  # fmt: skip
    want = [model.score([model.vocab.encode(b["candidates"], history=b["history"])])[0].scores
            for b in bodies]  # fmt: skip
    for server in servers.values():
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda b, s=server: post(s, b).json()["scores"], bodies))
        for got, exp in zip(answers, want, strict=True):
            np.testing.assert_allclose(got, exp, atol=1e-6)


def test_missing_extra_is_one_line(served: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("fastapi", "uvicorn", "onnxruntime", "onnx", "onnxscript"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "dinctl.serving.server", raising=False)
    for args in (["--help"], ["serve", "--help"], ["export", "--help"], ["predict", "--help"]):
        assert runner.invoke(app, args).exit_code == 0
    res = runner.invoke(app, ["serve", str(served["run"])])
    assert res.exit_code == 1
    assert "error: the serving extra is not installed (no module named 'fastapi')" in res.stderr
    assert "hint: pip install 'dinctl[serve]'" in res.stderr
    from dinctl.serving.runtime import open_serving

    with pytest.raises(DinctlError, match="no module named 'onnxruntime'"):
        open_serving(served["onnx"])


def test_sigterm_shuts_down_cleanly(servers: dict[str, Server]) -> None:
    for server in servers.values():
        assert post(server, {"user": "U0001", "candidates": ["I0001"]}).status_code == 200
        code = server.stop()
        log = server.log.read_text()
        assert code in (0, -signal.SIGTERM), log
        assert "Shutting down" in log and "Finished server process" in log
        assert "Traceback" not in log


def test_help_imports_no_serving_library() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from dinctl.cli.main import app\n"
        "for args in (['--help'], ['serve', '--help'], ['export', '--help'],\n"
        "             ['predict', '--help']):\n"
        "    assert CliRunner().invoke(app, args).exit_code == 0\n"
        "heavy = ('torch', 'fastapi', 'uvicorn', 'onnx', 'onnxruntime')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
