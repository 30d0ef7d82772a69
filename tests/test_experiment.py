"""`dinctl experiment`: the run matrix, manifest, resumption and tables with a fake trainer;
both paper tables end to end on the bundled sample data with tiny settings."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from dinctl.errors import DinctlError
from dinctl.experiment import (
    MANIFEST,
    TABLE3,
    TABLE4,
    ExperimentSettings,
    TorchBackend,
    experiment_table,
    plan_runs,
    read_manifest,
    run_experiment,
)
from dinctl.reporting import Reporter
from dinctl.runs import expand_runs
from dinctl.tables import Stat

# --------------------------------------------------------------------------- a fake backend


class FakeBackend:
    """Writes the files a real run would (config.json, checkpoint.pt, metrics.json) and counts.

    A run's test AUC is fixed per variant plus 0.01 per seed, so tables are known in advance.
    """

    AUC = {"lr": 0.60, "base": 0.70, "din": 0.75, "din-dice": 0.76}

    def __init__(self, checksum: str = "c" * 64, interrupt_at: int | None = None) -> None:
        self.checksum = checksum
        self.interrupt_at = interrupt_at  # the n-th train() call raises KeyboardInterrupt
        self.trains: list[tuple[str, bool]] = []  # (run name, resume)
        self.evaluations: list[str] = []

    def dataset_checksum(self, data: Path) -> str:
        return self.checksum

    def resolve(self, overrides: dict[str, Any]) -> dict[str, Any]:
        return {"lr": 0.1, "epochs": 2, **overrides}

    def stored_config(self, run_dir: Path) -> dict[str, Any] | None:
        path = run_dir / "config.json"
        return json.loads(path.read_text()) if path.exists() else None

    def training_complete(self, run_dir: Path) -> bool:
        return (run_dir / "best.pt").exists()

    def train(self, overrides: dict[str, Any], *, resume: bool, reporter: Reporter) -> None:
        run_dir = Path(overrides["out"])
        self.trains.append((run_dir.name, resume))
        run_dir.mkdir(parents=True, exist_ok=resume)
        (run_dir / "config.json").write_text(json.dumps(self.resolve(overrides)))
        (run_dir / "checkpoint.pt").write_text("epoch 1")
        if len(self.trains) == self.interrupt_at:
            raise KeyboardInterrupt
        (run_dir / "best.pt").write_text("best")

    def test_metrics(self, run_dir: Path) -> dict[str, float] | None:
        path = run_dir / "metrics.json"
        return json.loads(path.read_text()) if path.exists() else None

    def evaluate(self, run_dir: Path) -> dict[str, float]:
        self.evaluations.append(run_dir.name)
        key, seed = run_dir.name.rsplit("-s", 1)
        auc = self.AUC.get(key, 0.65) + 0.01 * int(seed)
        metrics = {"user_weighted_auc": auc, "global_auc": auc + 0.05, "logloss": 1.0 - auc}
        (run_dir / "metrics.json").write_text(json.dumps(metrics))
        return metrics

    def curves(self, run_dirs: list[Path], out: Path) -> Path:
        out.write_text("\n".join(p.name for p in run_dirs))
        return out


def _settings(tmp_path: Path, seeds: int = 2, epochs: int | None = 2) -> ExperimentSettings:
    return ExperimentSettings(
        data=tmp_path / "data", out=tmp_path / "exp", seeds=seeds, epochs=epochs, recipe="fast"
    )


# --------------------------------------------------------------------------- the matrix


def test_plan_is_seed_major_with_shared_settings(tmp_path: Path) -> None:
    runs = plan_runs(TABLE3, _settings(tmp_path, seeds=2))
    assert [r.name for r in runs[:3]] == ["lr-s0", "base-s0", "wide-deep-s0"]
    assert len(runs) == 16 and runs[8].name == "lr-s1" and runs[8].seed == 1
    shared = {"data", "epochs", "recipe"}
    assert len({json.dumps({k: r.overrides[k] for k in shared}) for r in runs}) == 1
    assert runs[7].overrides["model"] == "din"
    assert (runs[7].overrides["act"], runs[7].overrides["reg"]) == ("dice", "mba")
    assert runs[0].overrides["out"] == str(tmp_path / "exp" / "lr-s0")
    assert all(r.overrides["seed"] == r.seed for r in runs)


def test_table4_matrix_has_the_no_item_ids_baseline(tmp_path: Path) -> None:
    runs = plan_runs(TABLE4, _settings(tmp_path, seeds=1))
    assert [r.name for r in runs] == [
        "base-no-ids-s0",
        "base-none-s0",
        "base-dropout-s0",
        "base-filter-s0",
        "base-difacto-s0",
        "base-mba-s0",
    ]
    assert runs[0].overrides["use_item_ids"] is False
    assert "use_item_ids" not in runs[1].overrides
    assert {r.overrides["model"] for r in runs} == {"base"}
    assert [r.overrides["reg"] for r in runs[1:]] == ["none", "dropout", "filter", "difacto", "mba"]


def test_settings_are_validated(tmp_path: Path) -> None:
    with pytest.raises(DinctlError, match="expected at least 1 seed, got 0 instead"):
        ExperimentSettings(data=tmp_path, out=tmp_path, seeds=0)
    with pytest.raises(DinctlError, match="expected at least 1 epoch, got 0 instead"):
        ExperimentSettings(data=tmp_path, out=tmp_path, epochs=0)


def test_a_shared_training_config_reaches_every_run_under_the_flags(tmp_path: Path) -> None:
    settings = ExperimentSettings(
        data=tmp_path / "data",
        out=tmp_path / "exp",
        seeds=1,
        epochs=3,
        train={"lr": 0.01, "emb_dim": 16, "epochs": 9, "emb_init_std": 1.0},
    )
    runs = plan_runs(TABLE3, settings)
    assert {(r.overrides["lr"], r.overrides["emb_dim"], r.overrides["epochs"]) for r in runs} == {
        (0.01, 16, 3)  # --epochs beats the file
    }
    assert [r.overrides["model"] for r in runs][:2] == ["lr", "base"]  # rows beat the file
    result = run_experiment(TABLE3, settings, backend=FakeBackend())
    assert read_manifest(tmp_path / "exp")["settings"]["train"] == settings.train
    footer = result.table.footer()
    assert "Setting: recipe None" not in footer
    assert "epochs 3, lr 0.01, emb_dim 16, emb_init_std 1.0, seeds 1" in footer


def test_a_shared_config_may_not_set_what_the_rows_decide(tmp_path: Path) -> None:
    for key, value in (("model", "din"), ("act", "dice"), ("seed", 3), ("out", "x")):
        with pytest.raises(DinctlError) as err:
            ExperimentSettings(data=tmp_path, out=tmp_path, train={key: value})
        assert str(err.value.message) == (
            f"the experiment's config sets {key!r}, which the experiment decides"
        )


def test_progress_lines_stay_aligned_past_nine_runs(tmp_path: Path) -> None:
    lines: list[str] = []
    reporter = Reporter(line=lines.append)
    run_experiment(TABLE3, _settings(tmp_path, seeds=2), backend=FakeBackend(), reporter=reporter)
    runs = [line for line in lines if "test AUC" in line]
    assert len(runs) == 16 and runs[0].startswith(" [1/16] lr-s0 ")
    assert runs[9].startswith("[10/16] base-s1 ")
    assert len({line.index("test AUC") for line in runs}) == 1


# --------------------------------------------------------------------------- running + resume


def test_full_run_writes_manifest_tables_and_curves(tmp_path: Path) -> None:
    backend = FakeBackend()
    lines: list[str] = []
    result = run_experiment(
        TABLE3, _settings(tmp_path), backend=backend, reporter=Reporter(line=lines.append)
    )
    assert len(backend.trains) == 16 and all(not resume for _, resume in backend.trains)
    assert lines[0] == f"table3: 8 models × 2 seed(s) = 16 runs → {tmp_path / 'exp'}"
    assert len(lines) == 17 and lines[1].startswith(" [1/16] lr-s0")
    assert "test AUC (user-weighted, Eq. 10) 0.6000  global AUC 0.6500" in lines[1]
    manifest = read_manifest(tmp_path / "exp")
    assert manifest["experiment"] == "table3"
    assert manifest["data"] == {"path": str(tmp_path / "data"), "checksum": "c" * 64}
    assert [r["status"] for r in manifest["runs"]] == ["done"] * 16
    assert manifest["runs"][1]["metrics"]["user_weighted_auc"] == pytest.approx(0.70)
    assert manifest["runs"][1]["config"]["model"] == "base"
    assert (tmp_path / "exp" / "table3.md").read_text() == result.table.markdown()
    assert json.loads((tmp_path / "exp" / "table3.json").read_text())["rows"][0]["label"] == "LR"
    # Fig. 4 curves of the first seed of every variant
    assert result.files["curves"].read_text().split("\n") == [
        r.key + "-s0" for r in TABLE3.variants
    ]


def test_interrupted_experiment_continues_where_it_stopped(tmp_path: Path) -> None:
    first = FakeBackend(interrupt_at=3)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(TABLE3, _settings(tmp_path), backend=first)
    manifest = read_manifest(tmp_path / "exp")
    assert [r["status"] for r in manifest["runs"][:4]] == ["done", "done", "running", "pending"]

    second = FakeBackend()
    lines: list[str] = []
    run_experiment(
        TABLE3, _settings(tmp_path), backend=second, reporter=Reporter(line=lines.append)
    )
    assert lines[0].endswith("(2 done before)")
    # the two finished runs are reused; the interrupted one resumes; the other 13 train afresh
    assert second.trains[0] == ("wide-deep-s0", True)
    assert [resume for _, resume in second.trains[1:]] == [False] * 13
    assert len(second.trains) == 14
    assert "lr-s0" not in second.evaluations and "base-s0" not in second.evaluations

    third = FakeBackend()
    result = run_experiment(TABLE3, _settings(tmp_path), backend=third)
    assert third.trains == [] and third.evaluations == []
    assert {o.status for o in result.outcomes} == {"reused"}


def test_trained_but_unevaluated_run_is_only_evaluated(tmp_path: Path) -> None:
    run_experiment(TABLE4, _settings(tmp_path, seeds=1), backend=FakeBackend())
    (tmp_path / "exp" / "base-mba-s0" / "metrics.json").unlink()
    again = FakeBackend()
    result = run_experiment(TABLE4, _settings(tmp_path, seeds=1), backend=again)
    assert again.trains == [] and again.evaluations == ["base-mba-s0"]
    assert result.outcomes[-1].status == "evaluated"


def test_metrics_of_an_unfinished_run_are_not_reused(tmp_path: Path) -> None:
    """A run stopped early but scored by hand is resumed, not entered into the table."""
    run_experiment(TABLE4, _settings(tmp_path, seeds=1), backend=FakeBackend())
    (tmp_path / "exp" / "base-mba-s0" / "best.pt").unlink()  # not finished training
    again = FakeBackend()
    result = run_experiment(TABLE4, _settings(tmp_path, seeds=1), backend=again)
    assert again.trains == [("base-mba-s0", True)]
    assert result.outcomes[-1].status == "resumed"


def test_changed_config_retrains_from_scratch(tmp_path: Path) -> None:
    run_experiment(TABLE4, _settings(tmp_path, seeds=1), backend=FakeBackend())
    stale = tmp_path / "exp" / "base-none-s0" / "stale-file"
    stale.write_text("x")
    again = FakeBackend()
    run_experiment(TABLE4, _settings(tmp_path, seeds=1, epochs=3), backend=again)
    assert len(again.trains) == 6 and all(not resume for _, resume in again.trains)
    assert not stale.exists()


def test_more_seeds_reuse_the_first_ones(tmp_path: Path) -> None:
    run_experiment(TABLE4, _settings(tmp_path, seeds=1), backend=FakeBackend())
    again = FakeBackend()
    run_experiment(TABLE4, _settings(tmp_path, seeds=2), backend=again)
    assert [name for name, _ in again.trains] == [r.key + "-s1" for r in TABLE4.variants]


def test_another_dataset_is_refused(tmp_path: Path) -> None:
    run_experiment(TABLE4, _settings(tmp_path, seeds=1), backend=FakeBackend())
    with pytest.raises(DinctlError) as err:
        run_experiment(TABLE4, _settings(tmp_path, seeds=1), backend=FakeBackend("d" * 64))
    assert err.value.message == (
        f"{tmp_path / 'exp'} was run on another dataset (checksum cccccccccccc…, "
        "this one is dddddddddddd…)"
    )
    assert err.value.hint == "choose another --out, or delete the folder to start over"


def test_another_experiment_or_foreign_folder_is_refused(tmp_path: Path) -> None:
    run_experiment(TABLE4, _settings(tmp_path, seeds=1), backend=FakeBackend())
    with pytest.raises(DinctlError, match="holds experiment 'table4', not 'table3'"):
        run_experiment(TABLE3, _settings(tmp_path, seeds=1), backend=FakeBackend())
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    settings = ExperimentSettings(data=tmp_path, out=foreign, seeds=1)
    with pytest.raises(DinctlError) as err:
        run_experiment(TABLE3, settings, backend=FakeBackend())
    assert err.value.message == (
        f"{foreign} is not empty and holds no manifest.json: it is not a dinctl experiment folder"
    )


def test_broken_manifest_is_one_line_error(tmp_path: Path) -> None:
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(DinctlError, match=r"manifest.json is not valid JSON \(Expecting"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST).write_text('{"format_version": 99}')
    with pytest.raises(DinctlError, match="has format_version 99, expected 1"):
        read_manifest(tmp_path)
    with pytest.raises(DinctlError, match="is not a dinctl experiment folder"):
        read_manifest(tmp_path / "nowhere")


def test_expand_run_dirs(tmp_path: Path) -> None:
    run_experiment(TABLE4, _settings(tmp_path, seeds=1), backend=FakeBackend())
    expanded = expand_runs([tmp_path / "exp"])
    assert expanded == [tmp_path / "exp" / f"{v.key}-s0" for v in TABLE4.variants]


# --------------------------------------------------------------------------- tables


def _done(variant: str, seed: int, auc: float, logloss: float = 0.5) -> dict[str, Any]:
    # the global AUC differs from the headline, so a table that used it would show other numbers
    metrics = {"user_weighted_auc": auc, "global_auc": auc + 0.03, "logloss": logloss}
    return {"variant": variant, "seed": seed, "status": "done", "metrics": metrics}


def test_stat_is_mean_and_sample_std() -> None:
    s = Stat.of([0.70, 0.72])
    assert s.mean == pytest.approx(0.71)
    assert s.std == pytest.approx(0.0141421356)  # sqrt((0.01² + 0.01²) / (2 - 1))
    assert s.text() == "0.7100 ± 0.0141"
    assert Stat.of([0.7]).std is None and Stat.of([0.7]).text() == "0.7000"


def test_table3_hand_computed() -> None:
    runs = [
        _done("lr", 0, 0.60),
        _done("lr", 1, 0.62),
        _done("base", 0, 0.70),
        _done("base", 1, 0.72),
        _done("din", 0, 0.75),
        _done("din", 1, 0.77),
        {"variant": "pnn", "seed": 0, "status": "running", "metrics": None},
    ]
    table = experiment_table(TABLE3, runs)
    assert [r.key for r in table.rows] == ["lr", "base", "din"]  # unfinished variants are absent
    # RelaImpr = ((mean AUC − 0.5) / (mean base AUC − 0.5) − 1) · 100
    assert table.rows[0].rela_impr == pytest.approx((0.11 / 0.21 - 1) * 100)  # −47.62 %
    assert table.rows[2].rela_impr == pytest.approx((0.26 / 0.21 - 1) * 100)  # 23.81 %
    assert table.markdown() == (
        "**Table 3: DIN against its competitors (test AUC = user-weighted AUC, mean ± std over "
        "seeds)**\n"
        "\n"
        "| Model | AUC (user-weighted, Eq. 10) | global AUC | RelaImpr |\n"
        "|:---|---:|---:|---:|\n"
        "| LR | 0.6100 ± 0.0141 | 0.6400 ± 0.0141 | -47.62% |\n"
        "| BaseModel | 0.7100 ± 0.0141 | 0.7400 ± 0.0141 | +0.00% |\n"
        "| DIN | 0.7600 ± 0.0141 | 0.7900 ± 0.0141 | +23.81% |\n"
        "\n"
        "AUC is the user-weighted AUC of Eq. (10) on the test split (the paper's AUC), from each "
        "run's best validation epoch; mean ± sample std (ddof=1) over 2 seed(s). Global AUC is "
        "the plain AUC over all impressions. RelaImpr (Eq. 11) is computed from the mean "
        "user-weighted AUCs, with “BaseModel” as the baseline.\n"
    )
    js = table.to_json()
    assert js["baseline"] == "base"
    assert js["metric"] == "user_weighted_auc"
    assert js["rows"][2]["global_auc"]["mean"] == pytest.approx(0.79)
    assert js["rows"][2]["user_weighted_auc"] == {
        "mean": pytest.approx(0.76),
        "std": pytest.approx(0.01414213),
        "n": 2,
    }


def test_table4_has_logloss_and_relaimpr_against_no_item_ids() -> None:
    runs = [
        _done("base-no-ids", 0, 0.60, logloss=0.65),
        _done("base-mba", 0, 0.63, logloss=0.61),
    ]
    table = experiment_table(TABLE4, runs)
    assert table.header() == [
        "BaseModel",
        "AUC (user-weighted, Eq. 10)",
        "global AUC",
        "RelaImpr",
        "Logloss",
    ]
    assert table.cells() == [
        ["Without item ids and Reg.", "0.6000", "0.6300", "+0.00%", "0.6500"],
        ["With item ids and MBA Reg.", "0.6300", "0.6600", "+30.00%", "0.6100"],
    ]


def test_relaimpr_is_blank_without_baseline_or_at_chance() -> None:
    alone = experiment_table(TABLE3, [_done("din", 0, 0.7)])
    assert alone.cells() == [["DIN", "0.7000", "0.7300", "–"]]
    chance = experiment_table(TABLE3, [_done("base", 0, 0.5), _done("din", 0, 0.7)])
    assert [r.rela_impr for r in chance.rows] == [None, None]


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def sample_amazon(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled sample Amazon data, preprocessed once for this module."""
    from dinctl.data.datasets.amazon import preprocess_amazon
    from dinctl.quickstart import sample_data_dir

    out = tmp_path_factory.mktemp("sample") / "amazon"
    preprocess_amazon(sample_data_dir() / "amazon", out)
    return out


