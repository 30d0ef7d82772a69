"""`dinctl predict`: the same requests as Parquet, CSV and JSONL score alike and equal the
eager model; streaming in small batches changes nothing; bad rows name their row."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
from dinctl.serving import predict as P
from dinctl.serving.runtime import open_serving

runner = CliRunner()


@pytest.fixture(scope="session")
def served(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return build_served(tiny_dataset, tmp_path_factory)


def write_requests(rows: list[dict[str, Any]], path: Path) -> Path:
    if path.suffix == ".jsonl":
        with open(path, "w") as f:
            for row in rows:
                f.write(json.dumps({k: v for k, v in row.items() if v is not None}) + "\n")
    elif path.suffix == ".csv":
        flat = [
            {
                "request": r["request"],
                "user": r.get("user"),
                "history": "|".join(r["history"]) if r.get("history") else None,
                "candidates": "|".join(r["candidates"]),
            }
            for r in rows
        ]
        pl.DataFrame(flat).write_csv(path)
    else:
        full = [{k: r.get(k) for k in ("request", "user", "history", "candidates")} for r in rows]
        schema = {"request": pl.Utf8, "user": pl.Utf8, "history": pl.List(pl.Utf8)}
        pl.DataFrame(full, schema={**schema, "candidates": pl.List(pl.Utf8)}).write_parquet(path)
    return path


@pytest.fixture(scope="module")
def outputs(served: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("predict")
    model = open_serving(served["onnx"])
    out = {}
    for suffix in (".jsonl", ".csv", ".parquet"):
        src = write_requests(sample_requests(), root / f"req{suffix}")
        P.predict_file(model, src, root / f"out{suffix}.parquet", attention=True)
        out[suffix] = pl.read_parquet(root / f"out{suffix}.parquet")
    return out


def test_formats_agree_and_equal_the_eager_model(
    served: dict[str, Any], outputs: dict[str, Any]
) -> None:
    first = outputs[".jsonl"]
    for other in (".csv", ".parquet"):
        assert first.equals(outputs[other]), other
    assert first.columns == ["request", "candidate", "score", "unknown_item", "attention"]
    data = served["data"]
    for row in sample_requests():
        got = first.filter(pl.col("request") == row["request"])
        assert got["candidate"].to_list() == row["candidates"]
        raw_hist = row.get("history")
        hist = item_ids(data, raw_hist) if raw_hist else user_history(data, row["user"])
        known = [c for c in row["candidates"] if c != "NEW"]
        want, att = eager_scores(served["run"], hist, item_ids(data, known))
        mask = ~got["unknown_item"].to_numpy()
        assert got["unknown_item"].to_list() == [c == "NEW" for c in row["candidates"]]
        np.testing.assert_allclose(got["score"].to_numpy()[mask], want, atol=1e-6)
        got_att = np.array(got["attention"].to_list())[mask]
        assert att is not None and got_att.shape == att.shape
        np.testing.assert_allclose(got_att, att, atol=1e-5)


def test_small_batches_stream_to_the_same_file(
    served: dict[str, Any], outputs: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(P, "PAIRS_PER_FORWARD", 60)  # a forward pass per one or two requests
    src = write_requests(sample_requests(), tmp_path / "req.parquet")
    summary = P.predict_file(open_serving(served["run"]), src, tmp_path / "o.parquet", batch_rows=3)
    got = pl.read_parquet(tmp_path / "o.parquet")
    assert summary.requests == 23 and summary.scored == got.height and summary.unknown_items == 1
    want = outputs[".parquet"].drop("attention")
    assert got["request"].equals(want["request"]) and got["candidate"].equals(want["candidate"])
    np.testing.assert_allclose(got["score"].to_numpy(), want["score"].to_numpy(), atol=1e-6)
    assert pq_row_groups(tmp_path / "o.parquet") > 1  # written as it went, not at the end


def pq_row_groups(path: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_row_groups)


def test_cli_json_summary(served: dict[str, Any], tmp_path: Path) -> None:
    src = write_requests(sample_requests(), tmp_path / "req.csv")
    out = tmp_path / "scores.parquet"
    args = ["predict", str(served["torch"]), "--input", str(src), "--out", str(out), "--json"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["requests"] == 23 and summary["output"] == str(out)
    assert summary["format"] == "torch" and summary["rows_per_s"] > 0
    assert pl.read_parquet(out).columns == ["request", "candidate", "score", "unknown_item"]
    again = runner.invoke(app, args)
    assert again.exit_code == 1 and f"error: {out} already exists" in again.stderr


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            {"user": "nobody", "candidates": ["I0001"]},
            "row 24: unknown user 'nobody' and no history",
        ),
        ({"user": "U0001", "candidates": []}, "row 24: candidates is empty"),
        ({"user": "U0001"}, "row 24: no candidates"),
        ({"candidates": ["I0001"]}, "row 24: a request needs a user or a history"),
        ({"user": "U0001", "candidates": [1.5]}, "row 24: an id must be a string or an integer"),
    ],
)
def test_bad_row_is_an_error_and_leaves_no_output(
    served: dict[str, Any], tmp_path: Path, row: dict[str, Any], message: str
) -> None:
    src = write_requests([*sample_requests(), row], tmp_path / "req.jsonl")
    with pytest.raises(DinctlError, match=message):
        P.predict_file(open_serving(served["torch"]), src, tmp_path / "o.parquet")
    assert not (tmp_path / "o.parquet").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["req.jsonl"]


def test_bad_inputs(served: dict[str, Any], tmp_path: Path) -> None:
    model = open_serving(served["torch"])
    with pytest.raises(DinctlError, match=r"cannot tell the format of .*req.txt from its suffix"):
        P.predict_file(model, tmp_path / "req.txt", tmp_path / "o.parquet")
    with pytest.raises(DinctlError, match="input file .*missing.csv does not exist"):
        P.predict_file(model, tmp_path / "missing.csv", tmp_path / "o.parquet")
    (tmp_path / "bad.jsonl").write_text('{"user": "U0001", "candidates": ["I0001"]}\n{oops\n')
    with pytest.raises(DinctlError, match=r"bad.jsonl:2 is not valid JSON"):
        P.predict_file(model, tmp_path / "bad.jsonl", tmp_path / "o.parquet")
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(DinctlError, match=r"bad.parquet is not a readable parquet file"):
        P.predict_file(model, tmp_path / "bad.parquet", tmp_path / "o.parquet")
