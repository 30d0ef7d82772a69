"""The feature schema: multi-field behaviours, user, context and numeric fields end to end.

Format 2 round trip, format-1 folders still loading and training, every model with extra
fields (padding invariance; a signal only a user or only a context field carries is learnt),
`preprocess logs` with the field flags or a TOML schema file, every bad input, and predict
on a multi-field run (export/serve/predict of such runs: tests/test_serve_fields.py).
"""

from __future__ import annotations

import csv
import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch
from faults import cli
from sklearn.metrics import roc_auc_score

from dinctl.data.batching import Batch, SplitTensors, WindowGatherer
from dinctl.data.datasets.logs import LogColumns, preprocess_logs
from dinctl.data.schema import FeatureSchema
from dinctl.data.schema_file import columns_from_toml
from dinctl.data.store import load_dataset
from dinctl.errors import DinctlError
from dinctl.models import MODEL_NAMES, ModelConfig, build_model
from dinctl.training.config import resolve_config
from dinctl.training.loop import train
from tests.test_models import config

LOGS = Path(__file__).resolve().parents[1] / "sample_data" / "logs"
SCHEMA_COLUMNS = LogColumns(
    user="user_id",
    item="item_id",
    category="cate",
    time="ts",
    label="click",
    behaviour=("brand",),
    context=("slot", "hour"),
    numeric=("price",),
    user_features=LOGS / "users.csv",
    user_feature_cols=("age", "gender", "city"),
)


@pytest.fixture(scope="module")
def multi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("multi") / "data"
    preprocess_logs(LOGS / "events.csv", out, columns=SCHEMA_COLUMNS)
    return out


# ------------------------------------------------------------------ the format


def test_schema_round_trip(multi: Path) -> None:
    ds = load_dataset(multi)
    meta = json.loads((multi / "meta.json").read_text())
    assert meta["format_version"] == 2
    assert meta["schema"] == {
        "behaviour": ["item", "cate", "brand"],
        "user": ["age", "gender", "city"],
        "context": ["slot", "hour"],
        "numeric": ["price"],
    }
    assert ds.schema == FeatureSchema.from_dict(ds.schema.to_dict())
    assert ds.schema == FeatureSchema(
        ("item", "cate", "brand"), ("age", "gender", "city"), ("slot", "hour"), ("price",)
    )
    # vocabularies: 5 brands, 3 slots, 3 age bands, 2 genders (+ padding)
    assert (ds.vocab_size("brand"), ds.vocab_size("slot"), ds.vocab_size("age")) == (6, 4, 4)
    assert ds.vocab_size("gender") == 3
    assert ds.seq_fields["brand"].shape == ds.seq_items.shape
    assert ds.user_table is not None and ds.user_table.shape == (101, 3)
    # every tenth user has no profile row: all its fields are 0 (missing)
    raw = ds.users_frame()["raw_user"].to_list()
    no_profile = [i + 1 for i, r in enumerate(raw) if int(r[1:]) % 10 == 0]
    assert len(no_profile) == 10 and not ds.user_table[no_profile].any()
    assert ds.user_table[[u for u in range(1, 101) if u not in no_profile]].min() >= 1
    assert ds.meta["counts"]["users_without_profile"] == 10
    tr = ds.split("train")
    assert set(tr.fields) == {"brand", "slot", "hour", "price"}
    # a sample's candidate brand is its own event's brand (labelled log: rows are events)
    pos = ds.seq_offsets[tr.user] + tr.hist_len
    np.testing.assert_array_equal(tr.fields["brand"], ds.seq_fields["brand"][pos])
    np.testing.assert_array_equal(tr.item, ds.seq_items[pos])
    # numeric fields are standardised with the training split's statistics
    assert abs(float(tr.fields["price"].mean())) < 1e-5
    assert abs(float(tr.fields["price"].std()) - 1) < 1e-4
    assert sorted(ds.value_names("brand")) == ["acme", "globex", "hooli", "initech", "umbrella"]


def test_raw_values_survive(multi: Path) -> None:
    """The ids map back to the log's raw values (brand of every behaviour of one user)."""
    ds = load_dataset(multi)
    uid = ds.users_frame()["raw_user"].to_list().index("u001") + 1
    lo, hi = ds.seq_offsets[uid], ds.seq_offsets[uid + 1]
    names = ds.value_names("brand")
    got = [names[b - 1] for b in ds.seq_fields["brand"][lo:hi]]
    with open(LOGS / "events.csv", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["user_id"] == "u001"]
    rows.sort(key=lambda r: (int(r["ts"]), r["item_id"]))
    assert got == [r["brand"] for r in rows]


