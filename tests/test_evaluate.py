"""`dinctl evaluate` end to end: train tiny runs, score and compare them, test every error."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from dinctl.cli.main import app
from dinctl.evaluation import evaluate_run
from dinctl.metrics import auc_score, log_loss, rela_impr, user_auc_details
from dinctl.runs import read_metrics

runner = CliRunner()

JSON_TOP_KEYS = {"split", "metric", "baseline", "runs"}
JSON_ROW_KEYS = {
    "run",
    "model",
    "act",
    "reg",
    "user_weighted_auc",
    "global_auc",
    "logloss",
    "rela_impr",
    "users_scored",
    "users_skipped",
    "n",
    "positive_rate",
    "split",
    "dataset_checksum",
    "metrics_file",
    "predictions_file",
}


def _train(data: Path, out: Path, model: str, act: str = "prelu", reg: str = "none") -> Path:
    from dinctl.training.config import resolve_config
    from dinctl.training.loop import train

    cfg = resolve_config(
        {
            "data": str(data),
            "out": str(out),
            "model": model,
            "act": act,
            "reg": reg,
            "epochs": 1,
            "batch_size": 256,
            "lr": 0.01,
            "emb_dim": 8,
            "device": "cpu",
            "seed": 0,
        }
    )
    return train(cfg).run_dir


@pytest.fixture(scope="module")
def trained(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A `runs/` folder with a DIN (Dice, MBA) run and a BaseModel run, trained for 1 epoch."""
    root = tmp_path_factory.mktemp("eval") / "runs"
    base = _train(tiny_dataset, root / "base", "base")
    din = _train(tiny_dataset, root / "din", "din", act="dice", reg="mba")
    os.utime(din / "best.pt", (2e9, 2e9))  # din is the most recent run
    return {"root": root, "base": base, "din": din, "data": tiny_dataset}


def _clone_run(src: Path, dst: Path, *, weights: bool = True, **dataset: str) -> Path:
    """Copy a run folder, optionally without weights or with another dataset path/checksum."""
    dst.mkdir(parents=True)
    config = json.loads((src / "config.json").read_text())
    config["dataset"].update(dataset)
    (dst / "config.json").write_text(json.dumps(config))
    if weights:
        shutil.copy(src / "best.pt", dst / "best.pt")
    return dst


def _dataset_with_test(src: Path, dst: Path, test: pl.DataFrame) -> tuple[Path, str]:
    """A copy of a dataset with another test split and a consistent checksum."""
    from dinctl.data.store import dataset_checksum

    shutil.copytree(src, dst)
    test.write_parquet(dst / "test.parquet")
    meta = json.loads((dst / "meta.json").read_text())
    meta["checksum"] = dataset_checksum(dst)
    (dst / "meta.json").write_text(json.dumps(meta))
    return dst, meta["checksum"]


# --------------------------------------------------------------------------- library


def test_metrics_json_agrees_with_predictions(trained: dict[str, Path]) -> None:
    run = trained["din"]
    result = evaluate_run(run, "test")
    test = pl.read_parquet(trained["data"] / "test.parquet")
    pred = pl.read_parquet(run / "predictions.parquet")
    assert pred.columns == ["user", "item", "label", "score"]
    assert pred.height == test.height  # one row per split row, in file order
    assert pred["user"].to_list() == test["user"].to_list()
    assert pred["item"].to_list() == test["item"].to_list()
    assert pred["label"].to_list() == test["label"].cast(pl.Int8).to_list()

    y, s, u = pred["label"].to_numpy(), pred["score"].to_numpy(), pred["user"].to_numpy()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["global_auc"] == auc_score(y, s) == result.global_auc
    details = user_auc_details(y, s, u)
    assert metrics["user_weighted_auc"] == details.score == result.user_weighted_auc
    assert metrics["metric"] == "user_weighted_auc"
    assert metrics["users_scored"] == details.users_scored
    assert metrics["users_skipped"] == details.users_skipped
    assert metrics["logloss"] == pytest.approx(log_loss(y, s))
    assert metrics["n"] == test.height
    assert metrics["positive_rate"] == pytest.approx(float(y.mean()))
    assert metrics["split"] == "test"
    assert (
        metrics["dataset"]["checksum"]
        == json.loads((trained["data"] / "meta.json").read_text())["checksum"]
    )
    assert metrics["config"]["model"] == "din" and metrics["config"]["act"] == "dice"
    assert read_metrics(run, "test") == metrics
    assert read_metrics(run, "valid") is None
    # the planted signal is learnable: one epoch already beats random guessing
    assert metrics["global_auc"] > 0.55


