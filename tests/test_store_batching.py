"""The dataset store round-trips and the window gather cuts exactly the right histories."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dinctl.data.batching import SplitTensors, WindowGatherer, iter_batches
from dinctl.data.datasets.logs import LogColumns, preprocess_logs
from dinctl.data.store import FORMAT_VERSION, dataset_checksum, load_dataset, write_dataset
from dinctl.errors import DinctlError

# user 1: items 1,2,3,4 ; user 2: items 3,1 ; user 3: item 2
SEQS = {1: [1, 2, 3, 4], 2: [3, 1], 3: [2]}
ITEM_CATE = {1: 1, 2: 1, 3: 2, 4: 2}


def _write(out: Path, seqs: dict[int, list[int]] = SEQS, overwrite: bool = False) -> Path:
    n_items = max(max(s) for s in seqs.values())
    items = pl.DataFrame(
        {
            "item": list(range(1, n_items + 1)),
            "raw_item": [f"i{j}" for j in range(1, n_items + 1)],
            "cate": [ITEM_CATE.get(j, 1) for j in range(1, n_items + 1)],
            "cate_name": [f"c{ITEM_CATE.get(j, 1)}" for j in range(1, n_items + 1)],
            "freq": [j for j in range(1, n_items + 1)],
        }
    )
    users = sorted(seqs)
    sequences = pl.DataFrame(
        {
            "user": users,
            "raw_user": [f"u{u}" for u in users],
            "items": [seqs[u] for u in users],
            "cates": [[ITEM_CATE.get(j, 1) for j in seqs[u]] for u in users],
            "ts": [list(range(len(seqs[u]))) for u in users],
        }
    )
    rows = [
        (u, k, seqs[u][k], ITEM_CATE.get(seqs[u][k], 1), 1)
        for u in users
        for k in range(len(seqs[u]))
    ]
    train = pl.DataFrame(rows, schema=["user", "hist_len", "item", "cate", "label"], orient="row")
    meta = {
        "dataset": "toy",
        "protocol": "toy",
        "seed": 0,
        "counts": {"users": len(users), "items": n_items},
        "vocab": {"user": max(users) + 1, "item": n_items + 1, "cate": 3},
    }
    return write_dataset(
        out,
        meta=meta,
        items=items,
        sequences=sequences,
        splits={"train": train},
        overwrite=overwrite,
    )


def test_round_trip_csr(tmp_path: Path) -> None:
    ds = load_dataset(_write(tmp_path / "d"))
    assert ds.meta["format_version"] == FORMAT_VERSION
    assert ds.meta["checksum"] == dataset_checksum(tmp_path / "d")  # what a reader recomputes
    assert ds.seq_offsets.tolist() == [0, 0, 4, 6, 7]
    assert ds.seq_items.tolist() == [1, 2, 3, 4, 3, 1, 2]
    assert ds.item_cate.tolist() == [0, 1, 1, 2, 2]
    assert ds.cate_freq().tolist() == [0, 1 + 2, 3 + 4]
    assert len(ds.split("train")) == 7
    assert not ds.has_split("valid")
    assert not list(tmp_path.glob(".d.*")), "temporary folder left behind"


def test_splits_with_extra_fields_keep_their_names(tmp_path: Path) -> None:
    """Reading a split's behaviour, context and numeric columns leaves its name alone."""
    logs = Path(__file__).resolve().parents[1] / "sample_data" / "logs"
    columns = LogColumns(user="user_id", item="item_id", category="cate", time="ts",
                         label="click", behaviour=("brand",), context=("slot",),
                         numeric=("price",), user_features=logs / "users.csv",
                         user_feature_cols=("age",))  # fmt: skip
    preprocess_logs(logs / "events.csv", tmp_path / "d", columns=columns)
    ds = load_dataset(tmp_path / "d")
    assert {"users.parquet", "values.parquet"} <= {p.name for p in (tmp_path / "d").iterdir()}
    assert ds.meta["checksum"] == dataset_checksum(tmp_path / "d")
    for name in ("train", "valid", "test"):
        split = ds.split(name)
        assert sorted(split.fields) == ["brand", "price", "slot"]
        assert split.name == name
        assert SplitTensors(split).name == name