def test_batches_carry_every_field(multi: Path) -> None:
    ds = load_dataset(multi)
    rows = SplitTensors(ds.split("train"))
    batch = WindowGatherer(ds, max_len=4).gather(*rows.rows(slice(0, 32)))
    t = batch.hist_item.shape[1]
    assert batch.hist_fields is not None and batch.hist_fields.shape == (32, t, 1)
    assert batch.cand_fields is not None and batch.cand_fields.shape == (32, 1)
    assert batch.user_fields is not None and batch.user_fields.shape == (32, 3)
    assert batch.context is not None and batch.context.shape == (32, 2)
    assert batch.numeric is not None and batch.numeric.dtype == torch.float32
    assert bool((batch.hist_fields[~batch.hist_mask] == 0).all())
    assert bool((batch.hist_fields[batch.hist_mask] > 0).all())
    torch.testing.assert_close(
        batch.user_fields, torch.from_numpy(ds.user_table)[batch.user].long()
    )


def test_field_frequencies(multi: Path) -> None:
    """n_j per field, counted like the category's: by brute force over the training samples."""
    ds = load_dataset(multi)
    tr = ds.split("train")
    want_brand = np.zeros(ds.vocab_size("brand"), dtype=np.int64)
    want_slot = np.zeros(ds.vocab_size("slot"), dtype=np.int64)
    want_age = np.zeros(ds.vocab_size("age"), dtype=np.int64)
    assert ds.user_table is not None
    for u, h, b, s in zip(tr.user, tr.hist_len, tr.fields["brand"], tr.fields["slot"], strict=True):
        lo = ds.seq_offsets[u]
        present = set(ds.seq_fields["brand"][lo : lo + h].tolist()) | {int(b)}
        want_brand[list(present)] += 1
        want_slot[s] += 1
        want_age[ds.user_table[u, 0]] += 1
    want_age[0] = 0
    np.testing.assert_array_equal(ds.field_sample_freq("brand"), want_brand)
    np.testing.assert_array_equal(ds.field_sample_freq("slot"), want_slot)
    np.testing.assert_array_equal(ds.field_sample_freq("age"), want_age)


def test_version_1_folder_loads_and_trains(tiny_dataset: Path, tmp_path: Path) -> None:
    """A folder written before the schema (format 1, no `schema`) reads as item/category."""
    old = tmp_path / "old"
    shutil.copytree(tiny_dataset, old)
    meta = json.loads((old / "meta.json").read_text())
    meta["format_version"] = 1
    del meta["schema"]
    (old / "meta.json").write_text(json.dumps(meta))
    ds = load_dataset(old)
    assert ds.schema == FeatureSchema() and ds.schema.is_basic
    batch = WindowGatherer(ds).gather(*SplitTensors(ds.split("train")).rows(slice(0, 4)))
    assert batch.hist_fields is None and batch.user_fields is None and batch.numeric is None
    cfg = resolve_config(
        {"data": str(old), "out": str(tmp_path / "run"), "epochs": 1, "emb_dim": 8}, None
    )
    result = train(cfg)
    assert result.best_epoch == 1
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["model"]
    assert saved["behaviour_fields"] == [] and saved["user_fields"] == []


def test_bad_schema_is_one_line(multi: Path, tmp_path: Path) -> None:
    with pytest.raises(DinctlError, match=r"must start with item, cate"):
        FeatureSchema(behaviour=("cate", "item"))
    with pytest.raises(DinctlError, match=r"feature name 'label' \(context\) is not allowed"):
        FeatureSchema(context=("label",))
    with pytest.raises(DinctlError, match=r"feature name 'slot' is used twice"):
        FeatureSchema(user=("slot",), context=("slot",))
    broken = tmp_path / "broken"
    shutil.copytree(multi, broken)
    meta = json.loads((broken / "meta.json").read_text())
    del meta["vocab"]["brand"]
    (broken / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DinctlError, match=r"meta.json: vocab.brand is None, expected a positive"):
        load_dataset(broken)


# ------------------------------------------------------------------ the models