def test_scores_match_a_plain_forward_pass(trained: dict[str, Path]) -> None:
    import torch

    from dinctl.data.batching import SplitTensors, WindowGatherer
    from dinctl.data.store import load_dataset
    from dinctl.inference import open_run

    run = open_run(trained["base"])
    ds = load_dataset(trained["data"])
    rows = SplitTensors(ds.split("valid"))
    batch = WindowGatherer(ds, run.config.max_len).gather(*rows.rows(slice(0, 50)))
    with torch.no_grad():
        expect = torch.sigmoid(run.model(batch).logits).numpy()  # (50,)
    evaluate_run(trained["base"], "valid", batch_size=7)  # odd batches, same scores
    got = pl.read_parquet(trained["base"] / "predictions-valid.parquet")["score"]
    np.testing.assert_allclose(got.to_numpy()[:50], expect, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- command


def test_cli_table_json_and_relaimpr(trained: dict[str, Path]) -> None:
    result = runner.invoke(app, ["evaluate", str(trained["din"]), str(trained["base"]), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert set(out) == JSON_TOP_KEYS
    assert out["split"] == "test"
    assert out["baseline"]["run"] == str(trained["base"])
    din, base = out["runs"]
    assert set(din) == JSON_ROW_KEYS and set(base) == JSON_ROW_KEYS
    assert (din["model"], din["act"], din["reg"]) == ("din", "dice", "mba")
    assert base["rela_impr"] == 0.0
    # RelaImpr (Eq. 11) is computed on the paper's AUC, the user-weighted one (Eq. 10)
    assert out["metric"] == "user_weighted_auc"
    assert din["rela_impr"] == pytest.approx(
        rela_impr(din["user_weighted_auc"], base["user_weighted_auc"])
    )
    assert out["baseline"]["user_weighted_auc"] == base["user_weighted_auc"]
    assert out["baseline"]["global_auc"] == base["global_auc"]
    # the human table goes to stderr, in Table 3's layout
    for cell in ("model", "activation", "regulariser", "DIN", "BaseModel", "Dice", "MBA"):
        assert cell in result.stderr
    assert "RelaImpr" in result.stderr
    assert "AUC (user-weighted, Eq. 10)" in result.stderr and "global AUC" in result.stderr
    assert f"{din['rela_impr']:+.2f}%" in result.stderr


def test_cli_default_is_latest_run_without_baseline(trained: dict[str, Path]) -> None:
    result = runner.invoke(app, ["eval", "--runs-root", str(trained["root"]), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [r["run"] for r in out["runs"]] == [str(trained["din"])]
    assert out["baseline"] is None and out["runs"][0]["rela_impr"] is None
    assert "–" in result.stderr  # the RelaImpr cell


def test_cli_plain_prints_metrics_paths(trained: dict[str, Path]) -> None:
    result = runner.invoke(app, ["evaluate", str(trained["base"])])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{trained['base'] / 'metrics.json'}\n"


def test_cli_explicit_baseline_and_valid_split(trained: dict[str, Path]) -> None:
    args = ["evaluate", str(trained["base"]), "--baseline", str(trained["din"])]
    result = runner.invoke(app, [*args, "--split", "valid", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["split"] == "valid" and out["baseline"]["run"] == str(trained["din"])
    [base] = out["runs"]
    assert base["rela_impr"] == pytest.approx(
        rela_impr(base["user_weighted_auc"], out["baseline"]["user_weighted_auc"])
    )
    assert base["n"] == pl.read_parquet(trained["data"] / "valid.parquet").height


def test_cli_expands_experiment_folders(trained: dict[str, Path], tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    _clone_run(trained["din"], plain / "b-din")
    _clone_run(trained["base"], plain / "a-base")
    result = runner.invoke(app, ["evaluate", str(plain), "--json"])
    assert result.exit_code == 0, result.output
    runs = json.loads(result.stdout)["runs"]
    assert [r["run"] for r in runs] == [str(plain / "a-base"), str(plain / "b-din")]

    exp = tmp_path / "exp"
    _clone_run(trained["din"], exp / "din-s0")
    _clone_run(trained["base"], exp / "base-s0", weights=False)  # unfinished: left out
    manifest = {
        "format_version": 1,
        "runs": [{"name": "base-s0", "status": "pending"}, {"name": "din-s0", "status": "done"}],
    }
    (exp / "manifest.json").write_text(json.dumps(manifest))
    result = runner.invoke(app, ["evaluate", str(exp), "--json"])
    assert result.exit_code == 0, result.output
    assert [r["run"] for r in json.loads(result.stdout)["runs"]] == [str(exp / "din-s0")]


def test_cli_fail_under(trained: dict[str, Path]) -> None:
    ok = runner.invoke(app, ["evaluate", str(trained["din"]), "--fail-under", "0.0"])
    assert ok.exit_code == 0, ok.output
    metrics = read_metrics(trained["din"])
    assert metrics is not None
    uw, glob = metrics["user_weighted_auc"], metrics["global_auc"]
    bad = runner.invoke(app, ["evaluate", str(trained["din"]), "--fail-under", "0.999"])
    assert bad.exit_code == 1
    assert bad.stderr.splitlines()[-1] == (
        f"error: AUC (user-weighted, Eq. 10) {uw:.4f} of {trained['din']} is below "
        "--fail-under 0.999"
    )
    assert bad.stdout  # the results are still printed before the gate fails
    # the gate reads the headline unless told otherwise: a bar between the two metrics
    # passes on one and fails on the other
    lo, hi = sorted((uw, glob))
    if hi - lo > 1e-4:
        bar = f"{(lo + hi) / 2:.6f}"
        failing = "user_weighted_auc" if uw < glob else "global_auc"
        passing = "global_auc" if failing == "user_weighted_auc" else "user_weighted_auc"
        args = ["evaluate", str(trained["din"]), "--fail-under", bar, "--fail-metric"]
        assert runner.invoke(app, [*args, failing]).exit_code == 1
        assert runner.invoke(app, [*args, passing]).exit_code == 0


# --------------------------------------------------------------------------- errors


def _error(args: list[str]) -> str:
    result = runner.invoke(app, ["evaluate", *args])
    assert result.exit_code == 1, result.output
    return result.stderr


def test_error_missing_runs_folder(tmp_path: Path) -> None:
    assert _error(["--runs-root", str(tmp_path / "runs")]) == (
        f"error: no run folder given and {tmp_path / 'runs'} does not exist\n"
        "hint: train a model with `dinctl train`, or pass a run folder\n"
    )


def test_error_empty_runs_folder(tmp_path: Path) -> None:
    assert _error(["--runs-root", str(tmp_path)]) == (
        f"error: no run folder given and {tmp_path} holds no runs\n"
        "hint: train a model with `dinctl train`, or pass a run folder\n"
    )


def test_error_run_folder_does_not_exist(tmp_path: Path) -> None:
    assert _error([str(tmp_path / "nope")]) == (
        f"error: run folder {tmp_path / 'nope'} does not exist\n"
        "hint: pass a folder written by `dinctl train` or `dinctl experiment`\n"
    )


def test_error_not_a_run_folder(tmp_path: Path) -> None:
    assert _error([str(tmp_path)]) == (
        f"error: {tmp_path} is neither a run folder nor an experiment folder holding runs\n"
        "hint: pass a folder written by `dinctl train` or `dinctl experiment`\n"
    )


def test_error_experiment_without_finished_runs(trained: dict[str, Path], tmp_path: Path) -> None:
    _clone_run(trained["din"], tmp_path / "din-s0", weights=False)
    manifest = {"format_version": 1, "runs": [{"name": "din-s0", "status": "pending"}]}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert _error([str(tmp_path)]) == (
        f"error: experiment folder {tmp_path} has no finished runs yet\n"
        "hint: run `dinctl experiment table3` or `table4` first (it resumes)\n"
    )


def test_error_run_without_checkpoint(trained: dict[str, Path], tmp_path: Path) -> None:
    run = _clone_run(trained["din"], tmp_path / "half", weights=False)
    assert _error([str(run)]) == (
        f"error: {run} has no best.pt or checkpoint.pt\n"
        f"hint: the run has not finished an epoch; resume it with `dinctl train --resume --out "
        f"{run}`\n"
    )


def test_error_runs_on_different_datasets(trained: dict[str, Path], tmp_path: Path) -> None:
    other = _clone_run(trained["base"], tmp_path / "other", checksum="f" * 64)
    first = read_metrics(trained["din"])["dataset"]["checksum"]  # type: ignore[index]
    assert _error([str(trained["din"]), str(other)]) == (
        f"error: {trained['din']} and {other} were trained on different datasets "
        f"(checksum {first[:12]} vs ffffffffffff)\n"
        "hint: compare runs of one dataset; evaluate the others separately\n"
    )
    # a --baseline on another dataset is refused the same way
    assert "were trained on different datasets" in _error(
        [str(trained["din"]), "--baseline", str(other)]
    )


def test_error_dataset_changed_since_training(trained: dict[str, Path], tmp_path: Path) -> None:
    run = _clone_run(trained["din"], tmp_path / "stale", checksum="0" * 64)
    actual = read_metrics(trained["din"])["dataset"]["checksum"]  # type: ignore[index]
    assert _error([str(run)]) == (
        f"error: the dataset {trained['data'].resolve()} changed since {run} was trained "
        f"(checksum {actual[:12]} vs 000000000000)\n"
        "hint: use the dataset the run was trained on (or train the run again)\n"
    )


def test_error_empty_split(trained: dict[str, Path], tmp_path: Path) -> None:
    test = pl.read_parquet(trained["data"] / "test.parquet").head(0)
    data, checksum = _dataset_with_test(trained["data"], tmp_path / "data", test)
    run = _clone_run(trained["din"], tmp_path / "run", path=str(data), checksum=checksum)
    assert _error([str(run)]) == (
        f"error: the test split of {data} has no rows\nhint: re-run `dinctl preprocess`\n"
    )


def test_error_one_class_split(trained: dict[str, Path], tmp_path: Path) -> None:
    test = pl.read_parquet(trained["data"] / "test.parquet").filter(pl.col("label") == 1)
    data, checksum = _dataset_with_test(trained["data"], tmp_path / "data", test)
    run = _clone_run(trained["din"], tmp_path / "run", path=str(data), checksum=checksum)
    assert _error([str(run)]) == (
        f"error: the test split of {data} has only clicks: AUC is undefined\n"
        "hint: evaluate on a split with both classes\n"
    )


def test_error_baseline_not_a_run(trained: dict[str, Path], tmp_path: Path) -> None:
    assert _error([str(trained["din"]), "--baseline", str(tmp_path)]) == (
        f"error: baseline {tmp_path} is not a run folder\n"
        "hint: pass a folder written by `dinctl train` to --baseline\n"
    )


def test_eval_alias_is_hidden_but_documented_command_is_listed() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    commands = [line.split()[1] for line in result.output.splitlines() if line.startswith("│ ")]
    assert "evaluate" in commands and "eval" not in commands
    assert runner.invoke(app, ["eval", "--help"]).exit_code == 0


def test_valid_split_does_not_replace_the_test_results(trained: dict[str, Path]) -> None:
    run = trained["base"]
    evaluate_run(run, "test")
    test_metrics = (run / "metrics.json").read_text()
    test_preds = (run / "predictions.parquet").read_bytes()
    result = runner.invoke(app, ["evaluate", str(run), "--split", "valid"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{run / 'metrics-valid.json'}\n"
    assert (run / "metrics.json").read_text() == test_metrics
    assert (run / "predictions.parquet").read_bytes() == test_preds
    valid = json.loads((run / "metrics-valid.json").read_text())
    assert valid["split"] == "valid"
    assert pl.read_parquet(run / "predictions-valid.parquet").height == valid["n"]
    assert read_metrics(run, "valid") == valid
    assert read_metrics(run, "test") == json.loads(test_metrics)


def test_old_metrics_files_are_still_read(tmp_path: Path) -> None:
    # format 1 wrote `auc` (global) and `gauc` (user-weighted), valid results in metrics.json
    old = {"format_version": 1, "split": "valid", "auc": 0.7, "gauc": 0.65, "logloss": 0.6}
    (tmp_path / "metrics.json").write_text(json.dumps(old))
    got = read_metrics(tmp_path, "valid")
    assert got is not None
    assert (got["global_auc"], got["user_weighted_auc"], got["logloss"]) == (0.7, 0.65, 0.6)
    assert "auc" not in got and "gauc" not in got
    assert read_metrics(tmp_path, "test") is None