def _invoke(args: list[str]) -> Any:
    from typer.testing import CliRunner

    from dinctl.cli.main import app

    return CliRunner().invoke(app, args)


def test_table3_end_to_end_on_sample_data(sample_amazon: Path, tmp_path: Path) -> None:
    out = tmp_path / "t3"
    config = tmp_path / "small.toml"
    config.write_text("emb_dim = 8\nlr = 0.01\nepochs = 5\n")  # --epochs 2 beats epochs = 5
    args = ["experiment", "table3", "--data", str(sample_amazon), "--seeds", "1", "--epochs", "2"]
    args += ["--batch-size", "512", "--config", str(config), "--out", str(out), "--json"]
    result = _invoke(args)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    labels = [row["label"] for row in payload["table"]["rows"]]
    assert labels == [v.label for v in TABLE3.variants]
    base = next(r for r in payload["table"]["rows"] if r["key"] == "base")
    assert base["rela_impr"] == 0.0
    for row in payload["table"]["rows"]:
        uw = row["user_weighted_auc"]
        assert 0.0 < uw["mean"] < 1.0 and uw["std"] is None
    for name in ("table3.md", "table3.json", "manifest.json", "curves.png"):
        assert (out / name).is_file(), name
    assert "| DIN with Dice |" in (out / "table3.md").read_text()
    for run in read_manifest(out)["runs"]:
        run_dir = out / run["name"]
        assert run["status"] == "done"
        assert json.loads((run_dir / "metrics.json").read_text())["split"] == "test"
        assert (run_dir / "predictions.parquet").is_file()
        trained = json.loads((run_dir / "config.json").read_text())["train"]
        assert (trained["epochs"], trained["emb_dim"], trained["lr"]) == (2, 8, 0.01)
    line = r"^\[\d/8\] .* test AUC \(user-weighted, Eq. 10\) 0\.\d{4}  global AUC 0\.\d{4}  \(tra"
    assert len(re.findall(line, result.stderr, re.M)) == 8

    _table_uses_the_user_weighted_auc(out, payload["table"])

    # everything is reused the second time: no training, the same table
    again = _invoke(args)
    assert again.exit_code == 0, again.output
    assert again.stderr.count("(reused,") == 8
    assert json.loads(again.stdout)["table"] == payload["table"]