def _config(name: str, **over: Any) -> ModelConfig:
    """tests/test_models.py's small config (30 items) with every kind of extra field."""
    fields: dict[str, Any] = dict(
        n_users=10, n_cates=5, mlp_hidden=(8, 4), wide_buckets=4096,
        behaviour_fields=(("brand", 7), ("shop", 4)), user_fields=(("age", 4), ("gender", 3)),
        context_fields=(("slot", 5),), numeric_fields=("price",),
    )  # fmt: skip
    return config(name, **{**fields, **over})


def _batch(seed: int, b: int = 6, t: int = 5) -> Batch:
    g = torch.Generator().manual_seed(seed)
    length = torch.randint(0, t + 1, (b,), generator=g)
    mask = torch.arange(t)[None, :] < length[:, None]  # (B, T)

    def ids(hi: int, *shape: int) -> torch.Tensor:
        return torch.randint(1, hi, shape, generator=g)

    return Batch(
        user=ids(10, b),
        item=ids(31, b),
        cate=ids(6, b),
        hist_item=ids(31, b, t) * mask,
        hist_cate=ids(6, b, t) * mask,
        hist_mask=mask,
        label=torch.zeros(b),
        hist_fields=torch.stack([ids(7, b, t), ids(4, b, t)], dim=2) * mask[:, :, None],
        cand_fields=torch.stack([ids(7, b), ids(4, b)], dim=1),
        user_fields=torch.stack([ids(4, b), ids(3, b)], dim=1),
        context=ids(5, b, 1),
        numeric=torch.randn(b, 1, generator=g),
    )


