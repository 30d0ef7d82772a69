"""Hostile input on export, predict and serve (issue #22): nothing lost, nothing silently wrong.

Each test names the issue's case it covers. The fault classes these pin down, for every command
that has the surface, not only the one the issue tried:
  * an output that overlaps an input (export, predict) or is not a regular file/folder (every
    writer through fsutil.atomic_file/atomic_dir) is refused before anything is written;
  * a killed writer's `.OUT.tmp-PID` is swept by the next writer of OUT;
  * every file of a bundle is verified by sha256 when it is opened (predict, serve, export's
    readers), and its manifest and table values are checked;
  * numeric request values that standardise beyond float32 are a 4xx / one line;
  * predict scores a long candidate list in bounded chunks;
  * serve checks its address before loading anything.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from faults import REPO, cli, fill_disk, small_disk, stderr_lines
from test_serve_fixtures import _train, build_served, sample_requests

from dinctl.data.store import load_dataset
from dinctl.errors import DinctlError
from dinctl.serving import predict as P
from dinctl.serving.bundle import read_bundle
from dinctl.serving.runtime import open_serving

LOGS = REPO / "sample_data" / "logs"


@pytest.fixture(scope="module")
def served(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return build_served(tiny_dataset, tmp_path_factory)


@pytest.fixture(scope="module")
def own_run(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A run on a private copy of the tiny dataset: tests may try to destroy both."""
    root = tmp_path_factory.mktemp("own")
    data = root / "data"
    shutil.copytree(tiny_dataset, data)
    return {"run": _train(data, root / "run"), "data": data}


@pytest.fixture(scope="module")
def fielded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The logs sample (numeric `price`, context, user fields) and a DIN run on it."""
    from dinctl.data.datasets.logs import preprocess_logs
    from dinctl.data.schema_file import columns_from_toml

    root = tmp_path_factory.mktemp("fielded")
    data = root / "data"
    preprocess_logs(LOGS / "events.csv", data, columns=columns_from_toml(LOGS / "schema.toml"))
    return {"run": _train(data, root / "din", batch_size=64), "data": data}


def error_lines(text: str) -> list[str]:
    """stderr from its one `error:` line on (informational lines before it are allowed): the
    error and at most its hint; no traceback anywhere."""
    lines = text.strip().splitlines()
    assert not any("Traceback" in ln or "Exception" in ln for ln in lines), text[-3000:]
    errors = [k for k, ln in enumerate(lines) if ln.startswith("error: ")]
    assert len(errors) == 1 and len(lines) - errors[0] <= 2, lines
    return lines[errors[0] :]


def one_error(res: Any, *fragments: str) -> str:
    """Exit 1 with one `error: ...` line (and at most a hint) on stderr; the error line."""
    assert res.exit_code == 1, (res.exit_code, res.output)
    line = error_lines("\n".join(stderr_lines(res)))[0]
    for fragment in fragments:
        assert fragment in line, line
    return line


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def requests_file(path: Path, rows: list[dict[str, Any]] | None = None) -> Path:
    rows = sample_requests() if rows is None else rows
    if path.suffix == ".parquet":
        frame = [{"user": r.get("user"), "candidates": r["candidates"]} for r in rows]
        pl.DataFrame(frame).write_parquet(path)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def dinctl(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """`python -m dinctl ARGS` in a subprocess (a crash must not take pytest with it)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "dinctl", *args], text=True, env=env, timeout=300, **kwargs
    )


# ------------------------------------------------------------------ 1-4: outputs over inputs


@pytest.mark.parametrize("target", ["run", "dataset", "run_parent", "inside_dataset"])
def test_export_refuses_out_over_its_inputs(
    own_run: dict[str, Path], target: str
) -> None:  # case 1
    run, data = own_run["run"], own_run["data"]
    out = {
        "run": run,
        "dataset": data,
        "run_parent": run.parent,
        "inside_dataset": data / "bundle",
    }[target]
    before = {"run": tree(run), "data": tree(data)}
    res = cli("export", str(run), "--out", str(out), "--overwrite")
    one_error(res, "refusing to write over an input")
    assert tree(run) == before["run"] and tree(data) == before["data"]


def test_export_overwrite_replaces_only_a_bundle(
    own_run: dict[str, Path], tmp_path: Path
) -> None:  # case 1: --overwrite on a folder that is not a bundle
    keep = tmp_path / "notes"
    keep.mkdir()
    (keep / "todo.txt").write_text("mine")
    res = cli("export", str(own_run["run"]), "--out", str(keep), "--overwrite")
    one_error(res, "is a folder that is not a dinctl bundle")
    assert (keep / "todo.txt").read_text() == "mine"