def test_missing_split_and_existing_output(tmp_path: Path) -> None:
    ds = load_dataset(_write(tmp_path / "d"))
    with pytest.raises(DinctlError, match=r"split 'valid' is missing"):
        ds.split("valid")
    with pytest.raises(DinctlError, match=r"already exists"):
        _write(tmp_path / "d")
    _write(tmp_path / "d", overwrite=True)


def test_wrong_format_version(tmp_path: Path) -> None:
    out = _write(tmp_path / "d")
    meta = json.loads((out / "meta.json").read_text())
    meta["format_version"] = 999
    (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DinctlError, match=r"has format version 999, expected 1 or 2"):
        load_dataset(out)


def test_gather_hand_computed(tmp_path: Path) -> None:
    ds = load_dataset(_write(tmp_path / "d"))
    g = WindowGatherer(ds, max_len=2)
    t = torch.tensor
    b = g.gather(
        t([1, 1, 2, 3]), t([4, 1, 1, 0]), t([9, 2, 1, 2]), t([1, 1, 1, 1]), t([1, 0, 1, 0])
    )
    # user 1 with hist_len 4 keeps the 2 most recent (3, 4); padding only to the longest (T=2)
    assert b.hist_item.tolist() == [[3, 4], [1, 0], [3, 0], [0, 0]]
    assert b.hist_cate.tolist() == [[2, 2], [1, 0], [2, 0], [0, 0]]
    assert b.hist_mask.tolist() == [[True, True], [True, False], [True, False], [False, False]]


@settings(max_examples=60, deadline=None)
@given(
    seqs=st.lists(st.lists(st.integers(1, 6), min_size=1, max_size=12), min_size=1, max_size=6),
    max_len=st.integers(1, 8),
    data=st.data(),
)
def test_gather_matches_python_slice(tmp_path_factory, seqs, max_len, data) -> None:
    out = tmp_path_factory.mktemp("d") / "ds"
    mapping = {u + 1: s for u, s in enumerate(seqs)}
    ds = load_dataset(_write(out, mapping))
    rows = data.draw(
        st.lists(
            st.sampled_from([(u, k) for u, s in mapping.items() for k in range(len(s) + 1)]),
            min_size=1,
        )
    )
    users = torch.tensor([r[0] for r in rows])
    lens = torch.tensor([r[1] for r in rows])
    ones = torch.ones(len(rows), dtype=torch.long)
    b = WindowGatherer(ds, max_len=max_len).gather(users, lens, ones, ones, ones)
    for i, (u, k) in enumerate(rows):
        expect = mapping[u][max(0, k - max_len) : k]
        got = b.hist_item[i][b.hist_mask[i]].tolist()
        assert got == expect
        assert b.hist_item[i][~b.hist_mask[i]].eq(0).all()


def test_iter_batches_covers_rows_in_order(tmp_path: Path) -> None:
    ds = load_dataset(_write(tmp_path / "d"))
    rows = SplitTensors(ds.split("train"))
    g = WindowGatherer(ds, max_len=10)
    order = torch.tensor([6, 5, 4, 3, 2, 1, 0])
    items = torch.cat([b.item for b in iter_batches(rows, g, 3, order=order)])
    assert items.tolist() == rows.item[order].tolist()
    skipped = torch.cat([b.item for b in iter_batches(rows, g, 3, order=order, start_batch=1)])
    assert skipped.tolist() == rows.item[order][3:].tolist()


@settings(max_examples=40, deadline=None)
@given(seqs=st.lists(st.lists(st.integers(1, 6), min_size=1, max_size=10), min_size=1, max_size=6))
def test_cate_sample_freq_matches_brute_force(tmp_path_factory, seqs) -> None:
    """n_c = training samples whose candidate or first hist_len behaviours hold category c."""
    mapping = {u + 1: s for u, s in enumerate(seqs)}
    ds = load_dataset(_write(tmp_path_factory.mktemp("d") / "ds", mapping))
    tr = ds.split("train")
    expect = np.zeros(ds.n_cates + 1, dtype=np.int64)
    for u, h, c in zip(tr.user, tr.hist_len, tr.cate, strict=True):
        seen = {ITEM_CATE.get(j, 1) for j in mapping[int(u)][: int(h)]} | {int(c)}
        for cate in seen:
            expect[cate] += 1
    assert ds.cate_sample_freq().tolist() == expect.tolist()