def _padded(batch: Batch, extra: int, seed: int) -> Batch:
    """The same rows with `extra` more padding columns and garbage ids at every padding slot."""
    g = torch.Generator().manual_seed(seed)
    b, t = batch.hist_mask.shape
    mask = torch.cat([batch.hist_mask, torch.zeros(b, extra, dtype=torch.bool)], dim=1)

    def noisy(x: torch.Tensor, hi: int) -> torch.Tensor:
        x = torch.cat([x, torch.zeros(b, extra, *x.shape[2:], dtype=x.dtype)], dim=1)
        junk = torch.randint(1, hi, x.shape, generator=g)
        pad = ~mask if x.dim() == 2 else ~mask[:, :, None]
        return torch.where(pad, junk, x)

    assert batch.hist_fields is not None
    return Batch(
        **{
            **batch.__dict__,
            "hist_item": noisy(batch.hist_item, 31),
            "hist_cate": noisy(batch.hist_cate, 6),
            "hist_fields": noisy(batch.hist_fields, 4),
            "hist_mask": mask,
        }
    )


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("act", ["prelu", "dice"])
def test_models_with_extra_fields_ignore_padding(name: str, act: str) -> None:
    torch.manual_seed(0)
    model = build_model(_config(name, act=act))
    with torch.no_grad():  # padding rows stay 0: randomise everything else
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
        for m in model.modules():
            if isinstance(m, torch.nn.Embedding) and m.padding_idx is not None:
                m.weight[m.padding_idx].zero_()
    for mode in ("eval", "train"):
        getattr(model, mode)()
        for seed in range(3):
            clean = _batch(seed)
            torch.testing.assert_close(model(clean).logits, model(_padded(clean, 3, seed)).logits)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_extra_field_moves_the_score(name: str) -> None:
    """Each field group reaches the logit: changing only it changes the output."""
    torch.manual_seed(1)
    model = build_model(_config(name)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    batch = _batch(7)
    base = model(batch).logits
    assert batch.cand_fields is not None and batch.user_fields is not None
    assert batch.context is not None and batch.numeric is not None
    for field, value in (
        ("cand_fields", batch.cand_fields % torch.tensor([6, 3]) + 1),
        ("user_fields", batch.user_fields % torch.tensor([3, 2]) + 1),
        ("context", batch.context % 4 + 1),
        ("numeric", batch.numeric + 1.0),
    ):
        changed = model(Batch(**{**batch.__dict__, field: value})).logits
        assert not torch.allclose(changed, base), field
    tags = {tag for _, _, tag in model.sparse_tables()}
    if name != "lr":
        assert {"beh:0:brand", "user:1:gender", "ctx:0:slot"} <= tags, tags


def test_din_attends_over_all_behaviour_fields() -> None:
    cfg = _config("din")
    model = build_model(cfg)
    assert cfg.behaviour_dim == 4 * 4  # item, cate, brand, shop embeddings concatenated
    assert model.attention.dim == 16
    # the MLP sees [interest ⊕ candidate ⊕ age ⊕ gender ⊕ slot ⊕ price] (Fig. 2)
    assert model.mlp.linears[0].in_features == 2 * 16 + 3 * 4 + 1


def test_old_model_config_reads_without_fields() -> None:
    old = ModelConfig(model="din", n_users=3, n_items=5, n_cates=2).to_dict()
    for key in ("behaviour_fields", "user_fields", "context_fields", "numeric_fields"):
        del old[key]
    cfg = ModelConfig.from_dict(old)
    assert cfg.is_basic and cfg.side_dim == 0
    assert ModelConfig.from_dict(_config("pnn").to_dict()) == _config("pnn")


# -------------------------------------------------------------- planted signals


def _planted_log(folder: Path, where: str, seed: int = 5) -> tuple[Path, Path]:
    """A labelled log whose clicks depend only on a user field (`where` = "user") or only on
    a context field ("context"); items and categories are noise."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    log, users = folder / "log.csv", folder / "users.csv"
    with open(log, "w", newline="") as f, open(users, "w", newline="") as g:
        w, wu = csv.writer(f), csv.writer(g)
        w.writerow(["user", "item", "category", "timestamp", "slot", "click"])
        wu.writerow(["user", "segment"])
        for u in range(400):
            segment = rng.choice("ab")
            wu.writerow([f"u{u}", segment])
            for k in range(10):
                item = rng.randrange(40)
                slot = rng.choice("xy")
                hot = (segment if where == "user" else slot) in "ax"
                click = int(rng.random() < (0.85 if hot else 0.15))
                w.writerow([f"u{u}", f"i{item}", f"c{item % 4}", 1000 + k, slot, click])
    return log, users


def _valid_auc(data: Path, out: Path, model: str = "din") -> float:
    cfg = resolve_config(
        {
            "data": str(data),
            "out": str(out),
            "model": model,
            "epochs": 4,
            "emb_dim": 8,
            "batch_size": 64,
            "lr": 0.01,
            "seed": 3,
        },
        None,
    )
    return float(train(cfg).best_valid["valid_global_auc"])


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Datasets of the planted logs: "<where>-with" holds the field, "<where>-without" not."""
    root = tmp_path_factory.mktemp("planted")
    out = {}
    for where in ("user", "context"):
        log, users = _planted_log(root / f"raw-{where}", where)
        with_field = (
            LogColumns(label="click", user_features=users, user_feature_cols=("segment",))
            if where == "user"
            else LogColumns(label="click", context=("slot",))
        )
        for kind, cols in (("with", with_field), ("without", LogColumns(label="click"))):
            out[f"{where}-{kind}"] = root / f"{where}-{kind}"
            preprocess_logs(log, out[f"{where}-{kind}"], columns=cols)
    return out


@pytest.mark.parametrize("where", ["user", "context"])
def test_din_needs_the_side_field_for_its_signal(
    where: str, planted: dict[str, Path], tmp_path: Path
) -> None:
    auc_with = _valid_auc(planted[f"{where}-with"], tmp_path / "with")
    auc_without = _valid_auc(planted[f"{where}-without"], tmp_path / "without")
    # planted: P(click) 0.85 vs 0.15 by the field alone; items and categories are noise
    assert auc_with > 0.75, (auc_with, auc_without)
    assert auc_without < 0.62, (auc_with, auc_without)


@pytest.mark.parametrize("where", ["user", "context"])
@pytest.mark.parametrize("model", [m for m in MODEL_NAMES if m != "din"])
def test_every_model_learns_a_side_field_signal(
    model: str, where: str, planted: dict[str, Path], tmp_path: Path
) -> None:
    auc = _valid_auc(planted[f"{where}-with"], tmp_path / "run", model)
    assert auc > 0.75, (model, where, auc)


# --------------------------------------------------------------- preprocess logs


def _cli(*args: Any) -> Any:
    return cli(*map(str, args))  # tests/faults.py's in-process dinctl


def _one_line_error(result: Any, expected: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert expected in lines[0] and lines[0].startswith("error: "), lines
    assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("hint: ")), lines


def test_cli_flags_end_to_end_train_evaluate_visualize(tmp_path: Path) -> None:
    data, run = tmp_path / "data", tmp_path / "run"
    result = _cli(
        "preprocess",
        "logs",
        LOGS / "events.csv",
        "--out",
        data,
        "--user-col",
        "user_id",
        "--time-col",
        "ts",
        "--label-col",
        "click",
        "--behaviour-cols",
        "item_id,cate,brand",
        "--context-cols",
        "slot,hour",
        "--numeric-cols",
        "price",
        "--user-features",
        LOGS / "users.csv",
        "--user-feature-cols",
        "age,gender,city",
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["fields"]["behaviour"] == ["item", "cate", "brand"]
    via_toml = tmp_path / "toml"
    result = _cli(
        "preprocess",
        "logs",
        LOGS / "events.csv",
        "--out",
        via_toml,
        "--schema",
        LOGS / "schema.toml",
    )
    assert result.exit_code == 0, result.output
    for name in ("train.parquet", "sequences.parquet", "users.parquet", "values.parquet"):
        assert (data / name).read_bytes() == (via_toml / name).read_bytes(), name
    result = _cli(
        "train",
        "--data",
        data,
        "--out",
        run,
        "--act",
        "dice",
        "--reg",
        "mba",
        "--emb-dim",
        "8",
        "--epochs",
        "2",
        "--batch-size",
        "64",
        "--lr",
        "0.01",
    )
    assert result.exit_code == 0, result.output
    result = _cli("evaluate", run)
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "metrics.json").read_text())
    pred = pl.read_parquet(run / "predictions.parquet")  # the scores of every test row
    assert metrics["split"] == "test" and pred.height == len(load_dataset(data).split("test"))
    assert metrics["global_auc"] == pytest.approx(roc_auc_score(pred["label"], pred["score"]))
    result = _cli("visualize", "attention", "--run", run)
    assert result.exit_code == 0, result.output
    shown = json.loads(next((run / "plots").glob("attention_*.json")).read_text())
    assert all(set(b["fields"]) == {"brand"} for b in shown["behaviours"])
    assert all(set(c["fields"]) == {"brand"} for c in shown["candidates"])
    # predict (like export and serve: tests/test_serve_fields.py) takes the extra fields
    requests = tmp_path / "requests.jsonl"
    request = {"user": "u001", "candidates": ["i001"], "context": {"slot": "feed", "hour": 20}}
    requests.write_text(json.dumps({**request, "numeric": {"price": 99.5}}) + "\n")
    result = _cli("predict", run, "--input", requests, "--out", tmp_path / "scores.parquet")
    assert result.exit_code == 0, result.output
    from dinctl.serving.runtime import open_serving

    serving = open_serving(run)  # the library's score of the same request: what the CLI wrote
    encoded = serving.vocab.encode(["i001"], "u001", context=request["context"],
                                   numeric={"price": 99.5})  # fmt: skip
    want = serving.score([encoded])[0].scores
    got = pl.read_parquet(tmp_path / "scores.parquet")["score"].to_numpy()
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_unlabelled_multi_field_log_windows(tmp_path: Path) -> None:
    """Without a label: sliding windows; a negative's brand is the negative item's own."""
    out = tmp_path / "d"
    cols = LogColumns(
        user="user_id",
        item="item_id",
        category="cate",
        time="ts",
        behaviour=("brand",),
        context=("slot",),
    )
    preprocess_logs(LOGS / "events.csv", out, columns=cols)
    ds = load_dataset(out)
    tr = ds.split("train")
    item_brand = ds.item_fields()[:, 0]
    np.testing.assert_array_equal(tr.fields["brand"], item_brand[tr.item])
    np.testing.assert_array_equal(tr.fields["slot"][0::2], tr.fields["slot"][1::2])


