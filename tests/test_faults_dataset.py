"""Faults of dataset folders (issue 13: items 1, 2, 5, 8, 9, 11, 16, 18).

Tampered files and values are one line at load, before anything trains; writers that fail
(disk full, permission denied, Ctrl-C during the swap) leave the previous dataset intact and
no temporary folders; a second writer is refused naming the holder.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from conftest import make_tiny_dataset
from faults import deny_writes, lock_held, no_space
from typer.testing import CliRunner

from dinctl.cli.main import app
from dinctl.data import store
from dinctl.data.datasets.logs import LogColumns, preprocess_logs
from dinctl.data.datasets.movielens import preprocess_movielens
from dinctl.data.store import check_trainable, load_dataset
from dinctl.errors import DinctlError
from dinctl.fsutil import atomic_dir

runner = CliRunner()
SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
HINT = "the dataset was changed after preprocessing: re-run `dinctl preprocess` with --overwrite"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_tiny_dataset(tmp_path / "data", n_users=30, n_cates=4, items_per_cate=5)


def _rewrite(path: Path, change: Any) -> None:
    df = pl.read_parquet(path)
    change(df).write_parquet(path)  # type: ignore[operator]


def _as_v1(folder: Path) -> None:
    """Make `folder` an older dataset: no per-file checksums."""
    meta = json.loads((folder / "meta.json").read_text())
    del meta["files"]
    (folder / "meta.json").write_text(json.dumps(meta))


def _load_all(folder: Path) -> None:
    ds = load_dataset(folder)
    for split in ("train", "valid", "test"):
        ds.split(split)


def _error(folder: Path) -> DinctlError:
    with pytest.raises(DinctlError) as err:
        _load_all(folder)
    return err.value


# ------------------------------------------------------------------ 5. checksums per file


def test_meta_records_size_and_hash_of_every_file(data: Path) -> None:
    meta = json.loads((data / "meta.json").read_text())
    assert meta["format_version"] == 2
    assert sorted(meta["files"]) == [
        "items.parquet", "sequences.parquet", "test.parquet", "train.parquet", "valid.parquet"
    ]  # fmt: skip
    for name, entry in meta["files"].items():
        body = (data / name).read_bytes()
        assert entry == {"bytes": len(body), "blake2b": store.file_digest(body)}
    _load_all(data)


def test_flipped_labels_in_test_are_refused(data: Path) -> None:
    path = data / "test.parquet"
    _rewrite(path, lambda df: df.with_columns((1 - pl.col("label")).cast(pl.Int8)))
    err = _error(data)
    assert err.message.startswith(f"{path} was modified after preprocessing (")
    assert err.hint == HINT


@pytest.mark.parametrize("name", ["items.parquet", "sequences.parquet", "train.parquet"])
def test_any_edited_file_is_refused(data: Path, name: str) -> None:
    body = bytearray((data / name).read_bytes())
    body[len(body) // 2] ^= 1
    (data / name).write_bytes(bytes(body))
    err = _error(data)
    assert err.message == (
        f"{data / name} was modified after preprocessing (its content hash differs from "
        "meta.json's)"
    )


def test_truncated_file_names_the_sizes(data: Path) -> None:
    path = data / "valid.parquet"
    size = path.stat().st_size
    path.write_bytes(path.read_bytes()[:100])
    assert _error(data).message == (
        f"{path} was modified after preprocessing (100 bytes, meta.json records {size})"
    )


def test_old_format_without_checksums_still_loads(data: Path) -> None:
    _as_v1(data)
    _load_all(data)


def test_a_file_matching_the_folder_checksum_is_accepted(data: Path) -> None:
    """The folder's sha256 `checksum` is authoritative: a file re-sealed into it loads."""
    test = pl.read_parquet(data / "test.parquet").head(10)
    test.write_parquet(data / "test.parquet")
    with pytest.raises(DinctlError):
        _load_all(data)
    meta = json.loads((data / "meta.json").read_text())
    meta["checksum"] = store.dataset_checksum(data)
    (data / "meta.json").write_text(json.dumps(meta))
    assert len(load_dataset(data).split("test")) == 10