def _table_uses_the_user_weighted_auc(out: Path, table: dict[str, Any]) -> None:
    """Pin the metric of every column, recomputed from each run's written predictions."""
    import polars as pl

    from dinctl.metrics import auc_score, rela_impr, user_weighted_auc_score

    assert table["metric"] == "user_weighted_auc"
    rows = {r["key"]: r for r in table["rows"]}
    recomputed = {}
    for key, row in rows.items():
        pred = pl.read_parquet(out / f"{key}-s0" / "predictions.parquet")
        y, s, u = (pred[c].to_numpy() for c in ("label", "score", "user"))
        uw, glob = user_weighted_auc_score(y, s, u), auc_score(y, s)
        assert abs(uw - glob) > 1e-6  # the two metrics differ here, so the pin can fail
        assert row["user_weighted_auc"]["mean"] == pytest.approx(uw, abs=1e-12)
        assert row["global_auc"]["mean"] == pytest.approx(glob, abs=1e-12)
        recomputed[key] = uw
    for key, row in rows.items():
        expect = rela_impr(recomputed[key], recomputed["base"])
        assert row["rela_impr"] == pytest.approx(expect)
    md = (out / "table3.md").read_text()
    assert "| AUC (user-weighted, Eq. 10) | global AUC | RelaImpr |" in md
    din = rows["din-dice"]
    assert f"| {din['user_weighted_auc']['mean']:.4f} | {din['global_auc']['mean']:.4f} |" in md
    assert "recipe fast, epochs 2, emb_dim 8, lr 0.01, seeds 1, dataset " in md  # the setting