def _bad_log(tmp: Path) -> tuple[Path, Path]:
    log = tmp / "log.csv"
    log.write_text(
        "user,item,category,timestamp,slot,price,click\n"
        "u1,i1,c1,1,top,1.5,1\nu1,i2,c2,2,side,2.5,0\nu2,i1,c1,3,top,x9,1\nu2,i3,c1,4,,3,0\n"
    )
    users = tmp / "users.csv"
    users.write_text("user,age\nu1,20\nu2,30\nu1,40\n")
    return log, users


def test_bad_inputs_are_one_line(tmp_path: Path) -> None:
    log, users = _bad_log(tmp_path)
    out = tmp_path / "out"
    cases = [
        (["--behaviour-cols", "item,category,brand"], "has no column(s) 'brand'"),
        (["--behaviour-cols", "item"], "--behaviour-cols needs the item and the category column"),
        (["--context-cols", "slot"], "column 'slot' is empty in data row 4"),
        (["--numeric-cols", "price"], "numeric column 'price' holds 'x9' in data row 3"),
        (
            ["--user-features", users, "--user-feature-cols", "age"],
            "user 'u1' (column 'user') is on more than one row",
        ),
        (["--user-features", users, "--user-feature-cols", "height"], "has no column(s) 'height'"),
        (["--user-feature-cols", "age"], "--user-feature-cols needs --user-features FILE"),
        (["--context-cols", "item"], "column 'item' is named for two fields"),
        (["--schema", tmp_path / "none.toml"], "does not exist"),
        (
            ["--schema", LOGS / "schema.toml", "--context-cols", "slot"],
            "--context-cols cannot be combined with --schema",
        ),
        (
            ["--schema", LOGS / "schema.toml", "--time-col", "when"],
            "--time-col cannot be combined with --schema",
        ),
        (
            ["--schema", LOGS / "schema.toml", "--user-col", "user"],  # its default, but typed
            "--user-col cannot be combined with --schema",
        ),
    ]
    for extra, expected in cases:
        result = _cli("preprocess", "logs", log, "--out", out, *extra)
        _one_line_error(result, expected)
        assert not out.exists()
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text('user = "user"\ncolour = "red"\n')
    _one_line_error(
        _cli("preprocess", "logs", log, "--out", out, "--schema", bad_toml),
        "has unknown key(s) colour",
    )
    bad_toml.write_text('behaviour = "item"\n')
    _one_line_error(
        _cli("preprocess", "logs", log, "--out", out, "--schema", bad_toml),
        "'behaviour' must be a list of column names",
    )
    bad_toml.write_text("user = [\n")
    _one_line_error(
        _cli("preprocess", "logs", log, "--out", out, "--schema", bad_toml),
        "cannot read schema file",
    )