def test_predict_refuses_out_that_is_its_input(served: dict[str, Any], tmp_path: Path) -> None:
    src = requests_file(tmp_path / "r.parquet")  # case 2
    data = src.read_bytes()
    res = cli("predict", str(served["onnx"]), "--input", str(src), "--out", str(src),
              "--overwrite")  # fmt: skip
    one_error(res, "is the input file", "refusing to write over an input")
    assert src.read_bytes() == data
    named = requests_file(tmp_path / "x.scores.parquet")  # the default output is the input
    data = named.read_bytes()
    for extra in ([], ["--overwrite"]):
        res = cli("predict", str(served["onnx"]), "--input", str(named), *extra)
        one_error(res, "the default output", "is the input file")
        assert "--out" in res.stderr and named.read_bytes() == data


def test_predict_refuses_out_inside_the_bundle(served: dict[str, Any], tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    shutil.copytree(served["onnx"], bundle)
    before = tree(bundle)
    src = requests_file(tmp_path / "r.jsonl")
    res = cli("predict", str(bundle), "--input", str(src), "--out", str(bundle / "model.onnx"),
              "--overwrite")  # fmt: skip
    one_error(res, "lies inside the model folder")
    assert tree(bundle) == before


def _special_files(tmp_path: Path) -> dict[str, Path]:
    fifo = tmp_path / "fifo.parquet"
    os.mkfifo(fifo)
    out = {"fifo": fifo}
    try:
        dev = tmp_path / "null.parquet"
        os.mknod(dev, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # what /dev/null is
        out["device"] = dev
    except (PermissionError, OSError):
        pass
    return out


def test_out_that_is_not_a_regular_file_is_refused(
    served: dict[str, Any], own_run: dict[str, Path], tmp_path: Path
) -> None:  # case 3
    src = requests_file(tmp_path / "r.jsonl")
    for kind, path in _special_files(tmp_path).items():
        mode = os.lstat(path).st_mode
        res = cli("predict", str(served["onnx"]), "--input", str(src), "--out", str(path),
                  "--overwrite")  # fmt: skip
        one_error(res, str(path), "exists and is a")
        res = cli("export", str(own_run["run"]), "--out", str(path), "--overwrite")
        one_error(res, str(path), "not a folder")
        res = cli("train", "--data", str(own_run["data"]), "--out", str(path), "--epochs", "1")
        one_error(res, str(path), "not a folder")
        assert os.lstat(path).st_mode == mode, kind  # still the FIFO / device node
    folder = tmp_path / "folder.parquet"  # case 12: --out an existing folder
    folder.mkdir()
    res = cli("predict", str(served["onnx"]), "--input", str(src), "--out", str(folder),
              "--overwrite")  # fmt: skip
    one_error(res, "is a folder, not a regular file")
    assert folder.is_dir()


def test_no_command_writes_into_a_dataset_or_a_bundle(
    own_run: dict[str, Path], served: dict[str, Any], tmp_path: Path
) -> None:
    """The class of cases 1-2 beyond export and predict: train, visualize and predict never
    drop a file into a dataset or bundle folder (each has one writer, its own)."""
    run, data = own_run["run"], own_run["data"]
    bundle = _copy(served, "onnx", tmp_path)
    before = {"data": tree(data), "bundle": tree(bundle)}
    res = cli("train", "--data", str(data), "--out", str(data / "run"), "--epochs", "1",
              "--device", "cpu")  # fmt: skip
    one_error(res, "lies inside the dataset folder")
    res = cli("visualize", "curves", str(run), "--out", str(bundle / "curves.png"))
    one_error(res, "lies inside the export bundle folder")
    config = (run / "config.json").read_bytes()
    res = cli("visualize", "curves", str(run), "--out", str(run / "config.png"))
    one_error(res, "config.json exists and is not a curves plot's JSON")
    assert (run / "config.json").read_bytes() == config and not (run / "config.png").exists()
    src = requests_file(tmp_path / "r.jsonl")
    res = cli("predict", str(run), "--input", str(src), "--out", str(data / "s.parquet"))
    one_error(res, "lies inside the dataset folder")
    assert tree(data) == before["data"] and tree(bundle) == before["bundle"]
    load_dataset(data)
    read_bundle(bundle)


def test_every_atomic_writer_refuses_special_files(tmp_path: Path) -> None:
    """The class of case 3: plots, metrics, checkpoints, tables and downloads all write
    through fsutil.atomic_file / atomic_dir."""
    from dinctl.fsutil import atomic_dir, atomic_file

    for path in _special_files(tmp_path).values():
        with pytest.raises(DinctlError, match="exists and is a"), atomic_file(path) as tmp:
            tmp.write_text("x")
        with pytest.raises(DinctlError, match="not a folder"), atomic_dir(path, True):
            pass
        assert not stat.S_ISREG(os.lstat(path).st_mode)


def test_stale_temporary_of_a_killed_run_is_swept(served: dict[str, Any], tmp_path: Path) -> None:
    src = requests_file(tmp_path / "r.jsonl")  # case 4
    out = tmp_path / "scores.parquet"
    out.write_bytes(b"old")
    stale = tmp_path / f".scores.parquet.tmp-{dead_pid()}"
    stale.write_bytes(b"half a parquet file")
    alive = tmp_path / f".scores.parquet.tmp-{os.getppid()}"  # a live writer's: kept
    alive.write_bytes(b"in progress")
    res = cli("predict", str(served["onnx"]), "--input", str(src), "--out", str(out),
              "--overwrite", "--no-progress")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert not stale.exists() and alive.exists()
    assert pl.read_parquet(out).height > 0


def test_sigterm_during_predict_keeps_the_old_output(
    served: dict[str, Any], tmp_path: Path
) -> None:
    """Case 4 for real: predict killed mid-run keeps the old output; the next run sweeps the
    killed one's temporary file."""
    rows = [{"user": f"U{u % 200 + 1:04d}", "candidates": ["I0001", "I0002"]} for u in range(4000)]
    src = requests_file(tmp_path / "r.jsonl", rows * 10)
    out = tmp_path / "scores.parquet"
    out.write_bytes(b"old")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    args = ["predict", str(served["onnx"]), "--input", str(src), "--out", str(out),
            "--overwrite", "--batch-rows", "64", "--no-progress"]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "dinctl", *args], env=env,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".scores.parquet.tmp-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    assert out.read_bytes() == b"old"
    res = cli("predict", str(served["onnx"]), "--input", str(requests_file(tmp_path / "s.jsonl")),
              "--out", str(out), "--overwrite", "--no-progress")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert list(tmp_path.glob(".scores.parquet.*")) == []


# ------------------------------------------------------------------ 6, 15: numbers in requests


def _fielded_request(fielded: dict[str, Path], price: Any) -> dict[str, Any]:
    raw_user = pl.read_parquet(fielded["data"] / "sequences.parquet")["raw_user"][0]
    raw_item = pl.read_parquet(fielded["data"] / "items.parquet")["raw_item"][0]
    return {"user": raw_user, "candidates": [raw_item], "context": {"slot": "feed", "hour": 20},
            "numeric": {"price": price}}  # fmt: skip


@pytest.mark.parametrize("price", [1e308, -1e308, 10**400])
def test_numeric_beyond_float32_is_refused(
    fielded: dict[str, Path], tmp_path: Path, price: Any
) -> None:  # cases 6 and 15
    from fastapi.testclient import TestClient

    from dinctl.serving.server import Limits, create_app

    body = _fielded_request(fielded, price)
    client = TestClient(create_app(open_serving(fielded["run"]), Limits()))
    ok = client.post("/score", json=_fielded_request(fielded, 51.0))
    assert ok.status_code == 200 and np.isfinite(ok.json()["scores"]).all()
    res = client.post("/score", content=json.dumps(body),
                      headers={"content-type": "application/json"})  # fmt: skip
    assert res.status_code == 422, res.text
    assert set(res.json()) == {"error", "hint"} and "price" in res.json()["error"]
    src = requests_file(tmp_path / "r.jsonl", [body])
    res = cli("predict", str(fielded["run"]), "--input", str(src), "--out",
              str(tmp_path / "o.parquet"), "--no-progress")  # fmt: skip
    one_error(res, "row 1", "price", "out of range")
    assert not (tmp_path / "o.parquet").exists()


@pytest.mark.parametrize(
    "body",
    [
        '{"user": 1' + "0" * 40 + ', "candidates": ["I0001"]}',
        '{"user": "U0001", "candidates": [1' + "0" * 40 + "]}",
        '{"history": [1' + "0" * 30 + '], "candidates": [1' + "0" * 30 + "]}",
        '{"user": "U0001", "candidates": [1' + "0" * 5000 + "]}",
    ],
)
def test_very_large_integers_are_a_4xx(served: dict[str, Any], body: str) -> None:  # case 15
    from fastapi.testclient import TestClient

    from dinctl.serving.server import Limits, create_app

    app = create_app(open_serving(served["onnx"]), Limits())
    client = TestClient(app, raise_server_exceptions=False)
    res = client.post("/score", content=body, headers={"content-type": "application/json"})
    assert 400 <= res.status_code < 500 or res.status_code == 200, res.text
    assert res.status_code != 500 and "detail" not in res.json()
    if res.status_code != 200:
        assert set(res.json()) <= {"error", "hint"} and "\n" not in res.json()["error"]


# ------------------------------------------------------------------ 9, 13: bundle integrity


def _copy(served: dict[str, Any], fmt: str, tmp_path: Path) -> Path:
    bundle = tmp_path / f"b-{fmt}"
    shutil.copytree(served[fmt], bundle)
    return bundle


def _flip(path: Path, n: int = 400) -> None:
    data = bytearray(path.read_bytes())
    start = len(data) // 2
    for k in range(start, min(start + n, len(data))):
        data[k] ^= 0xFF
    path.write_bytes(bytes(data))


def _rehash(bundle: Path) -> None:
    """Record the current files' hashes, as a careless hand edit of bundle.json would."""
    from dinctl.fsutil import file_digests

    manifest = json.loads((bundle / "bundle.json").read_text())
    for name in manifest.get("files", {}):
        size, d = file_digests(bundle / name, "sha256")
        manifest["files"][name] = {"bytes": size, "sha256": d["sha256"]}
    (bundle / "bundle.json").write_text(json.dumps(manifest))


def _set(bundle: Path, key: str, value: Any) -> None:
    manifest = json.loads((bundle / "bundle.json").read_text())
    manifest[key] = value
    (bundle / "bundle.json").write_text(json.dumps(manifest))


def _null_user(bundle: Path) -> None:
    users = pl.read_parquet(bundle / "users.parquet")
    users.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(None)
                       .otherwise(pl.col("raw_user")).alias("raw_user")
                       ).write_parquet(bundle / "users.parquet")  # fmt: skip


