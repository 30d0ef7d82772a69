"""Hostile input on `preprocess logs` and `preprocess taobao-ad` (issue #22, cases 5, 7, 8, 11, 14).

The classes: every reader keeps ids as text (the log and the user profile file; the raw id a
user gave is the id they get back); every numeric path rejects values float32 cannot hold
(the reader names column and row, standardisation names field and sample); two columns never
collapse into one field; each reader's errors are one line naming the file at fault; a full
disk during --overwrite keeps the old dataset.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from faults import REPO, cli, fill_disk, small_disk, stderr_lines

from dinctl.data.store import load_dataset
from dinctl.errors import DinctlError

LOGS = REPO / "sample_data" / "logs"
TAOBAO_AD = REPO / "sample_data" / "taobao-ad"
COLS = ["--user-col", "user_id", "--item-col", "item_id", "--category-col", "cate",
        "--time-col", "ts"]  # fmt: skip


def events() -> pl.DataFrame:
    return pl.read_csv(LOGS / "events.csv", infer_schema_length=0)  # every column as text


def one_error(res: object, *fragments: str) -> str:
    lines = stderr_lines(res)
    assert res.exit_code == 1, (res.exit_code, res.output)  # type: ignore[attr-defined]
    assert lines and lines[0].startswith("error: ") and len(lines) <= 2, (lines, res.exception)  # type: ignore[attr-defined]
    for fragment in fragments:
        assert fragment in lines[0], lines
    return lines[0]


def preprocess(log: Path, out: Path, *extra: str) -> object:
    return cli("preprocess", "logs", str(log), "--out", str(out), *COLS, *extra)


# ------------------------------------------------------------------ 5: ids are text


def test_ids_keep_their_text(tmp_path: Path) -> None:
    df = events()
    items = sorted(set(df["item_id"]))
    code = {it: f"{k:05d}" for k, it in enumerate(items, start=1)}  # i063 → 000NN
    df = df.with_columns(pl.col("item_id").replace_strict(code),
                         pl.col("user_id").str.replace("u", "0"))  # fmt: skip
    first = df["item_id"][0]
    twin = first.lstrip("0").rjust(4, "0")  # 000NN and 00NN: two items, one integer
    half = pl.int_range(pl.len()) % 2 == 0
    df = df.with_columns(
        pl.when(half & (pl.col("item_id") == first)).then(pl.lit(twin))
        .otherwise(pl.col("item_id")).alias("item_id")
    )  # fmt: skip
    assert {first, twin} <= set(df["item_id"])
    df.write_csv(tmp_path / "log.csv")
    profile = pl.read_csv(LOGS / "users.csv", infer_schema_length=0)
    profile.with_columns(pl.col("user_id").str.replace("u", "0")).write_csv(tmp_path / "users.csv")
    res = preprocess(tmp_path / "log.csv", tmp_path / "data", "--user-features",
                     str(tmp_path / "users.csv"), "--user-feature-cols", "age")  # fmt: skip
    assert res.exit_code == 0, res.output
    ds = load_dataset(tmp_path / "data")
    raw_items = set(ds.items_frame()["raw_item"])
    assert {first, twin} <= raw_items and len(raw_items) == df["item_id"].n_unique()
    raw_users = pl.read_parquet(tmp_path / "data" / "sequences.parquet")["raw_user"].to_list()
    assert "0001" in raw_users and "1" not in raw_users
    users = pl.read_parquet(tmp_path / "data" / "users.parquet")
    profiled = set(profile["user_id"].str.replace("u", "0")) & set(df["user_id"])
    assert (users["age"] != 0).sum() == len(profiled) > 0  # "0001" joined "0001", not 1

    from dinctl.serving.runtime import vocab_of_dataset

    vocab = vocab_of_dataset(ds, 20)
    q = vocab.encode([first, twin], user="0001", user_fields={})
    assert q.unknown_items == [] and q.cand_item[0] != q.cand_item[1]


# ------------------------------------------------------------------ 7: non-finite statistics


@pytest.mark.parametrize(("row", "value"), [(6, "1e200"), (1200, "1e308"), (3, "-1e39")])
def test_numeric_values_beyond_float32_name_column_and_row(
    tmp_path: Path, row: int, value: str
) -> None:
    df = events().with_columns(
        pl.when(pl.int_range(pl.len()) == row - 1).then(pl.lit(value))
        .otherwise(pl.col("price")).alias("price")
    )  # fmt: skip
    df.write_csv(tmp_path / "log.csv")
    res = preprocess(tmp_path / "log.csv", tmp_path / "data", "--numeric-cols", "price")
    one_error(res, "numeric column 'price'", f"in data row {row}", "expected a finite number")
    assert not (tmp_path / "data").exists()


def test_standardised_values_beyond_float32_are_an_error() -> None:
    """A value float32 holds can still standardise beyond it (a tiny training std)."""
    from dinctl.data.fields import _standardise

    train = pl.DataFrame({"price": [0.0, 1e-30, 0.0, 1e-30]})
    test = pl.DataFrame({"price": [1.0, 3e38]})
    with pytest.raises(DinctlError, match=r"'price': the test sample in row 2 standardises"):
        _standardise({"train": train, "test": test}, ("price",))
    splits, stats = _standardise({"train": train, "test": test.head(1)}, ("price",))
    assert np.isfinite(splits["test"]["price"].cast(pl.Float32).to_numpy()).all()


# ------------------------------------------------------------------ 8: colliding field names


@pytest.mark.parametrize(
    ("option", "value", "pair"),
    [
        ("--context-cols", "a-b,a_b", "'a-b' and 'a_b' both become the field 'a_b'"),
        ("--behaviour-cols", "item_id,cate,brand,Brand", "'brand' and 'Brand' both become"),
        ("--context-cols", "slot,Slot,hour", "'slot' and 'Slot' both become the field 'slot'"),
    ],
)
def test_columns_never_collapse_into_one_field(
    tmp_path: Path, option: str, value: str, pair: str
) -> None:
    df = events().with_columns(pl.col("slot").alias("a-b"), pl.col("hour").alias("a_b"),
                               pl.col("brand").alias("Brand"), pl.col("slot").alias("Slot"))
    df.write_csv(tmp_path / "log.csv")
    res = preprocess(tmp_path / "log.csv", tmp_path / "data", option, value)
    one_error(res, pair)
    assert not (tmp_path / "data").exists()


# ------------------------------------------------------------------ 11: tracebacks


@pytest.mark.parametrize("dtype", [pl.Int32, pl.UInt32])
def test_narrow_integer_times_read(tmp_path: Path, dtype: pl.DataType) -> None:
    df = pl.read_csv(LOGS / "events.csv").with_columns(pl.col("ts").cast(dtype))
    df.write_parquet(tmp_path / "log.parquet")
    res = preprocess(tmp_path / "log.parquet", tmp_path / "data")
    assert res.exit_code == 0, res.output
    ts = pl.read_parquet(tmp_path / "data" / "sequences.parquet")["ts"].explode()
    assert ts.min() == df["ts"].cast(pl.Int64).min()


def test_a_long_id_late_in_the_log_stays_text(tmp_path: Path) -> None:
    df = events().with_columns(pl.col("user_id").str.replace("u", ""))
    big = pl.concat([df.with_columns(pl.col("user_id") + f"{k}") for k in range(9)])  # 10,926 rows
    long_id = "12345678901234567890123"
    big = big.with_columns(pl.when(pl.int_range(pl.len()) == big.height - 1).then(pl.lit(long_id))
                           .otherwise(pl.col("user_id")).alias("user_id"))  # fmt: skip
    big.write_csv(tmp_path / "log.csv")
    res = preprocess(tmp_path / "log.csv", tmp_path / "data")
    assert res.exit_code == 0, res.output
    assert long_id in pl.read_parquet(tmp_path / "data" / "sequences.parquet")["raw_user"]


def _taobao_ad(tmp_path: Path) -> Path:
    raw = tmp_path / "raw"
    shutil.copytree(TAOBAO_AD, raw)
    return raw


def _rewrite(path: Path, edit: object) -> None:
    lines = path.read_text().splitlines()
    path.write_text("\n".join(edit(lines)) + "\n")  # type: ignore[operator]


def _swap_adgroup_pid(lines: list[str]) -> list[str]:
    rows = [ln.split(",") for ln in lines]
    return [lines[0]] + [",".join([r[0], r[1], r[3], r[2], *r[4:]]) for r in rows[1:]]


def _long_user(lines: list[str]) -> list[str]:
    return [*lines[:2], "12345678901234567890123," + lines[2].split(",", 1)[1], *lines[3:]]


@pytest.mark.parametrize(
    ("file", "edit", "message"),
    [
        ("raw_sample.csv", _swap_adgroup_pid, "raw_sample.csv:2: column 'adgroup' holds "
         "'430548_1007', expected an integer"),
        ("raw_sample.csv", _long_user, "raw_sample.csv:3: column 'user' holds "
         "'12345678901234567890123', expected an integer"),
        ("raw_sample.csv", lambda lines: lines[:1], "raw_sample.csv has a header but no rows"),
        ("ad_feature.csv", lambda lines: lines[:1], "ad_feature.csv has a header but no rows"),
    ],
)  # fmt: skip
def test_taobao_ad_faults_are_one_line_naming_the_file(
    tmp_path: Path, file: str, edit: object, message: str
) -> None:
    raw = _taobao_ad(tmp_path)
    _rewrite(raw / file, edit)
    res = cli("preprocess", "taobao-ad", "--raw", str(raw), "--out", str(tmp_path / "data"),
              )  # fmt: skip
    one_error(res, message)


def test_header_only_profile_blames_the_profile(tmp_path: Path) -> None:
    (tmp_path / "users.csv").write_text((LOGS / "users.csv").read_text().splitlines()[0] + "\n")
    res = preprocess(LOGS / "events.csv", tmp_path / "data", "--user-features",
                     str(tmp_path / "users.csv"), "--user-feature-cols", "age")  # fmt: skip
    one_error(res, "user feature file", "users.csv has no rows")


# ------------------------------------------------------------------ 14: a full disk


def test_full_disk_during_overwrite_keeps_the_old_dataset(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", "3m") as disk:
        out = disk / "data"
        assert preprocess(LOGS / "events.csv", out).exit_code == 0
        before = {p.name: p.read_bytes() for p in out.iterdir()}
        for leave in (0, 10_000, 20_000, 30_000):  # full at the lock, a Parquet file, meta.json
            fill_disk(disk, leave=leave)
            res = preprocess(LOGS / "events.csv", out, "--overwrite", "--seed", "7")
            one_error(res, "no space left on the device")
            assert {p.name: p.read_bytes() for p in out.iterdir()} == before
            load_dataset(out)
            assert sorted(p.name for p in disk.iterdir()) == ["data", "filler"]
            (disk / "filler").unlink()
