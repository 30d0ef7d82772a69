"""Taobao UserBehavior and Alimama display-ad: readers, the strictly-before join, builders, CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from dinctl.cli.main import app
from dinctl.data.datasets import taobao, tianchi
from dinctl.data.store import load_dataset
from dinctl.errors import DinctlError

SAMPLES = Path(__file__).resolve().parents[1] / "dinctl" / "sample_data"
B = 1_494_000_000  # day 1 of the impressions


def test_history_lengths_hand_worked() -> None:
    # user 1 behaves at 10, 20, 20, 30; user 2 at 5; user 3 never
    beh_user = np.array([1, 1, 1, 1, 2])
    beh_ts = np.array([10, 20, 20, 30, 5])
    imp_user = np.array([1, 1, 1, 1, 2, 2, 3])
    imp_ts = np.array([20, 21, 10, 31, 5, 6, 100])
    got = taobao.history_lengths(beh_user, beh_ts, imp_user, imp_ts)
    # at 20 only the behaviour at 10 is strictly earlier; at 10 none; at 5 (user 2) none
    assert got.tolist() == [1, 3, 0, 4, 0, 1, 0]


def test_keep_windows_keeps_each_last_max_len_and_remaps_lengths() -> None:
    # one user, 6 behaviours (rows 0..5); impressions with histories 2 and 6, max_len 2
    keep, new_hist = taobao.keep_windows(np.array([0, 0]), np.array([2, 6]), 2, 6)
    assert keep.tolist() == [True, True, False, False, True, True]
    assert new_hist.tolist() == [2, 4]  # the last 2 of the first 4 kept rows = rows 4, 5


def _ad_folder(root: Path, behaviours: list[str], samples: list[str]) -> Path:
    root.mkdir()
    (root / "raw_sample.csv").write_text(
        "user,time_stamp,adgroup_id,pid,nonclk,clk\n" + "".join(s + "\n" for s in samples)
    )
    (root / "ad_feature.csv").write_text(
        "adgroup_id,cate_id,campaign_id,customer,brand,price\n7,100,1,1,500,9.0\n8,200,2,2,NULL,1.5\n"
    )
    (root / "user_profile.csv").write_text(
        "userid,cms_segid,cms_group_id,final_gender_code,age_level,pvalue_level,shopping_level,"
        "occupation,new_user_class_level \n1,0,1,2,3,,3,0,\n"
    )
    (root / "behavior_log.csv").write_text(
        "user,time_stamp,btag,cate,brand\n" + "".join(b + "\n" for b in behaviours)
    )
    return root


def test_ad_history_holds_only_behaviours_strictly_before_the_impression(tmp_path: Path) -> None:
    beh = [f"1,{B + 100},pv,100,500", f"1,{B + 50},cart,200,NULL", f"1,{B + 200},pv,100,500",
           f"1,{B + 7 * 86_400 + 10},buy,200,NULL"]  # fmt: skip
    samples = [f"1,{B + 100},7,430548_1007,1,0",  # the behaviour AT 100 is not before it
               f"1,{B + 150},8,430548_1007,0,1",
               f"1,{B + 7 * 86_400 + 10},7,430539_1007,0,1",  # day 8: test, 3 earlier
               f"1,{B + 300},8,430539_1007,1,0"]  # fmt: skip
    raw = _ad_folder(tmp_path / "raw", beh, samples)
    out = tmp_path / "ds"
    taobao.preprocess_taobao_ad(raw, out, max_len=50, valid=False)
    ds = load_dataset(out)
    ts = np.asarray(pl.read_parquet(out / "sequences.parquet")["ts"][0])
    assert ts.tolist() == [B + 50, B + 100, B + 200]  # the day-8 behaviour follows every impression
    train, test = ds.split("train"), ds.split("test")
    assert train.hist_len.tolist() == [1, 2, 3]  # at 100: only 50; at 150: 50, 100; at 300: all
    assert test.hist_len.tolist() == [3]
    assert train.label.tolist() == [0, 1, 0] and test.label.tolist() == [1]
    items = ds.items_frame()
    raw_of = dict(zip(items["item"].to_list(), items["raw_item"].to_list(), strict=True))
    assert raw_of[int(train.item[0])] == "100:500" and raw_of[int(train.item[1])] == "200:0"
    hist0 = ds.seq_items[ds.seq_offsets[1] : ds.seq_offsets[1] + 2]
    assert [raw_of[int(i)] for i in hist0] == ["200:0", "100:500"]
    # the schema round trip: brand and btag per behaviour, profile per user, pid per sample
    assert ds.meta["schema"] == {
        "behaviour": ["item", "cate", "brand", "btag"],
        "user": list(taobao.AD_USER_FIELDS),
        "context": list(taobao.AD_CONTEXT_FIELDS),
        "numeric": [],
    }
    values = pl.read_parquet(out / "values.parquet")
    raw = {(f, i): r for f, i, r in values.iter_rows()}
    beh = ds.seq_fields
    assert [raw["btag", int(b)] for b in beh["btag"][:3]] == ["cart", "pv", "pv"]
    assert [raw["brand", int(b)] for b in beh["brand"][:3]] == ["NULL", "500", "500"]
    assert [raw["pid", int(p)] for p in test.fields["pid"]] == ["430539_1007"]
    assert raw["btag", int(test.fields["btag"][0])] == "ad"
    users = pl.read_parquet(out / "users.parquet")
    assert [raw["gender", g] for g in users["gender"]] == ["2"]
    assert users["pvalue_level"].to_list() == [0]  # empty in the profile: missing


def test_ad_max_len_keeps_only_each_window(tmp_path: Path) -> None:
    beh = [f"1,{B + t},pv,100,500" for t in (1, 2, 3, 4, 5, 6)]
    raw = _ad_folder(tmp_path / "raw", beh, [f"1,{B + 3},7,x,1,0", f"1,{B + 10},8,x,0,1"])
    taobao.preprocess_taobao_ad(raw, tmp_path / "ds", max_len=2, valid=False)
    ds = load_dataset(tmp_path / "ds")
    assert ds.split("train").hist_len.tolist() == [2, 4]  # rows t=1,2 and t=5,6 are kept
    assert int(ds.seq_offsets[-1]) == 4


def test_sample_data_builds_and_keeps_days_apart(tmp_path: Path) -> None:
    s = taobao.preprocess_taobao_ad(SAMPLES / "taobao-ad", tmp_path / "ad", max_len=20)
    assert s["samples"]["test"] > 0 and s["samples"]["valid"] > 0
    assert s["samples"]["train"] + s["samples"]["valid"] + s["samples"]["test"] == 2223
    same = taobao.preprocess_taobao_ad(SAMPLES / "taobao-ad", tmp_path / "ad2", max_len=20,
                                       shards=3)  # fmt: skip
    assert same["samples"] == s["samples"] and same["behaviours"] == s["behaviours"]
    a, b = load_dataset(tmp_path / "ad"), load_dataset(tmp_path / "ad2")
    assert np.array_equal(a.split("train").hist_len, b.split("train").hist_len)
    assert np.array_equal(a.seq_items, b.seq_items)
    assert np.array_equal(a.item_freq, b.item_freq) and int(a.item_freq.sum()) > 0


def test_one_spill_file_equals_the_spill_split_by_shard(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    assert taobao.PARTITIONED_SPILL  # this Polars has PartitionBy: the split spill is the default
    taobao.preprocess_taobao_ad(SAMPLES / "taobao-ad", tmp_path / "split", max_len=20, shards=4)
    monkeypatch.setattr(taobao, "PARTITIONED_SPILL", False)
    taobao.preprocess_taobao_ad(SAMPLES / "taobao-ad", tmp_path / "one", max_len=20, shards=4)
    a, b = load_dataset(tmp_path / "split"), load_dataset(tmp_path / "one")
    for split in ("train", "valid", "test"):
        assert np.array_equal(a.split(split).hist_len, b.split(split).hist_len)
    assert np.array_equal(a.seq_offsets, b.seq_offsets)
    assert np.array_equal(a.seq_items, b.seq_items)
    assert np.array_equal(a.item_freq, b.item_freq)


@pytest.mark.parametrize("row", ["x,1494000000,pv,1,2", "99999999,1494000000,click,1,2"])
def test_a_malformed_log_row_of_any_user_is_found_with_shards(tmp_path: Path, row: str) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(SAMPLES / "taobao-ad", raw)
    log = raw / "behavior_log.csv"
    lines = log.read_text().splitlines()
    lines.insert(7, row)  # line 8 of the file
    log.write_text("\n".join(lines) + "\n")
    with pytest.raises(DinctlError, match=r"behavior_log\.csv:8: column '(user|btag)'"):
        taobao.preprocess_taobao_ad(raw, tmp_path / "ds", max_len=20, shards=3)


def test_taobao_last_behaviour_protocol(tmp_path: Path) -> None:
    s = taobao.preprocess_taobao(SAMPLES / "taobao", tmp_path / "tb", max_len=10, seed=3)
    assert s["users"] == 300 and s["samples"] == {"train": 378, "valid": 42, "test": 180}
    ds = load_dataset(tmp_path / "tb")
    tr = ds.split("train")
    assert tr.label.tolist()[:2] == [1.0, 0.0] and int(tr.hist_len.max()) <= 10
    assert not np.any(tr.item[0::2] == tr.item[1::2])  # the negative is never the target


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "behavior_log.csv",
            "user,time_stamp,btag,cate,brand\n1,5,pv,3,4\n1,6,click,3,4\n",
            "behavior_log.csv:3: column 'btag' holds 'click', expected one of pv, cart, fav, buy",
        ),
        (
            "behavior_log.csv",
            "user,time_stamp,btag,cate,brand\n1,5,pv,3,x4\n",
            "behavior_log.csv:2: column 'brand' holds 'x4', expected an integer, NULL or nothing",
        ),
        (
            "behavior_log.csv",
            "user,time,btag,cate,brand\n",
            "behavior_log.csv:1: header is 'user,time,btag,cate,brand', expected "
            "'user,time_stamp,btag,cate,brand'",
        ),
        (
            "raw_sample.csv",
            "user,time_stamp,adgroup_id,pid,nonclk,clk\n1,2,3,p,1\n",
            "raw_sample.csv:2: 5 fields, expected 6",
        ),
        (
            "UserBehavior.csv",
            "1,2,3,pv,100\n1,2,3,pv,1e9\n",
            "UserBehavior.csv:2: column 'ts' holds '1e9', expected an integer",
        ),
    ],
)
def test_malformed_rows_name_file_and_line(tmp_path: Path, name: str, text: str,
                                           message: str) -> None:  # fmt: skip
    fmt = {f.name: f for f in (*tianchi.AD_FILES, tianchi.USER_BEHAVIOR)}[name]
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DinctlError) as err:
        tianchi.collect(tianchi.scan(path, fmt), path, fmt)
    assert str(err.value).startswith(f"{tmp_path}/{message}")


def test_missing_file_and_bad_click_are_one_line(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(SAMPLES / "taobao-ad", raw)
    (raw / "behavior_log.csv").unlink()
    with pytest.raises(DinctlError, match=r"behavior_log.csv does not exist \(behavior_log.csv\)"):
        taobao.preprocess_taobao_ad(raw, tmp_path / "ds")
    lines = (SAMPLES / "taobao-ad" / "behavior_log.csv").read_text().splitlines()
    lines[5] = lines[5].replace(",pv,", ",click,").replace(",cart,", ",click,")
    (raw / "behavior_log.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DinctlError, match=r"behavior_log.csv:6: column 'btag' holds 'click'"):
        taobao.preprocess_taobao_ad(raw, tmp_path / "ds")
    shutil.copy(SAMPLES / "taobao-ad" / "behavior_log.csv", raw)
    (raw / "raw_sample.csv").write_text("user,time_stamp,adgroup_id,pid,nonclk,clk\n1,2,3,p,1,1\n")
    with pytest.raises(DinctlError, match="clk=1, nonclk=1 in a row of user 1"):
        taobao.preprocess_taobao_ad(raw, tmp_path / "ds")


def test_cli_preprocess_train_evaluate_and_table5(tmp_path: Path) -> None:
    runner = CliRunner()
    data = tmp_path / "ad"
    r = runner.invoke(app, ["preprocess", "taobao-ad", "--raw", str(SAMPLES / "taobao-ad"),
                            "--out", str(data), "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["preprocess", "taobao", "--raw", str(SAMPLES / "taobao"),
                            "--out", str(tmp_path / "tb"), "--max-len", "20"])  # fmt: skip
    assert r.exit_code == 0, r.output
    exp = tmp_path / "t5"
    r = runner.invoke(app, ["experiment", "table5", "--data", str(data), "--seeds", "1",
                            "--epochs", "1", "--out", str(exp)])  # fmt: skip
    assert r.exit_code == 0, r.output
    table = json.loads((exp / "table5.json").read_text())
    labels = [row["label"] for row in table["rows"]]
    assert labels == [
        "LR",
        "BaseModel",
        "Wide&Deep",
        "PNN",
        "DeepFM",
        "DIN",
        "DIN with MBA Reg.",
        "DIN with Dice",
        "DIN with MBA Reg. and Dice",
    ]
    r = runner.invoke(app, ["experiment", "table5", "--data", str(data), "--seeds", "1",
                            "--epochs", "1", "--out", str(exp)])  # fmt: skip
    assert r.exit_code == 0, r.output  # resumed: every run is reused
    r = runner.invoke(app, ["preprocess", "taobao-ad", "--raw", str(tmp_path / "none"),
                            "--out", str(tmp_path / "x")])  # fmt: skip
    assert r.exit_code != 0 and "raw folder" in r.output


def test_ad_preprocess_reports_each_phase_and_shard(tmp_path: Path) -> None:
    import contextlib

    seen: list[str] = []

    def status(message: str) -> contextlib.AbstractContextManager[None]:
        seen.append(message)
        return contextlib.nullcontext()

    warned: list[str] = []
    taobao.preprocess_taobao_ad(SAMPLES / "taobao-ad", tmp_path / "ds", max_len=20, shards=3,
                                status=status, warn=warned.append)  # fmt: skip
    assert seen[0] == "reading raw_sample.csv and ad_feature.csv"
    assert "reading behavior_log.csv into 3 user shard(s)" in seen
    assert [m for m in seen if "user shard " in m and "/" in m] == [
        f"joining histories: user shard {i}/3" for i in (1, 2, 3)
    ]
    assert seen[-1] == f"writing {tmp_path / 'ds'}"
    assert warned == []  # both classes in every split of the sample


def test_taobao_warnings_reach_the_callback_and_meta(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from dinctl.data import preprocess  # the write step every dataset shares

    monkeypatch.setattr(preprocess, "split_warnings", lambda summary, out: [f"{out}: one class"])
    warned: list[str] = []
    taobao.preprocess_taobao(SAMPLES / "taobao", tmp_path / "tb", max_len=10, warn=warned.append)
    assert warned == [f"{tmp_path / 'tb'}: one class"]
    assert json.loads((tmp_path / "tb" / "meta.json").read_text())["warnings"] == warned