def _item_out_of_range(bundle: Path) -> None:
    items = pl.read_parquet(bundle / "items.parquet")
    items.with_columns(pl.col("item") * 1000).write_parquet(bundle / "items.parquet")


TAMPERING = {
    "model_flipped": (lambda b, f: _flip(b / f), "was changed after export"),
    "model_truncated": (lambda b, f: (b / f).write_bytes((b / f).read_bytes()[:1000]),
                        "was changed after export"),
    "model_empty": (lambda b, f: (b / f).write_bytes(b""), "was changed after export"),
    "users_null": (lambda b, f: _null_user(b), "users.parquet was changed after export"),
    "users_null_rehashed": (lambda b, f: (_null_user(b), _rehash(b)), "holds a null value"),
    "items_range_rehashed": (lambda b, f: (_item_out_of_range(b), _rehash(b)), "is outside 1..200"),
    "max_len_zero": (lambda b, f: _set(b, "max_len", 0), "max_len 0, expected an integer >= 1"),
    "max_len_text": (lambda b, f: _set(b, "max_len", "100"), "max_len '100', expected an integer"),
    "max_len_float": (lambda b, f: _set(b, "max_len", 1.5), "max_len 1.5, expected an integer"),
    "signature_empty": (lambda b, f: _set(b, "signature", {}), "malformed signature"),
    "signature_no_inputs": (lambda b, f: _set(b, "signature", {"inputs": [], "outputs": [
        {"name": "logits"}]}), "malformed signature"),
    "no_checksums": (lambda b, f: _set(b, "files", None), "records no file checksums"),
}


