"""The docs/protocols.md protocols on tiny hand-made inputs whose output is worked out by hand."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dinctl.data.builder import (
    ML_ALL_USERS,
    ML_TRAIN_USERS,
    build_user_split,
    build_windows,
    draw_negatives,
)
from dinctl.errors import DinctlError

pytestmark = pytest.mark.notorch  # torch-free: `make test-py` runs it on 3.10 and 3.13


def _frame(rows: list[tuple[str, str, str, int]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=["user", "item", "cate", "ts"], orient="row")


# u1 reviews i3 and i2 on the same day (ts 10) in that file order; u0 has three reviews.
HAND = _frame(
    [
        ("u1", "i3", "b", 10),
        ("u1", "i1", "b", 5),
        ("u0", "i6", "a", 1),
        ("u1", "i2", "b", 10),
        ("u0", "i7", "a", 2),
        ("u1", "i4", "b", 20),
        ("u1", "i5", "b", 30),
        ("u0", "i8", "a", 3),
    ]
)


def _pos(df: pl.DataFrame) -> list[tuple[int, int, int]]:
    return [(u, h, i) for u, h, i, y in df.select("user", "hist_len", "item", "label").rows() if y]


def test_ids_are_ranks_of_sorted_raw_ids() -> None:
    built, _ = build_windows(HAND, seed=0)
    assert built.items["raw_item"].to_list() == [f"i{k}" for k in range(1, 9)]
    assert built.items["item"].to_list() == list(range(1, 9))
    assert built.items["cate_name"].to_list() == ["b"] * 5 + ["a"] * 3
    assert built.items["cate"].to_list() == [2] * 5 + [1] * 3  # "a" < "b"
    assert built.sequences["raw_user"].to_list() == ["u0", "u1"]
    assert built.vocab == {"user": 3, "item": 9, "cate": 3}  # + padding id 0


def test_time_ties_keep_file_order() -> None:
    built, _ = build_windows(HAND, seed=0)
    seq = built.sequences.sort("user")
    # u1: i1 (5), then i3 and i2 both at 10 in file order, then i4, i5
    assert seq["items"].to_list() == [[6, 7, 8], [1, 3, 2, 4, 5]]
    assert seq["ts"].to_list() == [[1, 2, 3], [5, 10, 10, 20, 30]]
    assert seq["cates"].to_list() == [[1, 1, 1], [2, 2, 2, 2, 2]]


def test_window_boundaries_and_validation_split() -> None:
    built, _ = build_windows(HAND, seed=0)
    s = built.splits
    # u1 (n=5): k = 1..3 train targets b_2..b_4; the last of them (k=3) is validation; b_5 test.
    # u0 (n=3): k = 1 only, which is its validation target; b_3 test.
    assert _pos(s["train"]) == [(2, 1, 3), (2, 2, 2)]
    assert _pos(s["valid"]) == [(1, 1, 7), (2, 3, 4)]
    assert _pos(s["test"]) == [(1, 2, 8), (2, 4, 5)]
    for name in ("train", "valid", "test"):
        df = s[name]
        assert df["label"].to_list() == [1, 0] * (df.height // 2)  # pos then its negative
        assert df["hist_len"].to_list()[0::2] == df["hist_len"].to_list()[1::2]


def test_no_valid_keeps_validation_rows_in_train_with_the_same_negatives() -> None:
    with_valid, _ = build_windows(HAND, seed=5)
    without, _ = build_windows(HAND, seed=5, valid=False)
    assert set(without.splits) == {"train", "test"}
    assert _pos(without.splits["train"]) == [(1, 1, 7), (2, 1, 3), (2, 2, 2), (2, 3, 4)]
    merged = pl.concat([with_valid.splits["train"], with_valid.splits["valid"]])
    key = ["user", "hist_len", "label"]
    assert merged.sort(key).equals(without.splits["train"].sort(key))
    assert with_valid.splits["test"].equals(without.splits["test"])
    assert without.summary["samples"] == {"train": 8, "test": 4}


def test_negatives_are_never_the_users_own_items() -> None:
    built, _ = build_windows(HAND, seed=0)
    for df in built.splits.values():
        for u, item, y in df.select("user", "item", "label").rows():
            if not y:
                own = {6, 7, 8} if u == 1 else {1, 2, 3, 4, 5}
                assert item not in own


def test_redraw_finds_the_only_allowed_item() -> None:
    # user 1 owns items 1 and 2 of 3: every negative must be redrawn until it is 3
    owned = np.array([1 * 4 + 1, 1 * 4 + 2])
    neg = draw_negatives(np.ones(50, dtype=np.int64), owned, 3, np.random.default_rng(0))
    assert neg.tolist() == [3] * 50


def test_negatives_are_seeded_and_static() -> None:
    a, _ = build_windows(HAND, seed=7)
    b, _ = build_windows(HAND, seed=7)
    for name in a.splits:
        assert a.splits[name].equals(b.splits[name])
    rng = np.random.default_rng(1)
    big = _frame(
        [(f"u{u}", f"i{rng.integers(0, 300)}", "c", int(t)) for u in range(40) for t in range(8)]
    )
    x, _ = build_windows(big, seed=1)
    y, _ = build_windows(big, seed=2)
    assert not x.splits["train"]["item"].equals(y.splits["train"]["item"])


def test_user_owning_every_item_is_an_error() -> None:
    frame = _frame([("u", "a", "c", 1), ("u", "b", "c", 2), ("u", "x", "c", 3)])
    with pytest.raises(DinctlError, match="cannot draw negatives"):
        build_windows(frame, seed=0)


def test_training_frequency_by_hand() -> None:
    built, _ = build_windows(HAND, seed=0)
    freq = dict(zip(built.items["item"].to_list(), built.items["freq"].to_list(), strict=True))
    # train rows are u1's (h=1, pos i3 | neg) and (h=2, pos i2 | neg); u0 has none.
    assert freq[1] == 4  # i1 is in the history of all four rows
    assert freq[3] == 3  # i3: candidate of one row, history of the two h=2 rows
    assert freq[2] == 1  # i2: candidate of one row
    assert freq[4] == 0 and freq[5] == 0  # validation and test targets only
    assert freq[6] + freq[7] + freq[8] == 2  # the two negatives


def _brute_freq(built: object, n_items: int) -> list[int]:
    seq = {u: items for u, items in built.sequences.select("user", "items").rows()}  # type: ignore[attr-defined]
    out = [0] * (n_items + 1)
    for u, h, item in built.splits["train"].select("user", "hist_len", "item").rows():  # type: ignore[attr-defined]
        for j in set(seq[u][:h]) | {item}:
            out[j] += 1
    return out[1:]


def test_training_frequency_matches_brute_force_with_repeats() -> None:
    rng = np.random.default_rng(3)
    rows = [
        (f"u{u}", f"i{rng.integers(0, 12)}", f"c{rng.integers(0, 3)}", int(rng.integers(0, 5)))
        for u in range(15)
        for _ in range(int(rng.integers(1, 9)))
    ]
    frame = _frame(rows)
    # one category per item, as the readers guarantee
    frame = frame.with_columns(
        pl.col("item").str.slice(1).cast(pl.Int64).mod(3).cast(pl.Utf8).alias("cate")
    )
    for valid in (True, False):
        built, _ = build_windows(frame, seed=0, valid=valid)
        assert built.items["freq"].to_list() == _brute_freq(built, built.items.height)
    labelled = frame.with_columns((pl.col("ts") % 2).cast(pl.Int8).alias("label"))
    built, _ = build_user_split(labelled, seed=0)
    assert built.items["freq"].to_list() == _brute_freq(built, built.items.height)
    # each pair once, sorted by (user, item) like the MovieLens release: the no-sort path
    release = labelled.unique(["user", "item"], keep="first").sort("user", "item")
    built, _ = build_user_split(release, seed=0)
    assert built.items["freq"].to_list() == _brute_freq(built, built.items.height)


# ----------------------------------------------------------------------- MovieLens protocol


def _ml_frame(n_users: int) -> pl.DataFrame:
    rows = []
    for u in range(1, n_users + 1):
        for k in range(3):
            rows.append((u * 10, 100 + k, "g", 1000 + k, k % 2))
    return pl.DataFrame(rows, schema=["user", "item", "cate", "ts", "label"], orient="row")


def test_movielens_user_split_sizes_and_disjointness() -> None:
    built, _ = build_user_split(_ml_frame(20), seed=3)
    users = {k: set(v["user"].to_list()) for k, v in built.splits.items()}
    # 20 users: round(20·100000/138493) = 14 train users, round(14·0.1) = 1 of them validation
    assert len(users["train"]) == 13 and len(users["valid"]) == 1 and len(users["test"]) == 6
    assert users["train"] | users["valid"] | users["test"] == set(range(1, 21))
    assert not (users["train"] & users["test"]) and not (users["valid"] & users["train"])
    assert sum(built.summary["samples"].values()) == 60  # every rating is a sample
    expected = np.random.default_rng(3).permutation(20) + 1
    assert users["test"] == set(expected[14:].tolist())
    assert users["valid"] == {int(expected[0])}
    no_valid, _ = build_user_split(_ml_frame(20), seed=3, valid=False)
    assert set(no_valid.splits["train"]["user"].to_list()) == users["train"] | users["valid"]
    other, _ = build_user_split(_ml_frame(20), seed=4)
    assert set(other.splits["test"]["user"].to_list()) != users["test"]


def test_movielens_full_size_split_is_100000_users() -> None:
    """The real split on ML-20M's 138,493 users: 100,000 train (10% of them validation)."""
    n = ML_ALL_USERS
    frame = pl.DataFrame(
        {
            "user": np.arange(n, dtype=np.int64),
            "item": np.arange(n, dtype=np.int64) % 50,
            "cate": ["g"] * n,
            "ts": np.zeros(n, dtype=np.int64),
            "label": (np.arange(n) % 2).astype(np.int8),
        }
    )
    built, _ = build_user_split(frame, seed=1234)
    users = {k: v["user"].n_unique() for k, v in built.splits.items()}
    assert users["train"] + users["valid"] == ML_TRAIN_USERS == 100_000
    assert users["valid"] == 10_000 and users["test"] == n - 100_000