# ------------------------------------------------------------------ 11. value ranges


@pytest.mark.parametrize(
    ("name", "change", "expected"),
    [
        ("train.parquet", lambda df: df.with_columns(pl.lit(2, pl.Int8).alias("label")),
         "column 'label' holds 2 in row 1, expected 0 or 1"),
        ("train.parquet", lambda df: df.with_columns(pl.lit(999, pl.Int32).alias("item")),
         "column 'item' holds 999 in row 1, expected an item id in 1..20"),
        ("test.parquet", lambda df: df.with_columns(pl.lit(-3, pl.Int32).alias("user")),
         "column 'user' holds -3 in row 1, expected a user id in 1..30"),
        ("valid.parquet", lambda df: df.with_columns(pl.lit(-1, pl.Int32).alias("hist_len")),
         "column 'hist_len' holds -1 in row 1, expected ≥ 0"),
        ("items.parquet", lambda df: df.with_columns(pl.lit(0, pl.Int32).alias("cate")),
         "column 'cate' holds 0 in row 1, expected a category id in 1..4"),
        ("sequences.parquet",
         lambda df: df.with_columns(pl.col("items").list.eval(pl.element() * 0 + 999)),
         "column 'items' holds 999 in row 1, expected item ids in 1..20"),
    ],
)  # fmt: skip
def test_values_out_of_range_are_one_line(
    data: Path, name: str, change: object, expected: str
) -> None:
    _as_v1(data)  # no checksums: the value checks alone must catch it
    _rewrite(data / name, change)
    err = _error(data)
    assert err.message == f"{data / name}: {expected}"
    assert err.hint == HINT


def test_hist_len_past_the_users_sequence(data: Path) -> None:
    _as_v1(data)
    _rewrite(
        data / "test.parquet", lambda df: df.with_columns(pl.lit(500, pl.Int32).alias("hist_len"))
    )
    err = _error(data)
    assert err.message.startswith(
        f"{data / 'test.parquet'}: column 'hist_len' holds 500 in row 1, past the "
    )


def test_duplicate_users(data: Path) -> None:
    _as_v1(data)
    _rewrite(data / "sequences.parquet", lambda df: pl.concat([df, df.head(1)]))
    assert _error(data).message == (
        f"{data / 'sequences.parquet'} has user 1 on 2 rows, expected one row per user"
    )


@pytest.mark.parametrize("vocab", ['"12"', "12.5", "true", "null", "-1", "[1]"])
def test_non_numeric_vocab(data: Path, vocab: str) -> None:
    meta_path = data / "meta.json"
    text = meta_path.read_text()
    meta = json.loads(text)
    meta["vocab"]["item"] = json.loads(vocab)
    meta_path.write_text(json.dumps(meta))
    err = _error(data)
    assert (
        err.message
        == f"{meta_path}: vocab.item is {json.loads(vocab)!r}, expected a positive integer"
    )


def test_a_file_that_is_not_parquet(data: Path) -> None:
    _as_v1(data)
    (data / "train.parquet").write_text("user,hist_len,item,cate,label\n1,1,1,1,1\n")
    assert _error(data).message == f"{data / 'train.parquet'} is not a readable Parquet file"


def test_float_ids_are_refused(data: Path) -> None:
    _as_v1(data)
    _rewrite(data / "train.parquet", lambda df: df.with_columns(pl.col("item").cast(pl.Float64)))
    assert _error(data).message == (
        f"{data / 'train.parquet'}: column 'item' has type Float64, expected integers"
    )


def test_meta_json_not_utf8_and_out_of_range_numbers(data: Path) -> None:
    meta_path = data / "meta.json"
    meta_path.write_bytes(b'{"format_version": 1, "x": "\xff"}')
    assert _error(data).message == f"{meta_path} is not UTF-8 text (byte 28: b'\\xff')"
    meta_path.write_text('{"format_version": 1, "vocab": {"user": 1e999}}')
    with pytest.raises(DinctlError):
        _load_all(data)


