"""`dinctl quickstart`: the README's main job, end to end on the bundled sample data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dinctl.cli.main import app
from dinctl.errors import DinctlError
from dinctl.quickstart import QUICKSTART_MARKER, prepare_quickstart_dir, sample_data_dir

runner = CliRunner()


def test_quickstart_makes_every_promised_file(tmp_path: Path) -> None:
    out = tmp_path / "qs"
    result = runner.invoke(app, ["quickstart", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    # the planted interests are learnable: measured 0.796 on CPU (seed 0); 0.5 would be chance
    assert summary["test"]["user_weighted_auc"] > 0.7
    run = out / "runs" / "din-dice"
    assert summary["run"] == str(run)
    for name in (
        "meta.json",
        "items.parquet",
        "sequences.parquet",
        "train.parquet",
        "test.parquet",
    ):
        assert (out / "data" / name).is_file(), name
    for path in summary["files"].values():
        assert Path(path).is_file(), path
    assert set(summary["plots"]) == {"attention", "tsne", "curves"}
    for path in summary["plots"].values():
        assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
        assert Path(path).parent == run / "plots"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["split"] == "test"
    for key in ("user_weighted_auc", "global_auc", "logloss"):
        assert metrics[key] == summary["test"][key]
    config = json.loads((run / "config.json").read_text())["train"]
    assert (config["model"], config["act"]) == ("din", "dice")
    assert json.loads((out / QUICKSTART_MARKER).read_text())["status"] == "done"
    assert "test AUC" in result.stderr and "user-weighted, Eq. 10" in result.stderr

    # a second quickstart into the same folder replaces the first one's outputs
    (run / "stale.txt").write_text("from the first run")
    again = runner.invoke(app, ["quickstart", "--out", str(out)])
    assert again.exit_code == 0, again.output
    assert not (run / "stale.txt").exists()
    assert again.stdout.splitlines()[:2] == [str(out / "data"), str(run)]


def test_quickstart_refuses_a_folder_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("precious")
    result = runner.invoke(app, ["quickstart", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: {tmp_path} is not empty and was not made by `dinctl quickstart`\n"
        "hint: choose another --out, or pass --overwrite to replace it\n"
    )
    assert (tmp_path / "mine.txt").read_text() == "precious"


def test_missing_sample_data_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DinctlError) as err:
        sample_data_dir(tmp_path)
    assert err.value.message == (
        f"the bundled sample data is missing: {tmp_path / 'sample_data' / 'amazon'} does not exist"
    )
    assert "python dinctl/sample_data/generate.py" in str(err.value.hint)


def test_the_sample_data_ships_inside_the_package() -> None:
    import dinctl

    path = sample_data_dir()
    assert path == Path(dinctl.__file__).parent / "sample_data"
    assert (path / "amazon" / "reviews_Electronics_5.json").is_file()


def test_overwrite_replaces_a_foreign_folder_and_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("precious")
    prepare_quickstart_dir(tmp_path, overwrite=True)
    assert tmp_path.is_dir() and list(tmp_path.iterdir()) == []
    (tmp_path / "earlier").mkdir()
    (tmp_path / "earlier" / QUICKSTART_MARKER).write_text("{}")
    (tmp_path / "earlier" / "data").mkdir()
    prepare_quickstart_dir(tmp_path / "earlier", overwrite=False)  # an earlier quickstart: fine
    (tmp_path / "file").write_text("x")
    with pytest.raises(DinctlError, match="exists and is not a folder"):
        prepare_quickstart_dir(tmp_path / "file", overwrite=True)