class InterruptSecondRun(TorchBackend):
    """The real backend, but the second run is interrupted in its second epoch (step 8 of 12),
    after its first epoch's checkpoint.pt was written."""

    def __init__(self) -> None:
        super().__init__("cpu")
        self.calls = 0

    def train(self, overrides: dict[str, Any], *, resume: bool, reporter: Reporter) -> None:
        from dinctl.training.config import resolve_config
        from dinctl.training.loop import train

        self.calls += 1
        if self.calls != 2:
            return super().train(overrides, resume=resume, reporter=reporter)

        def interrupt(step: int) -> None:
            if step == 8:
                raise KeyboardInterrupt

        train(resolve_config(overrides), on_step=interrupt)


def test_table4_end_to_end_on_sample_data_interrupted_and_resumed(
    sample_amazon: Path, tmp_path: Path
) -> None:
    out = tmp_path / "t4"
    settings = ExperimentSettings(
        data=sample_amazon, out=out, seeds=2, epochs=2, batch_size=512, device="cpu"
    )
    with pytest.raises(KeyboardInterrupt):
        run_experiment(TABLE4, settings, backend=InterruptSecondRun())
    assert (out / "base-none-s0" / "checkpoint.pt").is_file()
    assert read_manifest(out)["runs"][1]["status"] == "running"

    args = ["experiment", "table4", "--data", str(sample_amazon), "--seeds", "2", "--epochs", "2"]
    result = _invoke(args + ["--batch-size", "512", "--device", "cpu", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "(1 done before)" in result.stderr
    assert re.search(r"^ \[1/12\] base-no-ids-s0 .*\(reused, ", result.stderr, re.M)
    assert re.search(r"^ \[2/12\] base-none-s0 .*\(resumed, ", result.stderr, re.M)
    assert len(re.findall(r"\(trained, ", result.stderr)) == 10
    log = (out / "base-none-s0" / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in log if '"event": "epoch"' in line] == [1, 2]
    assert result.stdout.split() == [
        str(out / n) for n in ("table4.md", "table4.json", "curves.png")
    ]
    table = json.loads((out / "table4.json").read_text())
    assert [r["key"] for r in table["rows"]] == [v.key for v in TABLE4.variants]
    uw = [r["user_weighted_auc"] for r in table["rows"]]
    assert all(s["n"] == 2 and s["std"] is not None for s in uw)
    assert table["rows"][0]["rela_impr"] == 0.0
    markdown = (out / "table4.md").read_text()
    assert (
        "| BaseModel | AUC (user-weighted, Eq. 10) | global AUC | RelaImpr | Logloss |" in markdown
    )
    assert " ± " in markdown
    no_ids = json.loads((out / "base-no-ids-s0" / "config.json").read_text())
    assert no_ids["train"]["use_item_ids"] is False and no_ids["model"]["use_item_ids"] is False
    # Fig. 4: the curves plot has one line per variant (seed 0)
    curves = json.loads((out / "curves.json").read_text())
    assert [Path(r["run"]).name for r in curves["runs"]] == [f"{v.key}-s0" for v in TABLE4.variants]


def test_experiment_cli_errors(tmp_path: Path) -> None:
    result = _invoke(
        ["experiment", "table3", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: dataset folder {tmp_path / 'nope'} does not exist\n")
    assert _invoke(["experiment", "table3", "--seeds", "0"]).exit_code == 2
    assert _invoke(["experiment", "table9"]).exit_code == 2


def test_experiment_config_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('act = "dice"\n')
    result = _invoke(["experiment", "table3", "--config", str(bad), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        "error: the experiment's config sets 'act', which the experiment decides"
    )
    bad.write_text("no_such_setting = 1\n")
    result = _invoke(["experiment", "table4", "--config", str(bad)])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == f"error: {bad}: unknown key 'no_such_setting'"