@pytest.mark.parametrize("fmt", ["onnx", "torch"])
@pytest.mark.parametrize("fault", sorted(TAMPERING))
def test_damaged_bundle_is_one_line_everywhere(
    served: dict[str, Any], tmp_path: Path, fmt: str, fault: str
) -> None:  # cases 9 and 13
    damage, message = TAMPERING[fault]
    bundle = _copy(served, fmt, tmp_path)
    damage(bundle, "model.onnx" if fmt == "onnx" else "model.pt2")
    with pytest.raises(DinctlError, match=message):
        open_serving(bundle)
    src = requests_file(tmp_path / "r.jsonl")
    res = cli("predict", str(bundle), "--input", str(src), "--out", str(tmp_path / "o.parquet"))
    one_error(res, message.split(",")[0])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = cli("serve", str(bundle), "--port", str(port))  # never starts: the bundle is refused
    one_error(res, message.split(",")[0])


def test_bundle_numeric_statistics_are_checked(fielded: dict[str, Path], tmp_path: Path) -> None:
    """Cases 6-7 through a bundle: a std that would make every score NaN or inf."""
    from dinctl.serving.export import export_run

    bundle = export_run(fielded["run"], "torch", tmp_path / "b").out
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert set(manifest["numeric_stats"]) == {"price"}
    open_serving(bundle)
    for std in (0.0, float("inf"), float("nan"), "1"):
        manifest["numeric_stats"]["price"]["std"] = std
        (bundle / "bundle.json").write_text(json.dumps(manifest))
        with pytest.raises(DinctlError, match="numeric_stats.price is .*expected a finite mean"):
            open_serving(bundle)