# ------------------------------------------------ a rank's share (`load_share`, under torchrun)


@pytest.fixture
def grouped_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The planted-signal dataset written in row groups of 64 rows (a share spans several)."""
    from conftest import make_tiny_dataset

    from dinctl.data import store

    monkeypatch.setattr(store, "PARQUET_OPTIONS", {**store.PARQUET_OPTIONS, "row_group_size": 64})
    return make_tiny_dataset(tmp_path / "grouped")


@pytest.mark.parametrize("world", [2, 3])
def test_rank_shares_hold_the_whole_split_and_its_histories(
    grouped_dataset: Path, world: int
) -> None:
    import pyarrow.parquet as pq

    from dinctl.data.store import load_share

    assert pq.ParquetFile(grouped_dataset / "train.parquet").metadata.num_row_groups > world
    whole = load_dataset(grouped_dataset)
    shares = [load_share(grouped_dataset, rank, world) for rank in range(world)]
    full_gather = WindowGatherer(whole, max_len=7)
    cate_freq = np.zeros_like(whole.field_sample_freq("cate"))
    for name in ("train", "valid"):
        want = whole.split(name)
        parts = [s.split(name) for s in shares]
        assert [p.offset for p in parts] == [len(want) * r // world for r in range(world)]
        assert all(p.n_total == len(want) for p in parts)
        for col in ("user", "hist_len", "item", "cate", "label"):
            got = np.concatenate([getattr(p, col) for p in parts])
            np.testing.assert_array_equal(got, getattr(want, col), err_msg=col)
        for share, part in zip(shares, parts, strict=True):  # each share's histories are whole
            rows = SplitTensors(part)
            index = torch.arange(part.offset, part.offset + len(part))
            got_batch = WindowGatherer(share, max_len=7).gather(*rows.rows(slice(None)))
            want_batch = full_gather.gather(*SplitTensors(want).rows(index))
            assert torch.equal(got_batch.hist_item, want_batch.hist_item)
            assert torch.equal(got_batch.hist_cate, want_batch.hist_cate)
    for share in shares:
        np.testing.assert_array_equal(share.item_freq, whole.item_freq)  # n_j of every item
        cate_freq += share.field_sample_freq("cate")  # n_c of its rows: they add up
        assert len(share.seq_items) < len(whole.seq_items)  # its users' behaviours only
        with pytest.raises(DinctlError, match="split 'test' .* was not read: this is rank"):
            share.split("test")
    np.testing.assert_array_equal(cate_freq, whole.field_sample_freq("cate"))


def test_a_bad_value_in_a_share_names_its_row_of_the_whole_file(tmp_path: Path) -> None:
    from conftest import make_tiny_dataset

    from dinctl.data.store import load_share

    good = make_tiny_dataset(tmp_path / "good")
    frames = {n: pl.read_parquet(good / f"{n}.parquet") for n in ("items", "sequences", "train")}
    train = frames.pop("train")
    bad_row = len(train) - 3  # in the second half: rank 1 of 2 reads it
    hist_len = train["hist_len"].to_numpy().copy()
    hist_len[bad_row] = 999
    meta = json.loads((good / "meta.json").read_text())
    data = write_dataset(
        tmp_path / "bad",
        meta={k: meta[k] for k in ("dataset", "protocol", "seed", "counts", "vocab")},
        items=frames["items"],
        sequences=frames["sequences"],
        splits={"train": train.with_columns(pl.Series("hist_len", hist_len))},
    )
    load_share(data, 0, 2)  # rank 0's share holds no bad row
    user = train["user"][bad_row]
    with pytest.raises(DinctlError) as err:
        load_share(data, 1, 2)
    assert err.value.message.startswith(
        f"{data / 'train.parquet'}: column 'hist_len' holds 999 in row {bad_row + 1}, past the "
    )
    assert err.value.message.endswith(f"behaviours of user {user}")
