"""The sample builders of docs/protocols.md: interactions table → sequences + sample rows.

Two protocols, both vectorised with numpy (no per-row Python):

* `windows` (Amazon, unlabelled logs): per user with time-ordered b_1..b_n, a training target
  b_{k+1} with history b_1..b_k for k = 1..n−2 and the test target b_n with history
  b_1..b_{n−1}; every positive gets one seeded static negative drawn uniformly from all items,
  redrawn while it is one of the user's own items. Validation = each user's last training
  target (its positive and negative rows) unless `valid=False`.
* `users` (MovieLens, labelled logs): every interaction is a sample labelled by the source;
  its history is the user's earlier interactions. Users are split at random (seeded):
  100,000/138,493 of them train, the rest test; a seeded fraction of the training users is
  the validation split.

Ids are 1-based ranks of the sorted raw ids (0 is padding).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from dinctl.data import fields
from dinctl.data.ranks import argsort_stable, interleave, rank_ids
from dinctl.data.schema import FeatureSchema
from dinctl.errors import DinctlError

ML_TRAIN_USERS = 100_000
ML_ALL_USERS = 138_493
VALID_USER_FRACTION = 0.1
NEGATIVE_MAX_ROUNDS = 10_000
# item → category name: a table, a callable returning it (called late), or None (per-row cate)
ItemCate = pl.DataFrame | Callable[[], pl.DataFrame] | None


@dataclass(frozen=True)
class Built:
    """What `write_dataset` needs, plus the summary the CLI prints."""

    items: pl.DataFrame
    sequences: pl.DataFrame
    splits: dict[str, pl.DataFrame]
    summary: dict[str, Any]
    vocab: dict[str, int] = field(default_factory=dict)
    schema: FeatureSchema = field(default_factory=FeatureSchema)
    users: pl.DataFrame | None = None  # users.parquet, with user fields
    values: pl.DataFrame | None = None  # values.parquet, with extra categorical fields


@dataclass(frozen=True)
class _Sequences:
    """Interactions sorted by (user, time, tie-break) with dense ids, in CSR form."""

    user: np.ndarray  # (M,) int64, 1..U, non-decreasing
    item: np.ndarray  # (M,) int64, 1..N
    cate: np.ndarray  # (M,) int64, 1..C
    ts: np.ndarray  # (M,) int64
    label: np.ndarray | None  # (M,) int8
    offsets: np.ndarray  # (U+1,) int64: user u's behaviours are [offsets[u-1], offsets[u])
    pos: np.ndarray  # (M,) int64: 0-based position within its user's sequence
    length: np.ndarray  # (M,) int64: its user's sequence length n
    raw_user: pl.Series  # (U,) raw ids in id order
    raw_item: pl.Series  # (N,)
    item_cate: np.ndarray  # (N+1,) int64
    cate_name: pl.Series  # (C,)
    pair_keys: np.ndarray  # (P,) sorted unique user·(N+1)+item
    first_pos: np.ndarray  # (M,) position of the first occurrence of each row's (user, item)
    # the schema's extra per-row columns (dinctl/data/fields.py), in the sorted order
    extra: fields.ExtraColumns | None = None


def _dense_rank(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(0-based dense rank of each value, the sorted unique values) — no searchsorted."""
    order = argsort_stable(values)
    srt = values[order]
    new = np.ones(len(values), dtype=bool)
    new[1:] = srt[1:] != srt[:-1]
    rank = np.empty(len(values), dtype=np.int64)
    rank[order] = np.cumsum(new) - 1
    return rank, srt[new]


