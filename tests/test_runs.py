"""dinctl.runs: the run folder's format (names, config.json, log.jsonl, manifest, path → runs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dinctl import runs
from dinctl.errors import DinctlError

pytestmark = pytest.mark.notorch  # torch-free: `make test-py` runs it on 3.10 and 3.13


def _run(folder: Path, epochs: int = 2, logged: int = 2, best: bool = True) -> Path:
    folder.mkdir(parents=True)
    config = {
        "train": {"model": "din", "epochs": epochs},
        "model": {"model": "din"},
        "dataset": {
            "path": "/d/x",
            "checksum": "a" * 64,
            "meta": {"dataset": "amazon", "category": "Books"},
        },
    }
    (folder / runs.CONFIG_FILE).write_text(json.dumps(config))
    lines = [{"event": "epoch", "epoch": k, "train_loss": 0.5} for k in range(1, logged + 1)]
    (folder / runs.LOG_FILE).write_text("".join(json.dumps(x) + "\n" for x in lines))
    if best:
        (folder / runs.BEST_FILE).write_text("w")
    return folder


def test_runs_module_does_not_import_torch() -> None:
    code = (
        "import sys, dinctl.runs, dinctl.tables, dinctl.experiment; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_file_names_per_split() -> None:
    assert (runs.metrics_file("test"), runs.predictions_file("test")) == (
        "metrics.json",
        "predictions.parquet",
    )
    assert (runs.metrics_file("valid"), runs.predictions_file("valid")) == (
        "metrics-valid.json",
        "predictions-valid.parquet",
    )
    # no other module spells the run folder's file names
    for path in Path(runs.__file__).parent.rglob("*.py"):
        if path.name != "runs.py":
            text = path.read_text(encoding="utf-8")
            for name in ("config.json", "checkpoint.pt", "best.pt", "log.jsonl", "metrics.json"):
                assert f'"{name}"' not in text, f"{path} spells {name}"


def test_config_reading_and_labels(tmp_path: Path) -> None:
    run = _run(tmp_path / "r")
    assert runs.read_config(run)["train"]["epochs"] == 2
    assert runs.stored_train_config(run) == {"model": "din", "epochs": 2}
    assert runs.dataset_checksum_of(run) == "a" * 64
    assert runs.run_labels(run) == ("din", "amazon (Books)")
    (run / runs.CONFIG_FILE).write_text("[1]")
    with pytest.raises(DinctlError, match="has no `train` section"):
        runs.read_config(run)
    assert runs.stored_train_config(run) is None
    assert runs.run_labels(tmp_path / "nope") == ("?", "?")


def test_training_complete_reads_the_log(tmp_path: Path) -> None:
    assert runs.training_complete(_run(tmp_path / "done", epochs=2, logged=2))
    assert not runs.training_complete(_run(tmp_path / "short", epochs=3, logged=2))
    assert not runs.training_complete(_run(tmp_path / "nobest", best=False))
    stopped = _run(tmp_path / "stopped", epochs=20, logged=4)  # patience ran out at epoch 4
    assert not runs.training_complete(stopped)
    with open(stopped / runs.LOG_FILE, "a") as f:
        f.write(json.dumps({"event": "early_stop", "epoch": 4}) + "\n")
    assert runs.training_complete(stopped)
    torn = _run(tmp_path / "torn", epochs=3, logged=2)
    with open(torn / runs.LOG_FILE, "a") as f:
        f.write('{"event": "epoch", "ep')  # cut by a kill: skipped when not strict
    assert runs.last_logged_epoch(torn) == 2
    with pytest.raises(DinctlError, match=r"log.jsonl:3: expected a JSON object, got "):
        runs.epoch_records(torn)


def test_expand_runs_one_way_for_every_kind_of_path(tmp_path: Path) -> None:
    a, b = _run(tmp_path / "plain" / "b"), _run(tmp_path / "plain" / "a")
    assert runs.expand_runs([a]) == [a]
    assert runs.expand_runs([tmp_path / "plain"]) == [b, a]  # sorted by name
    assert runs.expand_runs([a, tmp_path / "plain"]) == [a, b]  # no duplicates

    exp = tmp_path / "exp"
    _run(exp / "x-s0")
    _run(exp / "y-s0", best=False)
    manifest = {
        "format_version": 1,
        "runs": [{"name": "y-s0", "status": "pending"}, {"name": "x-s0", "status": "done"}],
    }
    (exp / runs.MANIFEST_FILE).write_text(json.dumps(manifest))
    assert runs.expand_runs([exp]) == [exp / "x-s0"]  # finished only
    assert runs.expand_runs([exp], need="log") == [exp / "y-s0", exp / "x-s0"]

    with pytest.raises(DinctlError, match="run folder .* does not exist"):
        runs.expand_runs([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DinctlError, match="neither a run folder nor an experiment folder"):
        runs.expand_runs([tmp_path / "empty"])
    with pytest.raises(DinctlError, match="no run folder given"):
        runs.expand_runs([])


def test_latest_run(tmp_path: Path) -> None:
    old = _run(tmp_path / "old")
    new = _run(tmp_path / "exp" / "new-s0")
    os.utime(old / runs.BEST_FILE, (1e9, 1e9))
    os.utime(new / runs.BEST_FILE, (2e9, 2e9))
    assert runs.latest_run(tmp_path) == new
    assert runs.expand_runs([], runs_root=tmp_path) == [new]


def test_manifest_metrics_keep_their_old_keys_readable(tmp_path: Path) -> None:
    manifest = {
        "format_version": 1,
        "runs": [{"name": "a", "metrics": {"auc": 0.7, "gauc": 0.6, "logloss": 0.5}}],
    }
    (tmp_path / runs.MANIFEST_FILE).write_text(json.dumps(manifest))
    metrics = runs.read_manifest(tmp_path)["runs"][0]["metrics"]
    assert metrics == {"global_auc": 0.7, "user_weighted_auc": 0.6, "logloss": 0.5}
    (tmp_path / runs.MANIFEST_FILE).write_text(json.dumps({"format_version": 1, "runs": [3]}))
    with pytest.raises(DinctlError, match="has no valid `runs` list"):
        runs.read_manifest(tmp_path)