def test_profile_file_of_other_users_is_refused(tmp_path: Path) -> None:
    log, _ = _bad_log(tmp_path)
    users = tmp_path / "others.csv"
    users.write_text("user,age\n7,20\n8,30\n")
    result = _cli(
        "preprocess",
        "logs",
        log,
        "--out",
        tmp_path / "out",
        "--user-features",
        users,
        "--user-feature-cols",
        "age",
    )
    _one_line_error(result, "no user of the log has a row in the user feature file")
    assert not (tmp_path / "out").exists()


def test_out_must_not_overlap_the_user_feature_file(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    shutil.copy(LOGS / "events.csv", log)
    profile = tmp_path / "profiles" / "users.csv"
    profile.parent.mkdir()
    shutil.copy(LOGS / "users.csv", profile)
    result = _cli(
        "preprocess",
        "logs",
        log,
        "--out",
        profile.parent,
        "--user-col",
        "user_id",
        "--time-col",
        "ts",
        "--behaviour-cols",
        "item_id,cate",
        "--user-features",
        profile,
        "--user-feature-cols",
        "age",
    )
    _one_line_error(result, "contains the user feature file")
    assert profile.exists()


def test_toml_schema_reads_like_the_flags() -> None:
    cols = columns_from_toml(LOGS / "schema.toml")
    assert cols == SCHEMA_COLUMNS


def test_mba_uses_each_fields_own_frequency() -> None:
    """Eq. (6)-(7) per field: a brand/user/context row's penalty divides by that field's n_j."""
    from dinctl.training.regularizers import batch_ids, mba_penalty

    model = build_model(_config("din"))
    batch = _batch(3)
    tables = model.sparse_tables()
    freqs = {
        name: torch.arange(1, v + 1, dtype=torch.float64)
        for name, v in (
            ("item", 31),
            ("cate", 6),
            ("brand", 7),
            ("shop", 4),
            ("age", 4),
            ("gender", 3),
            ("slot", 5),
        )
    }
    got = mba_penalty(tables, batch, freqs, lam=2.0)
    want = torch.zeros((), dtype=torch.float64)
    for _, table, tag in tables:
        ids, valid = batch_ids(batch, tag)
        uniq = torch.unique(ids[valid])
        field = tag.partition(".")[0].rpartition(":")[2]
        w = table.weight[uniq].double()
        want = want + (w.pow(2).sum(1) / freqs[field][uniq]).sum()
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-9)
    ids, _ = batch_ids(batch, "beh:0:brand")
    assert batch.cand_fields is not None and ids.shape[1] == 1 + batch.hist_mask.shape[1]
    torch.testing.assert_close(ids[:, 0], batch.cand_fields[:, 0])
    ids, _ = batch_ids(batch, "user:1:gender")
    assert batch.user_fields is not None
    torch.testing.assert_close(ids[:, 0], batch.user_fields[:, 1])