def _sort_by_user_time_item(
    user: np.ndarray, item: np.ndarray, ts: np.ndarray, label: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None] | None:
    """Rows sorted by (user, ts, item) by sorting packed values, not indices; None if too wide.

    Rows equal in all three keys are interchangeable (the label, packed last, orders them).
    """
    u_span, i_span = int(user.max()) + 1, int(item.max()) + 1
    t0 = int(ts.min())
    t_uniq: np.ndarray | None = None
    t_span = int(ts.max()) - t0 + 1
    if u_span * t_span * i_span * 2 < 2**63:  # raw seconds fit: no ranking needed
        t_key = ts - t0
    else:
        t_key, t_uniq = _dense_rank(ts)
        t_span = len(t_uniq)
        if u_span * t_span * i_span * 2 >= 2**63:
            return None
    key = (user * np.int64(t_span) + t_key) * np.int64(i_span) + item  # (M,)
    key = key * 2 + (label if label is not None else 0)
    key.sort()
    lab = key % 2
    key //= 2
    item_s = key % i_span
    key //= i_span
    t_s = key % t_span
    ts_s = t_uniq[t_s] if t_uniq is not None else t_s + t0
    return key // t_span, item_s, ts_s, lab.astype(np.int8) if label is not None else None


def _stable_order(user: np.ndarray, ts: np.ndarray, item: np.ndarray | None) -> np.ndarray:
    """Stable argsort by (user, ts[, item]): one int64 key when it fits, else a lexsort."""
    if len(ts) == 0:
        return np.zeros(0, dtype=np.int64)
    t_rel = ts - ts.min()
    step = int(np.gcd.reduce(t_rel))  # a common step (Amazon times are whole days): narrower
    if step > 1:
        t_rel //= step
    t_span = int(t_rel.max()) + 1
    i_span = int(item.max()) + 1 if item is not None else 1
    u_span = int(user.max()) + 1
    if u_span * t_span * i_span >= 2**62 // len(ts):  # too wide with the row bits: rank times
        t_rel, uniq = _dense_rank(ts)
        t_span = len(uniq)
    if u_span * t_span * i_span < 2**62:
        key = user * np.int64(t_span) + t_rel  # (M,)
        if item is not None:
            key = key * np.int64(i_span) + item
        return argsort_stable(key)
    keys = (ts, user) if item is None else (item, ts, user)
    return np.lexsort(keys)


