"""`dinctl visualize`: every figure's PNG size, the numbers behind it against the model, errors."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import polars as pl
import pytest
import torch
from typer.testing import CliRunner

from dinctl.cli.main import app
from dinctl.data.batching import Batch

runner = CliRunner()
MAX_LEN = 10  # tiny_dataset histories are 7..19 long, so the window truncates


def _train(data: Path, out: Path, model: str) -> Path:
    from dinctl.training.config import resolve_config
    from dinctl.training.loop import train

    cfg = resolve_config(
        {
            "data": str(data),
            "model": model,
            "epochs": 1,
            "batch_size": 256,
            "emb_dim": 8,
            "max_len": MAX_LEN,
            "seed": 0,
            "device": "cpu",
            "out": str(out),
        }
    )
    return train(cfg).run_dir


@pytest.fixture(scope="module")
def runs(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One-epoch DIN and BaseModel runs on the tiny dataset (read-only for the tests)."""
    root = tmp_path_factory.mktemp("vis_runs")
    return {m: _train(tiny_dataset, root / m, m) for m in ("din", "base")}


@pytest.fixture()
def din_run(runs: dict[str, Path], tmp_path: Path) -> Path:
    """A private copy of the DIN run, so each test's plots/ starts empty."""
    return Path(shutil.copytree(runs["din"], tmp_path / "din"))


def _invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["visualize", *map(str, args)])
    return result.exit_code, result.stdout, result.stderr


def _png_shape(path: Path) -> tuple[int, ...]:
    return tuple(mpimg.imread(path).shape)


def _user_window(data: Path, raw_user: str) -> tuple[int, int, list[int], int]:
    """(user id, hist_len, full sequence, test target) read straight from the parquet files."""
    seq = pl.read_parquet(data / "sequences.parquet").filter(pl.col("raw_user") == raw_user)
    user = int(seq["user"][0])
    test = pl.read_parquet(data / "test.parquet").filter(
        (pl.col("user") == user) & (pl.col("label") == 1)
    )
    return user, int(test["hist_len"][0]), seq["items"][0].to_list(), int(test["item"][0])


def _oracle(run: Path, user: int, history: list[int], items: list[int]):  # type: ignore[no-untyped-def]
    """The run's model on a hand-built Batch: one row per candidate, the same history."""
    from dinctl.inference import open_run

    loaded = open_run(run)
    item_cate = pl.read_parquet(loaded.dataset.path / "items.parquet").sort("item")["cate"]
    cate_of = dict(zip(range(1, len(item_cate) + 1), item_cate.to_list(), strict=True))
    b, t = len(items), len(history)
    batch = Batch(
        user=torch.full((b,), user),
        item=torch.tensor(items),
        cate=torch.tensor([cate_of[i] for i in items]),
        hist_item=torch.tensor([history] * b),
        hist_cate=torch.tensor([[cate_of[i] for i in history]] * b),
        hist_mask=torch.ones(b, t, dtype=torch.bool),
        label=torch.zeros(b),
    )
    with torch.no_grad():
        out = loaded.model(batch)
    return torch.sigmoid(out.logits).numpy(), out.attention.numpy()


# --------------------------------------------------------------------------- attention