# ------------------------------------------------------------------ 16. empty / one-class train


def test_check_trainable_refuses_empty_and_one_class(data: Path) -> None:
    ds = load_dataset(data)
    check_trainable(ds)
    _as_v1(data)
    _rewrite(data / "train.parquet", lambda df: df.filter(pl.col("label") == 1))
    ds = load_dataset(data)
    with pytest.raises(DinctlError) as err:
        check_trainable(ds)
    n = len(ds.split("train"))
    assert err.value.message == (
        f"split 'train' of {data} has only positive labels ({n} rows of {data / 'train.parquet'}): "
        "a classifier cannot learn from one class"
    )
    _rewrite(data / "train.parquet", lambda df: df.head(0))
    with pytest.raises(DinctlError) as err:
        check_trainable(load_dataset(data))
    assert err.value.message == (
        f"split 'train' of {data} is empty ({data / 'train.parquet'} has no rows)"
    )


def test_preprocess_warns_about_a_one_class_split(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    rows = [f"u{u},i{(u + k) % 7},c{k % 2},{k},1" for u in range(40) for k in range(4)]
    log.write_text("user,item,category,timestamp,label\n" + "\n".join(rows) + "\n")
    result = runner.invoke(
        app, ["preprocess", "logs", str(log), "--label-col", "label", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    assert (
        f"warning: split 'train' ({tmp_path / 'o/train.parquet'}) has only positive labels"
        in result.stderr
    )
    meta = json.loads((tmp_path / "o/meta.json").read_text())
    assert any("split 'train'" in w for w in meta["warnings"])


# ------------------------------------------------------------------ 1. --out vs inputs


def _ml_raw(tmp_path: Path) -> Path:
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in ("ratings.csv", "movies.csv"):
        shutil.copy(SAMPLE / "movielens" / name, raw / name)
    return raw


@pytest.mark.parametrize("where", ["same", "inside", "contains"])
def test_out_overlapping_the_raw_input_is_refused_before_anything(
    tmp_path: Path, where: str
) -> None:
    raw = _ml_raw(tmp_path)
    out = {"same": raw, "inside": raw / "data", "contains": tmp_path}[where]
    before = {p.name: p.read_bytes() for p in raw.iterdir()}
    result = runner.invoke(
        app, ["preprocess", "movielens", "--raw", str(raw), "--out", str(out), "--overwrite"]
    )
    assert result.exit_code == 1
    relation = {"same": "is", "inside": "lies inside", "contains": "contains"}[where]
    assert result.stderr.splitlines()[0] == (
        f"error: --out {out} {relation} the raw input {raw}: refusing to write over an input"
    )
    assert {p.name: p.read_bytes() for p in raw.iterdir()} == before


def test_out_equal_to_the_log_file_is_refused(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text("user,item,category,timestamp\nu,i,c,1\n")
    with pytest.raises(DinctlError) as err:
        preprocess_logs(log, log, columns=LogColumns(), overwrite=True)
    assert err.value.message.startswith(f"--out {log} is the log file {log}")
    assert log.read_text().startswith("user,item")


# ------------------------------------------------------------------ 2. the dataset lock


def test_second_writer_is_refused_naming_the_holder(tmp_path: Path) -> None:
    raw, out = _ml_raw(tmp_path), tmp_path / "data"
    with lock_held(out, "dataset") as holder:
        result = runner.invoke(
            app, ["preprocess", "movielens", "--raw", str(raw), "--out", str(out)]
        )
        assert result.exit_code == 1
        line = result.stderr.splitlines()[0]
        assert line.startswith(f"error: dataset {out} is in use by pid {holder.pid} on ")
        assert not out.exists()
    result = runner.invoke(app, ["preprocess", "movielens", "--raw", str(raw), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / ".data.lock").exists()


# ------------------------------------------------------------------ 8, 9. failed writes


def _listing(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir())


def test_disk_full_keeps_the_previous_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw, out = _ml_raw(tmp_path), tmp_path / "data"
    preprocess_movielens(raw, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    failed = no_space(monkeypatch)
    with pytest.raises(DinctlError) as err:
        preprocess_movielens(raw, out, overwrite=True, seed=5)
    assert failed
    names = {Path(f).name for f in failed}
    assert err.value.message in {
        f"cannot write {out / name}: no space left on the device" for name in names
    }
    assert err.value.hint == "free some space and try again"
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert _listing(tmp_path) == ["data", "raw"]
    load_dataset(out)


def test_disk_full_on_meta_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw, out = _ml_raw(tmp_path), tmp_path / "data"
    no_space(monkeypatch, parquet=False)
    with pytest.raises(DinctlError) as err:
        preprocess_movielens(raw, out)
    assert err.value.message == f"cannot write {out / 'meta.json'}: no space left on the device"
    assert _listing(tmp_path) == ["raw"]


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS])
def test_unwritable_out_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    raw, parent = _ml_raw(tmp_path), tmp_path / "ro"
    parent.mkdir()
    deny_writes(monkeypatch, parent, code=code)
    result = runner.invoke(
        app, ["preprocess", "movielens", "--raw", str(raw), "--out", str(parent / "data")]
    )
    assert result.exit_code == 1
    reason = "permission denied" if code == errno.EACCES else "read-only file system"
    assert result.stderr.splitlines()[0].startswith("error: cannot ")
    assert result.stderr.splitlines()[0].endswith(f": {reason}")
    assert list(parent.iterdir()) == []


def test_interrupted_swap_keeps_the_previous_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "data"
    out.mkdir()
    (out / "old.txt").write_text("previous")
    real = Path.rename

    def ctrl_c(self: Path, target: object) -> object:
        if self.name.startswith(".data.tmp-"):
            raise KeyboardInterrupt
        return real(self, target)

    monkeypatch.setattr(Path, "rename", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(out, overwrite=True) as tmp:
            (tmp / "new.txt").write_text("new")
    assert _listing(tmp_path) == ["data"]
    assert _listing(out) == ["old.txt"]


def test_leftovers_of_a_killed_writer_are_cleaned_and_the_old_folder_restored(
    tmp_path: Path,
) -> None:
    dead = _dead_pid()
    old = tmp_path / f".data.old-{dead}"
    old.mkdir()
    (old / "old.txt").write_text("previous")
    (tmp_path / f".data.tmp-{dead}").mkdir()
    with atomic_dir(tmp_path / "other") as tmp:
        (tmp / "x").write_text("x")
    # the sweep is per output: "data" is swept when "data" is written next
    with atomic_dir(tmp_path / "data", overwrite=True) as tmp:
        assert (tmp_path / "data/old.txt").read_text() == "previous"  # restored first
        (tmp / "new.txt").write_text("new")
    assert _listing(tmp_path) == ["data", "other"]
    assert _listing(tmp_path / "data") == ["new.txt"]


def test_an_old_folder_that_cannot_be_moved_back_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dinctl import fsutil

    old = tmp_path / f".data.old-{_dead_pid()}"
    old.mkdir()
    (old / "old.txt").write_text("previous")

    def refuse(self: Path, target: Path) -> Path:
        raise OSError(13, "permission denied")

    monkeypatch.setattr(Path, "rename", refuse)
    fsutil._sweep(tmp_path / "data")
    assert (old / "old.txt").read_text() == "previous"  # the only copy: never removed


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    try:
        os.kill(proc.pid, 0)
    except ProcessLookupError:
        return proc.pid
    pytest.skip("pid reused")
    raise AssertionError


def test_write_dataset_itself_takes_the_lock(tmp_path: Path) -> None:
    out = tmp_path / "data"
    with lock_held(out, "dataset") as holder:
        with pytest.raises(DinctlError) as err:
            make_tiny_dataset(out, n_users=30, n_cates=4, items_per_cate=5)
        assert f"dataset {out} is in use by pid {holder.pid}" in err.value.message
    assert not out.exists()