def _pairs(pair: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique pair keys, position of each row's pair's first occurrence)."""
    srt = np.sort(pair)  # sorting the values alone is cheap; the rows only if pairs repeat
    if not np.any(srt[1:] == srt[:-1]):  # no user repeats an item (5-core Amazon)
        return srt, pos
    pair_order = argsort_stable(pair)
    srt = pair[pair_order]
    new = np.ones(len(pair), dtype=bool)
    new[1:] = srt[1:] != srt[:-1]
    first = pair_order[new]  # (P,) row of each pair's first occurrence
    first_pos = np.empty(len(pair), dtype=np.int64)
    first_pos[pair_order] = pos[first][np.cumsum(new) - 1]
    return srt[new], first_pos


def _sequences(frame: pl.DataFrame, tie: str, item_cate: ItemCate) -> _Sequences:
    """Dense ids and the (user, ts, tie) sort; `tie` is "order" (file order) or "item".

    The category of an item comes from `item_cate` (item, cate) when given, else from the
    `cate` of the item's first row. `item_cate` may be a callable returning the table: it is
    called only once the ids and the sort are done, so a thread can still be producing it.
    """
    if frame.height == 0:
        raise DinctlError("no interactions left to build a dataset from")
    users, raw_user, _ = rank_ids(frame["user"])
    items, raw_item, first_row = rank_ids(frame["item"])
    ts = frame["ts"].cast(pl.Int64).to_numpy()
    label = frame["label"].cast(pl.Int8).to_numpy() if "label" in frame.columns else None
    # ids are ranks, so id order is raw order; a stable sort keeps file order on ties
    extra_cols = fields.extra_columns(frame)
    packed = (
        _sort_by_user_time_item(users, items, ts, label)
        if tie == "item" and not extra_cols
        else None
    )  # packing sorts values, not rows: extra columns need the row order
    order: np.ndarray | None = None
    if packed is not None:
        user, item, ts, label = packed
    else:
        order = _stable_order(users, ts, items if tie == "item" else None)
        user, item, ts = users[order], items[order], ts[order]
        label = label[order] if label is not None else None
    counts = np.bincount(user, minlength=len(raw_user) + 1)[1:]
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    start = offsets[user - 1]
    pos = np.arange(len(user), dtype=np.int64) - start
    length = counts[user - 1].astype(np.int64)
    # each (user, item) pair: sorted unique keys and the position of its first occurrence
    stride = np.int64(len(raw_item) + 1)
    in_file = users * stride + items
    if len(in_file) < 2 or bool(np.all(in_file[1:] > in_file[:-1])):
        # the file lists each pair once, sorted (the MovieLens release): no repeats, no sort
        pair_keys, first_pos = in_file, pos
    else:
        pair_keys, first_pos = _pairs(user * stride + item, pos)
    # categories last: `item_cate` may be a callable still waiting for them (the meta parse)
    if item_cate is not None:
        table = item_cate() if callable(item_cate) else item_cate
        names = (
            raw_item.to_frame("item")
            .join(table.unique("item", keep="first"), on="item", how="left", maintain_order="left")
            .get_column("cate")
        )
        if names.null_count():
            raise DinctlError(f"{names.null_count()} items have no category")
    else:
        names = frame["cate"].gather(first_row)
    cates, cate_name, _ = rank_ids(names.cast(pl.Utf8))  # names are in item id order
    cate_of = np.zeros(len(raw_item) + 1, dtype=np.int64)
    cate_of[1:] = cates
    return _Sequences(
        user=user,
        item=item,
        cate=cate_of[item],
        ts=ts,
        label=label,
        offsets=offsets,
        pos=pos,
        length=length,
        raw_user=raw_user,
        raw_item=raw_item,
        item_cate=cate_of,
        cate_name=cate_name,
        pair_keys=pair_keys,
        first_pos=first_pos,
        extra=fields.sort_extra(frame, extra_cols, order, first_row)
        if extra_cols and order is not None
        else None,
    )


def _member(keys: np.ndarray, query: np.ndarray) -> np.ndarray:
    """(Q,) bool: is each query in the sorted `keys`?"""
    idx = np.searchsorted(keys, query)
    idx = np.minimum(idx, len(keys) - 1)
    return keys[idx] == query


def draw_negatives(
    user: np.ndarray, owned_keys: np.ndarray, n_items: int, rng: np.random.Generator
) -> np.ndarray:
    """One item per row drawn uniformly from 1..N, redrawn while (user, item) is owned.

    `owned_keys` is the sorted unique array of user·(N+1)+item of every behaviour.
    """
    stride = n_items + 1
    neg = rng.integers(1, n_items + 1, size=len(user), dtype=np.int64)  # (P,)
    bad = np.flatnonzero(_member(owned_keys, user * stride + neg))
    rounds = 0
    while len(bad):
        rounds += 1
        if rounds > NEGATIVE_MAX_ROUNDS:
            raise DinctlError(
                "cannot draw negatives: some users have interacted with (almost) every item",
                hint="negatives are drawn from items the user never touched; add more items",
            )
        neg[bad] = rng.integers(1, n_items + 1, size=len(bad), dtype=np.int64)
        bad = bad[_member(owned_keys, user[bad] * stride + neg[bad])]
    return neg


def training_frequency(
    seq: _Sequences,
    user: np.ndarray,
    hist_len: np.ndarray,
    item: np.ndarray,
    cand_first: np.ndarray,
) -> np.ndarray:
    """(N+1,) n_j = number of training samples whose features contain item j.

    A sample (u, h, c) contains j when j is its candidate c or one of the first h behaviours
    of u; each sample counts once per item however often j repeats in it. For every
    (user, item) pair first seen at position f, the samples of u with h > f contain it.
    `cand_first` is the first position of (u, c) in u's sequence (≥ its length if never).
    """
    n_items = len(seq.raw_item)
    freq = np.zeros(n_items + 1, dtype=np.int64)
    if len(user) == 0:
        return freq
    start = seq.offsets[:-1]  # (U,) start of each user's behaviours
    # per (user, h) sample counts laid out like the behaviours; cs = their running total
    per_slot = np.bincount(start[user - 1] + hist_len, minlength=len(seq.item) + 1)
    cs = np.concatenate([[0], np.cumsum(per_slot)])
    # in sequence order (cache friendly): each behaviour that is its pair's first occurrence
    after = cs[seq.offsets[seq.user]] - cs[start[seq.user - 1] + seq.pos + 1]  # samples h > f
    after[seq.first_pos != seq.pos] = 0
    freq += np.bincount(seq.item, weights=after, minlength=n_items + 1).astype(np.int64)
    in_hist = cand_first < hist_len  # the candidate already counted through the history
    freq += np.bincount(item[~in_hist], minlength=n_items + 1)
    freq[0] = 0
    return freq


def _frame(user: np.ndarray, hist_len: np.ndarray, item: np.ndarray, cate_of: np.ndarray,
           label: np.ndarray) -> pl.DataFrame:  # fmt: skip
    return pl.DataFrame(
        {
            "user": user.astype(np.int32),
            "hist_len": hist_len.astype(np.int32),
            "item": item.astype(np.int32),
            "cate": cate_of[item].astype(np.int32),
            "label": label.astype(np.int8),
        }
    )


def build_windows(
    frame: pl.DataFrame,
    *,
    seed: int,
    valid: bool = True,
    item_cate: ItemCate = None,
    user_features: pl.DataFrame | None = None,
) -> tuple[Built, _Sequences]:
    """The Amazon protocol (sliding windows + one static negative per positive); the schema's
    extra columns of `frame` and the `user_features` table (dinctl/data/fields.py) join it."""
    seq = _sequences(frame, tie="order", item_cate=item_cate)
    n_items = len(seq.raw_item)
    # every behaviour at position p >= 1 is a positive target with history b_1..b_p
    target = np.flatnonzero(seq.pos >= 1)  # (P,)
    t_user, t_hist, t_item = seq.user[target], seq.pos[target], seq.item[target]
    t_len = seq.length[target]
    owned = seq.pair_keys
    rng = np.random.default_rng(seed)
    neg = draw_negatives(t_user, owned, n_items, rng)
    # rows: positive then its negative, in (user, position) order; split by target first
    is_test = t_hist == t_len - 1
    is_valid = (t_hist == t_len - 2) & (t_hist >= 1) if valid else np.zeros_like(is_test)
    parts = {"train": ~is_test & ~is_valid, "valid": is_valid, "test": is_test}
    if not valid:
        del parts["valid"]
    label = np.array([1, 0], dtype=np.int8)
    rows = {
        name: (np.repeat(t_user[m], 2), np.repeat(t_hist[m], 2), interleave(t_item[m], neg[m]))
        for name, m in parts.items()
    }
    splits = {
        name: _frame(u, h, i, seq.item_cate, np.tile(label, len(u) // 2)).with_columns(
            **fields.sample_columns(seq.extra, target[parts[name]], neg[parts[name]])
        )
        for name, (u, h, i) in rows.items()
    }
    tr = parts["train"]
    never = np.full(int(tr.sum()), np.iinfo(np.int64).max)  # negatives are never the user's
    train = (*rows["train"], interleave(seq.first_pos[target[tr]], never))
    counts = {name: 2 * int(m.sum()) for name, m in parts.items()}
    rates = {name: 0.5 if m.any() else 0.0 for name, m in parts.items()}  # one pos, one neg
    built = _finish(seq, splits, train, np.repeat(t_hist, 2), counts, rates, "amazon-windows")
    return fields.finish(built, seq.extra, seq.offsets, user_features), seq


def build_user_split(
    frame: pl.DataFrame,
    *,
    seed: int,
    valid: bool = True,
    train_fraction: float = ML_TRAIN_USERS / ML_ALL_USERS,
    valid_fraction: float = VALID_USER_FRACTION,
    item_cate: ItemCate = None,
    user_features: pl.DataFrame | None = None,
) -> tuple[Built, _Sequences]:
    """The MovieLens protocol: every interaction a sample, users split at random (seeded)."""
    if "label" not in frame.columns:
        raise DinctlError("the user-split protocol needs a label column")
    seq = _sequences(frame, tie="item", item_cate=item_cate)
    assert seq.label is not None
    n_users = len(seq.raw_user)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n_users) + 1  # (U,) user ids in a seeded order
    n_train = int(round(n_users * train_fraction))
    n_valid = int(round(n_train * valid_fraction)) if valid else 0
    group = np.zeros(n_users + 1, dtype=np.int8)  # 0 train, 1 valid, 2 test
    group[perm[:n_valid]] = 1
    group[perm[n_train:]] = 2
    g = group[seq.user]
    parts = {"train": g == 0, "valid": g == 1, "test": g == 2}
    if not valid:
        del parts["valid"]
    splits = {
        name: _frame(
            seq.user[m], seq.pos[m], seq.item[m], seq.item_cate, seq.label[m]
        ).with_columns(**fields.sample_columns(seq.extra, np.flatnonzero(m)))
        for name, m in parts.items()
    }
    tr = parts["train"]
    train = (seq.user[tr], seq.pos[tr], seq.item[tr], seq.first_pos[tr])
    counts = {name: int(m.sum()) for name, m in parts.items()}
    rates = {name: float(seq.label[m].mean()) if m.any() else 0.0 for name, m in parts.items()}
    built = _finish(seq, splits, train, seq.pos, counts, rates, "movielens-user-split")
    return fields.finish(built, seq.extra, seq.offsets, user_features), seq


def hist_percentile(values: np.ndarray, q: float) -> float:
    """np.percentile(values, q) (linear) of non-negative integers, by counting, not sorting."""
    if len(values) == 0:
        return 0.0
    cum = np.cumsum(np.bincount(values))  # cum[v] = number of values ≤ v
    pos = q / 100 * (len(values) - 1)
    lo = int(np.floor(pos))
    hi = min(lo + 1, len(values) - 1)
    v_lo = int(np.searchsorted(cum, lo, side="right"))
    v_hi = int(np.searchsorted(cum, hi, side="right"))
    return float(v_lo + (v_hi - v_lo) * (pos - lo))


def _finish(
    seq: _Sequences,
    splits: dict[str, pl.DataFrame],
    train: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    all_hist: np.ndarray,
    counts: dict[str, int],
    rates: dict[str, float],
    protocol: str,
) -> Built:
    """items, sequences and the summary around the split frames.

    `train` is (user, hist_len, item, cand_first) of the training rows, `all_hist` the
    hist_len of every row, `counts`/`rates` each split's rows and positive rate.
    """
    freq = training_frequency(seq, *train)
    n_items = len(seq.raw_item)
    ids = np.arange(1, n_items + 1)
    items = pl.DataFrame(
        {
            "item": ids.astype(np.int32),
            "raw_item": seq.raw_item.cast(pl.Utf8),
            "cate": seq.item_cate[1:].astype(np.int32),
            "cate_name": seq.cate_name.gather(seq.item_cate[1:] - 1),
            "freq": freq[1:],
        }
    )
    sequences = _sequence_frame(seq)
    summary: dict[str, Any] = {
        "protocol": protocol,
        "users": len(seq.raw_user),
        "items": n_items,
        "categories": len(seq.cate_name),
        "behaviours": len(seq.item),
        "samples": counts,
        "positive_rate": rates,
        "hist_len": {
            "mean": float(all_hist.mean()) if len(all_hist) else 0.0,
            "p50": hist_percentile(all_hist, 50),
            "p99": hist_percentile(all_hist, 99),
            "max": int(all_hist.max()) if len(all_hist) else 0,
        },
    }
    vocab = {"user": len(seq.raw_user) + 1, "item": n_items + 1, "cate": len(seq.cate_name) + 1}
    return Built(items=items, sequences=sequences, splits=splits, summary=summary, vocab=vocab)


def _sequence_frame(seq: _Sequences) -> pl.DataFrame:
    """One row per user: the whole time-ordered behaviour list (Arrow list arrays, no copy)."""
    import pyarrow as pa

    offsets = pa.array(seq.offsets.astype(np.int32))
    lists = {
        "items": pa.ListArray.from_arrays(offsets, pa.array(seq.item.astype(np.int32))),
        "cates": pa.ListArray.from_arrays(offsets, pa.array(seq.cate.astype(np.int32))),
        "ts": pa.ListArray.from_arrays(offsets, pa.array(seq.ts.astype(np.int64))),
    }
    n_users = len(seq.raw_user)
    return pl.DataFrame(
        {
            "user": np.arange(1, n_users + 1, dtype=np.int32),
            "raw_user": seq.raw_user.cast(pl.Utf8),
            **{k: pl.from_arrow(v) for k, v in lists.items()},
        }
    )