def test_movielens_history_is_earlier_ratings_ties_by_movie_id() -> None:
    frame = pl.DataFrame(
        [(7, 30, "x", 5, 1), (7, 20, "y", 5, 0), (7, 10, "x", 9, 1), (2, 30, "x", 1, 0)],
        schema=["user", "item", "cate", "ts", "label"],
        orient="row",
    )
    built, _ = build_user_split(frame, seed=0, valid=False)
    seq = dict(built.sequences.select("raw_user", "items").rows())
    assert seq == {"2": [3], "7": [2, 3, 1]}  # movies 20, 30 tie at ts 5 → by movieId; then 10
    rows = pl.concat(built.splits.values()).sort("user", "hist_len")
    assert rows.select("user", "hist_len", "item", "label").rows() == [
        (1, 0, 3, 0),
        (2, 0, 2, 0),
        (2, 1, 3, 1),
        (2, 2, 1, 1),
    ]


def test_numeric_raw_ids_rank_numerically() -> None:
    frame = pl.DataFrame(
        [(10, 5, "g", 1, 1), (2, 40, "g", 1, 0), (1, 300, "g", 1, 1)],
        schema=["user", "item", "cate", "ts", "label"],
        orient="row",
    )
    built, _ = build_user_split(frame, seed=0)
    assert built.sequences["raw_user"].to_list() == ["1", "2", "10"]
    assert built.items["raw_item"].to_list() == ["5", "40", "300"]