def test_intact_bundle_records_and_passes_its_hashes(served: dict[str, Any]) -> None:
    manifest = read_bundle(served["onnx"]).manifest
    assert sorted(manifest["files"]) == ["items.parquet", "model.onnx", "users.parquet"]
    assert all(len(e["sha256"]) == 64 and e["bytes"] > 0 for e in manifest["files"].values())


# ------------------------------------------------------------------ 14: a full disk


def test_export_on_a_full_disk_keeps_the_old_bundle(
    own_run: dict[str, Path], tmp_path: Path, fmt: str = "torch"
) -> None:  # torch's own writer aborted the process (exit 134); in a subprocess for that
    from dinctl.serving.export import export_run

    with small_disk(tmp_path / "disk", "8m") as disk:
        out = disk / "bundle"
        export_run(own_run["run"], fmt, out)
        before = tree(out)
        fill_disk(disk, leave=20_000)
        res = dinctl("export", str(own_run["run"]), "--format", fmt, "--out", str(out),
                     "--overwrite", capture_output=True)  # fmt: skip
        assert res.returncode == 1, res.stderr[-2000:]  # not 134: torch's writer aborted
        lines = error_lines(res.stderr)
        assert lines[0].startswith("error: cannot write") and "no space left" in lines[0], lines
        assert len(lines) == 2 and tree(out) == before
        assert sorted(p.name for p in disk.iterdir()) == ["bundle", "filler"]


# ------------------------------------------------------------------ 10: best.pt gone


def test_run_without_best_weights_is_not_served(own_run: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(own_run["run"], run)
    (run / "best.pt").unlink()
    assert (run / "checkpoint.pt").exists()
    res = cli("export", str(run), "--out", str(tmp_path / "bundle"))
    one_error(res, "best.pt does not exist")
    assert not (tmp_path / "bundle").exists()
    src = requests_file(tmp_path / "r.jsonl")
    one_error(cli("predict", str(run), "--input", str(src)), "best.pt does not exist")


def test_damaged_weights_are_refused_by_every_reader(
    own_run: dict[str, Path], tmp_path: Path
) -> None:
    """The class of case 9 for a run's weights: torch.load takes flipped bytes as weights, so
    every member of a checkpoint is checked against its CRC-32 first (export, predict,
    evaluate, resume all load through training.checkpoint.load_checkpoint)."""
    run = tmp_path / "run"
    shutil.copytree(own_run["run"], run)
    _flip(run / "best.pt")
    out = tmp_path / "bundle"
    one_error(cli("export", str(run), "--out", str(out)), "best.pt is damaged", "CRC-32")
    src = requests_file(tmp_path / "r.jsonl")
    one_error(cli("predict", str(run), "--input", str(src)), "best.pt is damaged")
    one_error(cli("evaluate", str(run)), "best.pt is damaged")
    assert not out.exists() and not (tmp_path / "r.scores.parquet").exists()


# ------------------------------------------------------------------ 12: predict inputs


def test_predict_input_faults_are_one_line(served: dict[str, Any], tmp_path: Path) -> None:
    bundle = str(served["onnx"])
    out = tmp_path / "o.parquet"
    cases = {
        "list.jsonl": (b'{"user": "U0001", "candidates": ["I0001"], "item_cates": ["C01"]}\n',
                       "row 1: item_cates must be an object"),
        "key.jsonl": (b'{"request": ["a"], "user": "U0001", "candidates": ["I0001"]}\n',
                      "row 1: request must be a string or an integer key"),
        "ctx.jsonl": (b'{"user": "U0001", "candidates": ["I0001"], "context": ["a"]}\n',
                      "row 1: context must be an object"),
        "latin.jsonl": ('{"user": "U0001", "candidates": ["caf\u00e9"]}\n'.encode("latin-1"),
                        "latin.jsonl:1 is not UTF-8 text"),
        "deep.jsonl": (b'{"user": "U0001", "candidates": ' + b"[" * 100_000 + b"]" * 100_000
                       + b"}\n", "deep.jsonl:1 nests JSON too deeply"),
    }  # fmt: skip
    good = requests_file(tmp_path / "good.parquet")
    cases["cut.parquet"] = (good.read_bytes()[:-100], "cut.parquet is not a readable parquet")
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        res = cli("predict", bundle, "--input", str(tmp_path / name), "--out", str(out))
        one_error(res, message)
        assert not out.exists()


def test_predict_file_size_limit_is_one_line(served: dict[str, Any], tmp_path: Path) -> None:
    src = requests_file(tmp_path / "r.jsonl", sample_requests() * 50)
    out = tmp_path / "o.parquet"
    out.write_bytes(b"old")

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))

    res = dinctl("predict", str(served["onnx"]), "--input", str(src), "--out", str(out),
                 "--overwrite", "--no-progress", capture_output=True, preexec_fn=limit)  # fmt: skip
    lines = error_lines(res.stderr)
    assert res.returncode == 1 and lines[0].startswith("error: cannot write"), res.stderr
    assert "file too large" in lines[0] and len(lines) == 2
    assert out.read_bytes() == b"old" and list(tmp_path.glob(".o.parquet.*")) == []