def test_attention_default_candidates_match_the_model(din_run: Path, tiny_dataset: Path) -> None:
    code, out, err = _invoke("attention", din_run, "--user", "U0003")
    assert code == 0, err
    png = din_run / "plots" / "attention_U0003.png"
    js = din_run / "plots" / "attention_U0003.json"
    assert out.splitlines() == [str(png), str(js)]
    # 4 candidates × 10 behaviours: width max(900, 320 + 46·10) = 900, height 380 + 70·4 = 660
    assert _png_shape(png) == (660, 900, 4)
    data = json.loads(js.read_text())

    user, hist_len, seq, target = _user_window(tiny_dataset, "U0003")
    history = seq[:hist_len][-MAX_LEN:]
    assert hist_len > MAX_LEN
    assert [b["item"] for b in data["behaviours"]] == history
    assert [b["raw_item"] for b in data["behaviours"]] == [f"I{i:04d}" for i in history]
    assert data["user"] == "U0003" and data["model"] == "din" and data["hist_len"] == hist_len
    items = [c["item"] for c in data["candidates"]]
    assert items[0] == target and len(items) == 4
    assert [c["target"] for c in data["candidates"]] == [True, False, False, False]
    cats = [c["category"] for c in data["candidates"]]
    assert len(set(cats)) == 4  # the target's category, then 3 others

    probs, attention = _oracle(din_run, user, history, items)
    np.testing.assert_allclose(np.array(data["weights"]), attention, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose([c["score"] for c in data["candidates"]], probs, rtol=1e-5)


def test_attention_given_candidates_truncated_and_json(din_run: Path, tiny_dataset: Path) -> None:
    args = ["--candidate", "I0005", "--candidate", "I0150", "--max-behaviours", "3"]
    code, out, err = _invoke("attention", "--run", din_run, "--user", "U0003", *args, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data == json.loads((din_run / "plots" / "attention_U0003.json").read_text())
    # 2 candidates × 3 behaviours: width max(900, 320 + 46·3) = 900, height 380 + 70·2 = 520
    assert _png_shape(din_run / "plots" / "attention_U0003.png") == (520, 900, 4)
    user, hist_len, seq, _ = _user_window(tiny_dataset, "U0003")
    history = seq[:hist_len][-MAX_LEN:]
    assert [b["item"] for b in data["behaviours"]] == history[-3:]
    assert [c["raw_item"] for c in data["candidates"]] == ["I0005", "I0150"]
    assert [c["target"] for c in data["candidates"]] == [False, False]
    _, attention = _oracle(din_run, user, history, [5, 150])
    np.testing.assert_allclose(np.array(data["weights"]), attention[:, -3:], rtol=1e-5, atol=1e-7)


def test_attention_library_defaults_to_most_active_user(din_run: Path, tiny_dataset: Path) -> None:
    from dinctl.plots.attention import attention_plot

    seq = pl.read_parquet(tiny_dataset / "sequences.parquet")
    lengths = seq["items"].list.len().to_numpy()
    best = seq["raw_user"][int(np.flatnonzero(lengths == lengths.max())[0])]
    png = attention_plot(din_run)
    assert png == din_run / "plots" / f"attention_{best}.png"
    assert _png_shape(png)[2] == 4


# --------------------------------------------------------------------------- t-SNE


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_tsne_points_scores_and_seed(din_run: Path, tiny_dataset: Path) -> None:
    base = ["tsne", din_run, "--categories", "3", "--per-category", "5", "--user", "U0003"]
    code, out, err = _invoke(*base, "--seed", "0")
    assert code == 0, err
    plots = din_run / "plots"
    png, table = plots / "tsne_c3_p5_uU0003.png", plots / "tsne_c3_p5_uU0003.csv"
    assert out.splitlines() == [str(png), str(table)]
    assert _png_shape(png) == (850, 1100, 4)
    first = _read_csv(table)
    assert list(first[0]) == ["raw_item", "category", "x", "y", "score"]
    assert len(first) == 15

    items = pl.read_parquet(tiny_dataset / "items.parquet")
    top = (
        items.group_by("cate_name")
        .agg(pl.col("freq").sum(), pl.col("cate").first())
        .sort(["freq", "cate"], descending=[True, False])["cate_name"][:3]
        .to_list()
    )
    assert list(dict.fromkeys(r["category"] for r in first)) == top
    for name in top:
        expect = (
            items.filter(pl.col("cate_name") == name)
            .sort(["freq", "item"], descending=[True, False])["raw_item"][:5]
            .to_list()
        )
        assert [r["raw_item"] for r in first if r["category"] == name] == expect

    user, hist_len, seq, _ = _user_window(tiny_dataset, "U0003")
    ids = [int(r["raw_item"][1:]) for r in first]
    probs, _ = _oracle(din_run, user, seq[:hist_len][-MAX_LEN:], ids)
    np.testing.assert_allclose([float(r["score"]) for r in first], probs, rtol=1e-5)

    from dinctl.plots.tsne import compute_tsne

    xy = np.array([[float(r["x"]), float(r["y"])] for r in first])
    again = compute_tsne(din_run, 3, 5, "U0003", seed=0)
    np.testing.assert_array_equal(again.xy, xy)  # bit-identical for the same seed
    other = compute_tsne(din_run, 3, 5, "U0003", seed=1)
    assert not np.allclose(other.xy, xy)

    code, out, err = _invoke(*base, "--seed", "0", "--json")
    assert code == 0, err
    points = json.loads(out)["points"]
    assert [(p["raw_item"], p["x"], p["y"]) for p in points] == [
        (r["raw_item"], float(r["x"]), float(r["y"])) for r in first
    ]


def test_a_second_tsne_with_other_settings_keeps_the_first(din_run: Path) -> None:
    first = ["tsne", din_run, "--categories", "3", "--per-category", "5"]
    code, out, err = _invoke(*first)
    assert code == 0, err
    png = din_run / "plots" / "tsne_c3_p5.png"
    assert out.splitlines() == [str(png), str(png.with_suffix(".csv"))]
    before = png.read_bytes(), png.with_suffix(".csv").read_text()
    code, out, err = _invoke("tsne", din_run, "--categories", "2", "--per-category", "5")
    assert code == 0, err
    other = din_run / "plots" / "tsne_c2_p5.png"
    assert out.splitlines() == [str(other), str(other.with_suffix(".csv"))]
    assert len(_read_csv(other.with_suffix(".csv"))) == 10
    assert (png.read_bytes(), png.with_suffix(".csv").read_text()) == before


def test_tsne_file_names_name_the_settings_that_differ_from_the_defaults() -> None:
    from dinctl.plots.tsne import tsne_stem

    assert tsne_stem(9, 100, None, 0) == "tsne"
    assert tsne_stem(5, 30, None, 1) == "tsne_c5_p30_s1"
    assert tsne_stem(9, 100, "A/B", 0) == "tsne_uA_B"


def test_out_puts_each_figure_and_its_numbers_where_asked(din_run: Path, tmp_path: Path) -> None:
    png = tmp_path / "figs" / "att.png"
    code, out, err = _invoke("attention", din_run, "--user", "U0003", "--out", png)
    assert code == 0, err
    assert out.splitlines() == [str(png), str(tmp_path / "figs" / "att.json")]
    assert _png_shape(png) == (660, 900, 4)
    assert json.loads(png.with_suffix(".json").read_text())["user"] == "U0003"
    tsne_png = tmp_path / "t.png"
    args = ["--categories", "2", "--per-category", "5", "--out", tsne_png]
    code, out, err = _invoke("tsne", din_run, *args)
    assert code == 0, err
    assert out.splitlines() == [str(tsne_png), str(tmp_path / "t.csv")]
    assert len(_read_csv(tmp_path / "t.csv")) == 10
    assert not (din_run / "plots").exists()  # nothing went to the default place
    code, _, err = _invoke("attention", din_run, "--user", "U0003", "--out", tmp_path / "a.svg")
    assert (code, err.splitlines()) == (
        1,
        [
            f"error: --out must name a .png file, got {tmp_path / 'a.svg'} instead",
            "hint: e.g. --out attention_U0003.png",
        ],
    )


def test_help_names_the_run_positionally_and_the_default_out() -> None:
    for command, default in (
        ("attention", "<run>/plots/attention_<user>.png"),
        ("tsne", "<run>/plots/tsne[_<settings>].png"),
        ("curves", "<first run>/plots/curves.png"),
    ):
        result = runner.invoke(app, ["visualize", command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0
        text = re.sub(r"\s+", " ", result.stdout)
        assert re.search(rf"\[default: \(?{re.escape(default)}\)?\]", text), command
        assert re.search(rf"Usage: \S+ visualize {command} \[OPTIONS\] \[?RUN", text), text[:200]


def test_run_alias_gives_what_the_positional_run_gives(din_run: Path) -> None:
    a = _invoke("attention", din_run, "--user", "U0003", "--json")
    b = _invoke("attention", "--run", din_run, "--user", "U0003", "--json")
    assert a[0] == b[0] == 0 and json.loads(a[1]) == json.loads(b[1])
    code, out, err = _invoke("curves", "--run", din_run, "--json")
    assert code == 0, err
    assert [r["run"] for r in json.loads(out)["runs"]] == [str(din_run)]


def test_tsne_embeddings_are_the_model_tables(runs: dict[str, Path]) -> None:
    from dinctl.inference import open_run
    from dinctl.plots.tsne import item_representations

    model = open_run(runs["base"]).model
    reps = item_representations(model, np.array([3, 40]), np.array([1, 4]))
    expect = torch.cat([model.emb.item.weight[[3, 40]], model.emb.cate.weight[[1, 4]]], dim=1)
    np.testing.assert_array_equal(reps, expect.detach().double().numpy())


def test_tsne_embeddings_of_a_filtered_model_go_through_its_item_map() -> None:
    from dinctl.models import ModelConfig, build_model
    from dinctl.plots.tsne import item_representations

    cfg = ModelConfig(model="din", n_users=3, n_items=3, n_cates=2, emb_dim=4, item_filter=5)
    model = build_model(cfg)
    model.emb.item_map.ids.copy_(torch.tensor([0, 1, 3, 2, 3, 3]))  # 5 raw items → 3 rows
    reps = item_representations(model, np.array([2, 5]), np.array([1, 2]))
    expect = torch.cat([model.emb.item.weight[[3, 3]], model.emb.cate.weight[[1, 2]]], dim=1)
    np.testing.assert_array_equal(reps, expect.detach().double().numpy())


# --------------------------------------------------------------------------- curves


def _fake_run(folder: Path, model: str, epochs: list[tuple[float, float | None]]) -> Path:
    folder.mkdir(parents=True)
    config = {
        "train": {"model": model},
        "model": {"model": model},
        "dataset": {"path": "/d/tiny", "meta": {"dataset": "tiny"}},
    }
    (folder / "config.json").write_text(json.dumps(config))
    lines = [{"event": "step", "epoch": 1, "step": 1, "loss": 0.9}]
    for k, (loss, auc) in enumerate(epochs, start=1):
        rec = {"event": "epoch", "epoch": k, "step": 10 * k, "train_loss": loss}
        if auc is not None:
            rec["valid_user_weighted_auc"] = auc
        lines.append(rec)
    (folder / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return folder


def test_curves_numbers_equal_the_logs(tmp_path: Path) -> None:
    a = _fake_run(tmp_path / "a", "din", [(0.69, 0.61), (0.6, 0.66), (0.55, 0.68)])
    b = _fake_run(tmp_path / "b", "base", [(0.7, None), (0.65, 0.63)])
    code, out, err = _invoke("curves", a, b)
    assert code == 0, err
    png, js = a / "plots" / "curves.png", a / "plots" / "curves.json"
    assert out.splitlines() == [str(png), str(js)]
    assert _png_shape(png) == (520, 1300, 4)
    runs = json.loads(js.read_text())["runs"]
    assert [(r["run"], r["model"], r["dataset"]) for r in runs] == [
        (str(a), "din", "tiny"),
        (str(b), "base", "tiny"),
    ]
    assert runs[0]["epoch"] == [1, 2, 3]
    assert runs[0]["train_loss"] == [0.69, 0.6, 0.55]
    assert runs[0]["valid_user_weighted_auc"] == [0.61, 0.66, 0.68]
    assert runs[1]["valid_user_weighted_auc"] == [None, 0.63]
    assert json.loads(js.read_text())["metric"] == "valid_user_weighted_auc"


def test_curves_expand_experiment_folders(tmp_path: Path) -> None:
    exp = tmp_path / "exp"
    _fake_run(exp / "din-s1", "din", [(0.6, 0.7)])
    _fake_run(exp / "base-s1", "base", [(0.65, 0.66)])
    out_png = tmp_path / "figs" / "c.png"
    code, out, err = _invoke("curves", exp, "--out", out_png, "--json")
    assert code == 0, err
    assert _png_shape(out_png) == (520, 1300, 4)
    data = json.loads(out)
    assert data == json.loads(out_png.with_suffix(".json").read_text())
    assert [Path(r["run"]).name for r in data["runs"]] == ["base-s1", "din-s1"]  # sorted

    (exp / "manifest.json").write_text(
        json.dumps(
            {
                "format_version": 1,
                "runs": [{"name": "din-s1"}, {"name": "base-s1"}, {"name": "lr-s1"}],
            }
        )
    )
    code, out, err = _invoke("curves", exp, "--out", out_png, "--json")
    assert code == 0, err
    assert [Path(r["run"]).name for r in json.loads(out)["runs"]] == ["din-s1", "base-s1"]


def test_curves_of_a_trained_run(runs: dict[str, Path], tmp_path: Path) -> None:
    from dinctl.plots.curves import curves_plot

    png = curves_plot([runs["din"], runs["base"]], out=tmp_path / "c.png")
    assert _png_shape(png) == (520, 1300, 4)
    data = json.loads((tmp_path / "c.json").read_text())["runs"]
    for run, got in zip(("din", "base"), data, strict=True):
        log = [json.loads(x) for x in (runs[run] / "log.jsonl").read_text().splitlines()]
        epochs = [r for r in log if r["event"] == "epoch"]
        assert got["model"] == run
        assert got["train_loss"] == [r["train_loss"] for r in epochs]
        # the trainer's user-weighted validation AUC, under today's key or the old `valid_gauc`
        uw = [r.get("valid_user_weighted_auc", r.get("valid_gauc")) for r in epochs]
        assert got["valid_user_weighted_auc"] == uw and None not in uw


# --------------------------------------------------------------------------- errors

RUN_HINT = "hint: pass a folder written by `dinctl train` or `dinctl experiment`"


def test_error_messages(runs: dict[str, Path], tiny_dataset: Path, tmp_path: Path) -> None:
    din = runs["din"]
    missing = tmp_path / "nope"
    no_ckpt = tmp_path / "no_ckpt"
    no_ckpt.mkdir()
    shutil.copy(din / "config.json", no_ckpt / "config.json")
    no_cfg = tmp_path / "no_cfg"
    no_cfg.mkdir()
    seqs, items = tiny_dataset / "sequences.parquet", tiny_dataset / "items.parquet"
    cases = [
        (
            ["attention", missing],
            [f"error: run folder {missing} does not exist", RUN_HINT],
        ),
        (
            ["tsne", no_cfg],
            [
                f"error: {no_cfg} is not a run folder: {no_cfg / 'config.json'} does not exist",
                RUN_HINT,
            ],
        ),
        (
            ["attention", no_ckpt],
            [
                f"error: {no_ckpt} has no best.pt or checkpoint.pt",
                "hint: the run has not finished an epoch; resume it with `dinctl train --resume "
                f"--out {no_ckpt}`",
            ],
        ),
        (
            ["attention", din, "--user", "NOPE"],
            [
                f"error: user 'NOPE' is not in {seqs}",
                "hint: give a raw user id as in the source data, e.g. U0001",
            ],
        ),
        (
            ["tsne", din, "--user", "NOPE", "--categories", "2", "--per-category", "3"],
            [
                f"error: user 'NOPE' is not in {seqs}",
                "hint: give a raw user id as in the source data, e.g. U0001",
            ],
        ),
        (
            ["attention", din, "--user", "U0001", "--candidate", "X9"],
            [
                f"error: item 'X9' is not in {items}",
                "hint: give a raw item id as in the source data, e.g. I0001",
            ],
        ),
        (
            ["attention", runs["base"], "--user", "U0001"],
            [
                f"error: model 'base' of run {runs['base']} has no attention weights",
                "hint: attention maps need a DIN run (`dinctl train --model din`)",
            ],
        ),
        (
            ["tsne", din, "--categories", "1", "--per-category", "4"],
            [
                f"error: only 4 items to embed in {tiny_dataset}; t-SNE needs at least 5",
                "hint: raise --categories or --per-category",
            ],
        ),
        (
            ["curves", no_ckpt],
            [
                f"error: run {no_ckpt} has no log: {no_ckpt / 'log.jsonl'} does not exist",
                "hint: train it with `dinctl train` (it writes log.jsonl as it goes)",
            ],
        ),
        (
            ["curves", missing],
            [f"error: run folder {missing} does not exist", RUN_HINT],
        ),
        (
            ["curves", no_cfg],
            [
                f"error: {no_cfg} is neither a run folder nor an experiment folder holding runs",
                RUN_HINT,
            ],
        ),
        (
            ["curves", din, "--out", tmp_path / "c.json"],
            [
                f"error: --out must name a .png file, got {tmp_path / 'c.json'} instead",
                "hint: e.g. --out curves.png",
            ],
        ),
    ]
    for args, expected in cases:
        code, out, err = _invoke(*args)
        assert (code, out, err.splitlines()) == (1, "", expected), args


def test_log_errors(tmp_path: Path) -> None:
    run = _fake_run(tmp_path / "r", "din", [])
    code, _, err = _invoke("curves", run)
    assert (code, err.splitlines()) == (
        1,
        [
            f"error: {run / 'log.jsonl'} has no epoch lines",
            "hint: the run stopped before its first epoch ended; train at least one epoch",
        ],
    )
    (run / "log.jsonl").write_text('{"event": "epoch", "epoch": 1}\n{"event": "ep\n')
    code, _, err = _invoke("curves", run)
    assert (code, err.splitlines()) == (
        1,
        [
            f'error: {run / "log.jsonl"}:2: expected a JSON object, got \'{{"event": "ep\'',
            "hint: the log was damaged; retrain the run",
        ],
    )
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "manifest.json").write_text(
        json.dumps({"format_version": 1, "runs": [{"name": "din-s1"}]})
    )
    code, _, err = _invoke("curves", exp)
    assert (code, err.splitlines()) == (
        1,
        [
            f"error: experiment folder {exp} has no run with a log.jsonl yet",
            "hint: run `dinctl experiment table3` or `table4` first (it resumes)",
        ],
    )


def test_usage_errors_exit_2() -> None:
    assert _invoke("attention")[0] == 2  # a run is required
    assert _invoke("tsne", "x", "--categories", "0")[0] == 2
    assert _invoke("curves")[0] == 2
    code, _, err = _invoke("attention", "a", "--run", "b")
    assert code == 2 and "got RUN a and --run b; give one run" in err


def test_malformed_log_lines_name_file_and_line(tmp_path: Path) -> None:
    run = _fake_run(tmp_path / "r", "din", [(0.6, 0.7)])
    log = run / "log.jsonl"
    good = log.read_text()
    for bad in ["[1, 2]", "not json", '"a string"', '{"event": 3}']:
        log.write_text(good + bad + "\n")
        lines = good.count("\n") + 1
        code, out, err = _invoke("curves", run)
        assert (code, out) == (1, ""), bad
        assert err.splitlines() == [
            f"error: {log}:{lines}: expected a JSON object, got {bad!r}",
            "hint: the log was damaged; retrain the run",
        ], bad
    log.write_text(good + '{"event": "epoch", "epoch": "two", "train_loss": 0.5}\n')
    code, _, err = _invoke("curves", run)
    assert code == 1
    assert err.splitlines()[0] == (f"error: {log}:3: expected a positive integer epoch, got 'two'")


def test_old_log_keys_are_plotted_as_user_weighted(tmp_path: Path) -> None:
    run = _fake_run(tmp_path / "old", "din", [])
    lines = [
        {"event": "epoch", "epoch": 1, "train_loss": 0.6, "valid_auc": 0.71, "valid_gauc": 0.66},
        {"event": "epoch", "epoch": 2, "train_loss": 0.5, "valid_auc": 0.73, "valid_gauc": 0.68},
    ]
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    code, out, err = _invoke("curves", run, "--json")
    assert code == 0, err
    [curve] = json.loads(out)["runs"]
    assert curve["valid_user_weighted_auc"] == [0.66, 0.68]  # `valid_gauc` was Eq. (10)
    assert curve["valid_global_auc"] == [0.71, 0.73]


def test_every_figure_refuses_a_dataset_changed_since_training(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    run = Path(shutil.copytree(runs["din"], tmp_path / "din"))
    config = json.loads((run / "config.json").read_text())
    data = Path(config["dataset"]["path"])
    actual = json.loads((data / "meta.json").read_text())["checksum"]
    config["dataset"]["checksum"] = "0" * 64
    (run / "config.json").write_text(json.dumps(config))
    expected = [
        f"error: the dataset {data} changed since {run} was trained "
        f"(checksum {actual[:12]} vs 000000000000)",
        "hint: use the dataset the run was trained on (or train the run again)",
    ]
    for args in (["attention", run], ["tsne", "--run", run]):
        code, out, err = _invoke(*args)
        assert (code, out, err.splitlines()) == (1, "", expected), args
    eval_result = runner.invoke(app, ["evaluate", str(run)])
    assert eval_result.exit_code == 1 and eval_result.stderr.splitlines() == expected


def test_figures_call_the_sample_data_by_its_name(tmp_path: Path) -> None:
    from dinctl.data.datasets.amazon import preprocess_amazon
    from dinctl.plots.common import SAMPLE_LABEL, dataset_title
    from dinctl.quickstart import sample_data_dir

    data = tmp_path / "sample"
    preprocess_amazon(sample_data_dir() / "amazon", data)
    meta = json.loads((data / "meta.json").read_text())
    assert dataset_title("amazon-Electronics", meta) == SAMPLE_LABEL
    run = _fake_run(tmp_path / "r", "din", [(0.6, 0.7)])
    config = json.loads((run / "config.json").read_text())
    config["dataset"]["path"] = str(data)
    (run / "config.json").write_text(json.dumps(config))
    code, out, err = _invoke("curves", run, "--json")
    assert code == 0, err
    assert json.loads(out)["runs"][0]["dataset"] == SAMPLE_LABEL
    meta["inputs"][0]["sha256"] = "0" * 64  # another file of that name: the real data
    assert dataset_title("amazon-Electronics", meta) == "amazon-Electronics"
    assert dataset_title("tiny", {}) == "tiny"