# ----------------------------------------------------------------------- property


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.integers(0, 30), st.integers(0, 6)),
        min_size=1,
        max_size=60,
    ),
    st.integers(0, 2**16),
)
def test_no_history_holds_its_target_or_a_later_behaviour(
    events: list[tuple[int, int, int]], seed: int
) -> None:
    seen: set[tuple[int, int]] = set()
    rows = []
    for u, i, t in events:
        if (u, i) not in seen:  # a user touches an item once
            seen.add((u, i))
            rows.append((f"u{u}", f"i{i:02d}", f"c{i % 4}", t))
    frame = _frame(rows)
    if frame["item"].n_unique() <= frame.group_by("user").len()["len"].max():
        return  # some user owns every item: no negative exists
    built, _ = build_windows(frame, seed=seed)
    seq = {u: (items, ts) for u, items, ts in built.sequences.select("user", "items", "ts").rows()}
    for df in built.splits.values():
        for u, h, item, y in df.select("user", "hist_len", "item", "label").rows():
            items, ts = seq[u]
            assert 1 <= h < len(items)
            if y:
                assert items[h] == item  # the target is the behaviour right after the history
                assert item not in items[:h]
                assert max(ts[:h]) <= ts[h]
            else:
                assert item not in items


def test_rank_hash_path_matches_exact_sort() -> None:
    from dinctl.data.ranks import rank_exact as _rank_exact
    from dinctl.data.ranks import rank_ids

    rng = np.random.default_rng(0)
    values = pl.Series([f"A{v:x}Z" for v in rng.integers(0, 500, size=3000)] + ["", "a", "B"])
    fast, fast_uniq, fast_first = rank_ids(values)
    slow, slow_uniq, slow_first = _rank_exact(values)
    assert fast.tolist() == slow.tolist()
    assert fast_first.tolist() == slow_first.tolist()
    assert [values.to_list().index(v) for v in fast_uniq.to_list()] == fast_first.tolist()
    assert fast_uniq.to_list() == slow_uniq.to_list() == sorted(set(values.to_list()))
    numbers = pl.Series([10, 2, 2, 300, -1])
    assert rank_ids(numbers)[0].tolist() == [3, 2, 2, 4, 1]