def test_json_summary_to_a_full_stdout_is_one_line(served: dict[str, Any], tmp_path: Path) -> None:
    src = requests_file(tmp_path / "r.jsonl")
    with open("/dev/full", "w") as full:
        res = dinctl("predict", str(served["onnx"]), "--input", str(src), "--out",
                     str(tmp_path / "o.parquet"), "--json", "--no-progress", stdout=full,
                     stderr=subprocess.PIPE)  # fmt: skip
    lines = error_lines(res.stderr)
    assert res.returncode == 1, res.stderr
    assert lines[0] == "error: cannot write to standard output: no space left on the device"
    assert len(lines) == 2


# ------------------------------------------------------------------ bounded candidates


def test_predict_scores_long_candidate_lists_in_bounded_chunks(
    served: dict[str, Any], tmp_path: Path
) -> None:
    model = open_serving(served["onnx"])
    widths: list[int] = []
    engine = model.engine

    def spy(inputs: dict[str, np.ndarray]) -> Any:
        widths.append(inputs["cand_item"].shape[1])
        return engine(inputs)

    model.engine = spy
    cands = [f"I{k % 200 + 1:04d}" for k in range(2500)]
    src = requests_file(tmp_path / "r.jsonl", [{"request": "long", "user": "U0007",
                                                "candidates": cands}])  # fmt: skip
    summary = P.predict_file(model, src, tmp_path / "o.parquet")
    assert summary.scored == 2500 and max(widths) <= P.CANDIDATES_PER_FORWARD
    got = pl.read_parquet(tmp_path / "o.parquet")
    assert got["candidate"].to_list() == cands and set(got["request"]) == {"long"}
    short = open_serving(served["onnx"]).vocab.encode(cands[:200], user="U0007")
    want = open_serving(served["onnx"]).score([short])[0].scores
    np.testing.assert_allclose(got["score"].to_numpy()[:200], want, atol=1e-6)
    np.testing.assert_allclose(got["score"].to_numpy()[200:400], want, atol=1e-6)


# ------------------------------------------------------------------ 16: serve's address


def test_serve_on_a_busy_port_or_bad_host_is_one_line(served: dict[str, Any]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = cli("serve", str(served["onnx"]), "--port", str(port))
    assert one_error(res) == f"error: port {port} on 127.0.0.1 is already in use"
    for host in ("192.0.2.1", "no-such-host.invalid"):  # TEST-NET: not this machine's
        one_error(cli("serve", str(served["onnx"]), "--host", host, "--port", "0"), host)


def test_serve_on_every_interface_warns(served: dict[str, Any], tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dinctl", "serve", str(served["onnx"]), "--host", "0.0.0.0",
             "--port", "0"], stdout=err, stderr=err, env=env)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while "Uvicorn running" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    first = log.read_text().splitlines()[0]
    assert first.startswith("warning: --host '0.0.0.0' listens on every network interface")