def test_huge_timestamps_take_the_lexsort_path_with_the_same_order() -> None:
    huge = HAND.with_columns(pl.col("ts") * 2**58)  # (user, ts) no longer fits one int64 key
    a, _ = build_windows(HAND, seed=0)
    b, _ = build_windows(huge, seed=0)
    assert a.sequences["items"].to_list() == b.sequences["items"].to_list()
    assert a.splits["train"].equals(b.splits["train"])


@pytest.mark.parametrize("high", [5, 10**6, 2**62])
def test_packed_stable_argsort_matches_numpy(high: int) -> None:
    from dinctl.data.ranks import argsort_stable as _argsort_stable

    keys = np.random.default_rng(high % 97).integers(-high, high, size=5000)
    assert _argsort_stable(keys).tolist() == np.argsort(keys, kind="stable").tolist()


def test_packed_user_time_item_sort_matches_lexsort() -> None:
    from dinctl.data.builder import _sort_by_user_time_item

    rng = np.random.default_rng(5)
    user, item = rng.integers(1, 30, size=4000), rng.integers(1, 50, size=4000)
    ts, label = rng.integers(-(10**12), 10**12, size=4000), rng.integers(0, 2, size=4000)
    ts[::7] = ts[1::7][: len(ts[::7])]  # time ties, broken by item
    got = _sort_by_user_time_item(user, item, ts, label.astype(np.int8))
    assert got is not None
    order = np.lexsort((label, item, ts, user))
    for a, b in zip(got, (user[order], item[order], ts[order], label[order]), strict=True):
        assert a is not None and a.tolist() == b.tolist()


@pytest.mark.parametrize("q", [0, 50, 99, 100])
def test_hist_percentile_matches_numpy(q: float) -> None:
    from dinctl.data.builder import hist_percentile

    for seed in range(5):
        x = np.random.default_rng(seed).integers(0, 40, size=1 + seed * 37)
        assert hist_percentile(x, q) == pytest.approx(float(np.percentile(x, q)))
