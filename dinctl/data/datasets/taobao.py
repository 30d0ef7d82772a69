"""Builders of the two public Taobao datasets (docs/protocols.md): raw CSV → data folder.

taobao-ad (Alimama display ads, Tianchi 56): one sample per impression of raw_sample.csv;
the candidate is the ad's (category, brand); the history is the user's behaviours of
behavior_log.csv STRICTLY before the impression time. Days 1-7 (Beijing time) train, day 8
test; validation is day 7 (a time rule, never the test day).

The history join never materialises a history per impression: the typed log is streamed
once (no joins) into scratch Parquet files, one per shard (a contiguous range of user ids);
each shard reads only its own file, maps ids by binary search, sorts them by (user, time)
into CSR order and gets each impression's history length from one `searchsorted` of its
(user, time) key. Only behaviours inside some impression's last `max_len` are kept, so the
stored sequences are bounded by impressions × max_len and by the log, and a shard's memory
by its rows.

taobao (UserBehavior, Tianchi 649): each user's last behaviour is the positive target, one
uniformly drawn other item the negative; the history is the behaviours before it (last
`max_len` kept). Users whose last behaviour is in the latest 30% of users' last-behaviour
times are the test users (the MIMN/UIC protocol), 10% of the others (seeded) validation.

Ids: a candidate and a behaviour share the item vocabulary "category:brand" (the ad log has
no item id in its behaviours), so DIN attends over the same ids the candidate carries. The
feature schema: behaviour (item, cate, brand, btag; the candidate's btag is "ad"), user
(the eight profile fields, 0 = no profile row or empty), context (pid, adgroup, campaign,
customer). UserBehavior: behaviour (item, cate, btag).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from dinctl.data.builder import Built, hist_percentile
from dinctl.data.datasets import tianchi
from dinctl.data.preprocess import output_folder, write_built
from dinctl.data.reporting import Status, Warn, no_warnings, quiet
from dinctl.data.schema import FeatureSchema
from dinctl.errors import DinctlError

DAY = 86_400
AD_START = 1_494_000_000  # 2017-05-06 00:00 Beijing time: day 1 of raw_sample.csv
TEST_DAY, VALID_DAY = 8, 7
TEST_USER_FRACTION, VALID_USER_FRACTION = 0.3, 0.1
MAX_SHARD_ROWS = 20_000_000  # behaviours per shard: bounds the memory of one join
PARTITIONED_SPILL = hasattr(pl, "PartitionBy")  # the log split by shard as it is spilled


def history_lengths(
    beh_user: np.ndarray, beh_ts: np.ndarray, imp_user: np.ndarray, imp_ts: np.ndarray
) -> np.ndarray:
    """(N,) for each impression, the number of its user's behaviours strictly before it.

    `beh_user`/`beh_ts` (M,) must be sorted by (user, ts); users are ids ≥ 1. One composite
    key user·span + (ts − t0) per row and one searchsorted (side="left": equal times excluded).
    """
    if len(imp_user) == 0:
        return np.zeros(0, dtype=np.int64)
    t0 = min(int(beh_ts.min()) if len(beh_ts) else 0, int(imp_ts.min()))
    t1 = max(int(beh_ts.max()) if len(beh_ts) else 0, int(imp_ts.max()))
    span = t1 - t0 + 1
    top = max(int(beh_user.max()) if len(beh_user) else 0, int(imp_user.max())) + 1
    if top * span >= 2**62:
        raise DinctlError(
            f"timestamps span {span} seconds: too wide to join",
            hint="check the time_stamp columns (Unix seconds expected)",
        )
    beh_key = beh_user.astype(np.int64) * span + (beh_ts.astype(np.int64) - t0)  # (M,)
    imp_key = imp_user.astype(np.int64) * span + (imp_ts.astype(np.int64) - t0)  # (N,)
    before_all = np.searchsorted(beh_key, imp_key, side="left")  # rows with a smaller key
    user_start = np.searchsorted(beh_key, imp_user.astype(np.int64) * span, side="left")
    return (before_all - user_start).astype(np.int64)


def keep_windows(
    user_start: np.ndarray, hist: np.ndarray, max_len: int, n_rows: int
) -> tuple[np.ndarray, np.ndarray]:
    """(keep (M,) bool, new_hist (N,)): keep the behaviours in some impression's last
    `max_len` before it; the new history length counts kept behaviours before the same point
    (its last `max_len` are exactly the old window)."""
    lo = user_start + np.maximum(hist - max_len, 0)  # (N,) window [lo, hi) in row space
    hi = user_start + hist
    delta = np.zeros(n_rows + 1, dtype=np.int64)
    np.add.at(delta, lo, 1)
    np.add.at(delta, hi, -1)
    keep = np.cumsum(delta[:-1]) > 0  # (M,)
    kept_before = np.concatenate([[0], np.cumsum(keep)])  # (M+1,)
    return keep, kept_before[hi] - kept_before[user_start]


@dataclass(frozen=True)
class _Vocab:
    users: pl.DataFrame  # raw user → uid (1..U), sorted by raw id
    pairs: pl.DataFrame  # cate, brand (0 = none) → item (1..N)
    cates: pl.DataFrame  # raw cate → cid (1..C)
    brands: pl.DataFrame  # raw brand (0 = NULL) → brand_id (1..B)


def _users(samples: pl.DataFrame) -> pl.DataFrame:
    """raw user → uid (1..U) for the users of the impressions, sorted by raw id."""
    return _dense(samples["user"], "user", "uid")


def _vocab(users: pl.DataFrame, ads: pl.DataFrame, beh: Any) -> _Vocab:
    """Dense ids: users of the impressions, (cate, brand) pairs of the ads and the log."""
    seen = (
        beh.join(users.lazy(), on="user", how="semi")
        .select("cate", pl.col("brand").fill_null(0))
        .unique()
        .collect(engine="streaming")
    )
    pairs = (
        pl.concat([ads.select("cate", pl.col("brand").fill_null(0)), seen])
        .unique()
        .sort("cate", "brand")
    )
    pairs = pairs.with_columns(pl.int_range(1, pairs.height + 1, dtype=pl.Int32).alias("item"))
    cates = _dense(pairs["cate"], "cate", "cid")
    brands = _dense(pairs["brand"], "brand", "brand_id")
    return _Vocab(users, pairs, cates, brands)


def _dense(values: pl.Series, raw: str, name: str) -> pl.DataFrame:
    """(raw, name): each distinct non-null value of `values`, sorted, → id 1..K."""
    out = pl.DataFrame({raw: values.drop_nulls().unique().sort()})
    return out.with_columns(pl.int_range(1, out.height + 1, dtype=pl.Int32).alias(name))


def _ids(frame: pl.DataFrame, vocab: _Vocab) -> pl.DataFrame:
    """Replace raw user, cate, brand by uid, item, cid, brand_id."""
    return (
        frame.with_columns(pl.col("brand").fill_null(0))
        .join(vocab.users, on="user")
        .join(vocab.pairs, on=["cate", "brand"])
        .join(vocab.cates, on="cate")
        .join(vocab.brands, on="brand")
    )


def _lookup(table: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(1-based position of each value in the sorted `table`, whether it is there)."""
    if len(table) == 0:
        return np.zeros(len(values), dtype=np.int32), np.zeros(len(values), dtype=bool)
    pos = np.minimum(np.searchsorted(table, values), len(table) - 1)
    return (pos + 1).astype(np.int32), table[pos] == values


def _map_ids(rows: pl.DataFrame, vocab: _Vocab) -> pl.DataFrame:
    """Raw user, cate, brand of one shard's log rows → uid, item, cid, brand_id, by binary
    search in the sorted vocabularies (a few int arrays per row, no join copies); rows of
    users without impressions are dropped."""
    user, cate = rows["user"].to_numpy(), rows["cate"].to_numpy()
    brand = rows["brand"].to_numpy()
    uid, known = _lookup(vocab.users["user"].to_numpy(), user)
    top = int(vocab.brands["brand"].max() or 0) + 1  # type: ignore[arg-type]
    pair_key = vocab.pairs["cate"].to_numpy() * top + vocab.pairs["brand"].to_numpy()
    item, _ = _lookup(pair_key, cate.astype(np.int64) * top + np.minimum(brand, top - 1))
    cid, _ = _lookup(vocab.cates["cate"].to_numpy(), cate)
    brand_id, _ = _lookup(vocab.brands["brand"].to_numpy(), brand)
    frame = pl.DataFrame({"uid": uid, "ts": rows["ts"], "item": item, "cid": cid,
                          "brand_id": brand_id, "btag": rows["btag"]})  # fmt: skip
    return frame.filter(pl.Series(known))


def _join_shard(rows: pl.DataFrame, imp: pl.DataFrame, max_len: int
                ) -> tuple[pl.DataFrame, np.ndarray]:  # fmt: skip
    """One user shard: (kept behaviours sorted by uid/ts, hist (N,)) from its mapped rows."""
    rows = rows.select("uid", "ts", "item", "cid", "brand_id", "btag").sort("uid", "ts", "item")
    user, ts = rows["uid"].to_numpy(), rows["ts"].to_numpy()
    imp_user, imp_ts = imp["uid"].to_numpy(), imp["ts"].to_numpy()
    hist = history_lengths(user, ts, imp_user, imp_ts)  # (N,)
    start = np.searchsorted(user, imp_user, side="left")  # (N,)
    keep, new_hist = keep_windows(start, hist, max_len, len(rows))
    return rows.filter(pl.Series(keep)), new_hist


def _shard_ranges(n_users: int, k: int) -> list[tuple[int, int]]:
    """k contiguous uid ranges [lo, hi) covering 1..n_users (empty ones dropped)."""
    ranges = [(s * n_users // k + 1, (s + 1) * n_users // k + 1) for s in range(k)]
    return [(lo, hi) for lo, hi in ranges if lo < hi]


def _sharded_join(log: _Spill, vocab: _Vocab, imp: pl.DataFrame, max_len: int,
                  train_end: int, status: Status = quiet
                  ) -> tuple[list[pl.DataFrame], np.ndarray, pl.DataFrame, int]:  # fmt: skip
    """(sequence list frames per shard, behaviour part of n_j, impressions with hist_len,
    kept behaviours), one contiguous user range at a time: only one shard's log rows are in
    memory (its own spilled Parquet part; ids mapped in memory), and the shards' outputs come
    out in user order (no global sort). `train_end` is the first day that is not training."""
    n_items = vocab.pairs.height
    seq_parts, imp_parts, n_kept = [], [], 0
    beh_freq = np.zeros(n_items + 1, dtype=np.float64)
    for shard, (lo, hi) in enumerate(_shard_ranges(vocab.users.height, log.k)):
        part = imp.filter(pl.col("uid").is_between(lo, hi - 1))
        with status(f"joining histories: user shard {shard + 1}/{log.k}"):
            rows, hist = _join_shard(_map_ids(log.shard(shard).collect(), vocab), part, max_len)
        part = part.with_columns(pl.Series("hist_len", hist))
        train = part.filter(pl.col("day") < train_end)
        beh_freq += _beh_freq(rows, train["uid"].to_numpy(), train["hist_len"].to_numpy(),
                              n_items)  # fmt: skip
        seq_parts.append(_seq_part(rows, {"brand_id": "brand", "btag": "btag"}))
        imp_parts.append(part)
        n_kept += rows.height
        del rows
    return seq_parts, beh_freq, pl.concat(imp_parts).sort("uid", "ts", "line"), n_kept


class _Spill:
    """The typed behaviour log in a scratch folder, split by user shard as it is written (one
    `PartitionBy` sink: one pass over the CSV, and each shard later reads only its own part);
    without `pl.PartitionBy` (older Polars), one file that each shard filters by user range."""

    SCHEMA = {"user": pl.Int64, "ts": pl.Int64, "btag": pl.Int8, "cate": pl.Int64,
              "brand": pl.Int64, "_bad": pl.Boolean}  # fmt: skip

    def __init__(self, folder: Path, users: pl.DataFrame, k: int, partitioned: bool) -> None:
        raw = users["user"]  # sorted raw ids; uid = position + 1
        self.folder, self.partitioned = folder, partitioned
        self.bounds = [(raw[lo - 1], raw[hi - 2]) for lo, hi in _shard_ranges(len(raw), k)]
        self.k = len(self.bounds)

    def _key(self) -> pl.Expr:
        """Each row's shard: the last one whose first raw user is ≤ the row's (-1: before all
        of them, a user without impressions); a malformed row goes to shard 0, to be found."""
        # k comparisons per row, which stream (a search_sorted against a literal held the
        # whole log in memory: 1.44 GB against 0.70 GB peak at 4% scale, 35 shards)
        user = pl.col("user")
        pos = pl.sum_horizontal([(user >= lo).cast(pl.Int32) for lo, _ in self.bounds]) - 1
        return pl.when(pl.col("_bad")).then(pl.lit(0, pl.Int32)).otherwise(pos).alias("shard")

    def write(self, lf: Any) -> None:
        if not self.partitioned:
            self.folder.mkdir(parents=True, exist_ok=True)
            lf.sink_parquet(self.folder / "log.parquet", compression="lz4")
            return
        lf = lf.with_columns(self._key()).filter(pl.col("shard") >= 0)
        lf.sink_parquet(pl.PartitionBy(self.folder, key="shard", include_key=False),
                        compression="lz4", mkdir=True)  # fmt: skip

    def _scan(self, folder: Path) -> Any:
        files = sorted(folder.rglob("*.parquet"))
        return pl.scan_parquet(files) if files else pl.LazyFrame(schema=self.SCHEMA)

    def all(self) -> Any:
        return self._scan(self.folder)

    def shard(self, i: int) -> Any:
        """Shard i's rows (raw users in its range, and maybe others that _map_ids drops)."""
        if self.partitioned:
            return self._scan(self.folder / f"shard={i}").drop("_bad")
        lo, hi = self.bounds[i]
        return self.all().filter(pl.col("user").is_between(lo, hi)).drop("_bad")


def _spill(path: Path, spill: _Spill) -> Any:
    """Stream the typed behaviour log (no joins: bounded memory) into `spill`, check it, and
    scan it back whole; a malformed row is its file:line error."""
    lf = tianchi.scan(path, tianchi.BEHAVIOR_LOG).select(
        "user", "ts", "btag", "cate", pl.col("brand").fill_null(0), "_bad"
    )
    try:
        spill.write(lf)
    except Exception as err:  # noqa: BLE001 - polars raises its own ComputeError types
        tianchi.find_bad_line(path, tianchi.BEHAVIOR_LOG)
        raise DinctlError(f"cannot read {path}: {err}", hint="download it again") from None
    log = spill.all()
    if log.select(pl.col("_bad").any()).collect(engine="streaming").item():
        tianchi.find_bad_line(path, tianchi.BEHAVIOR_LOG)
    return log.drop("_bad")


def _beh_freq(kept: pl.DataFrame, t_user: np.ndarray, t_hist: np.ndarray, n_items: int
              ) -> np.ndarray:  # fmt: skip
    """(N+1,) for each item, its kept occurrences weighted by the training samples of their
    user whose history reaches past them (`kept` sorted by uid, ts; one user range)."""
    out = np.zeros(n_items + 1, dtype=np.float64)
    if kept.height == 0:
        return out
    uid = kept["uid"].to_numpy().astype(np.int64)
    lo, n_beh = int(uid[0]), len(uid)
    span = int(max(uid[-1], t_user.max() if len(t_user) else 0)) - lo + 2
    offsets = np.zeros(span, dtype=np.int64)  # offsets[u - lo] = start of user u in `kept`
    np.cumsum(np.bincount(uid - lo, minlength=span)[:-1], out=offsets[1:])
    inside = (t_user >= lo) & (t_user - lo < span - 1)
    slot = offsets[t_user[inside] - lo] + t_hist[inside]  # (N,) each sample's end
    cs = np.concatenate([[0], np.cumsum(np.bincount(slot, minlength=n_beh + 1))])
    pos = np.arange(n_beh) - offsets[uid - lo]
    after = cs[offsets[uid - lo + 1]] - cs[offsets[uid - lo] + pos + 1]  # samples with h > pos
    return np.bincount(kept["item"].to_numpy(), weights=after, minlength=n_items + 1)


def _seq_part(kept: pl.DataFrame, extra: dict[str, str]) -> pl.DataFrame:
    """One row per user of `kept` (sorted by uid): the behaviour lists of the contract."""
    return kept.group_by("uid", maintain_order=True).agg(
        pl.col("item").cast(pl.Int32).alias("items"),
        pl.col("cid").cast(pl.Int32).alias("cates"),
        pl.col("ts").cast(pl.Int64),
        *(pl.col(c).cast(pl.Int32).alias(f"hist_{f}") for c, f in extra.items()),
    )


def _shards(path: Path) -> int:
    """Shards by user: ~MAX_SHARD_ROWS behaviours each (≈ 32 bytes per CSV row)."""
    size = path.stat().st_size if path.is_file() else 0  # a missing file: scan() says so
    return max(1, int(size // 32 // MAX_SHARD_ROWS) + 1)


def _read_ad_inputs(raw: Path) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, int]]:
    """(impressions with ad fields, ads, dropped counts)."""
    ad_path = raw / tianchi.AD_FEATURE.name
    ads = tianchi.collect(tianchi.scan(ad_path, tianchi.AD_FEATURE), ad_path, tianchi.AD_FEATURE)
    dup = ads.filter(pl.col("adgroup").is_duplicated())
    if dup.height:
        raise DinctlError(
            f"{ad_path}: adgroup_id {dup['adgroup'][0]} is listed {dup.height} times",
            hint="each ad has one row in ad_feature.csv: download it again",
        )
    sample_path = raw / tianchi.RAW_SAMPLE.name
    fmt = tianchi.RAW_SAMPLE
    samples = tianchi.collect(tianchi.scan(sample_path, fmt), sample_path, fmt)
    bad = samples.filter(~pl.col("clk").is_in([0, 1]) | (pl.col("clk") + pl.col("nonclk") != 1))
    if bad.height:
        raise DinctlError(
            f"{sample_path}: clk={bad['clk'][0]}, nonclk={bad['nonclk'][0]} in a row of user "
            f"{bad['user'][0]} at {bad['ts'][0]}, expected clk 0/1 and nonclk = 1 - clk",
            hint=f"fix or remove that row of {sample_path.name}",
        )
    joined = samples.join(
        ads.select("adgroup", "cate", "brand", "campaign", "customer"), on="adgroup", how="inner"
    )
    dropped = {"impressions of unknown ads": samples.height - joined.height}
    return joined, ads, dropped


def _frames(kept: pl.DataFrame, vocab: _Vocab, train: pl.DataFrame,
            extra: dict[str, str]) -> tuple[pl.DataFrame, pl.DataFrame]:  # fmt: skip
    """(items, sequences) of one in-memory set of kept behaviours (sorted by uid, ts)."""
    n_items = vocab.pairs.height
    freq = _beh_freq(kept, train["uid"].to_numpy(), train["hist_len"].to_numpy(), n_items)
    return _assemble(vocab, [_seq_part(kept, extra)], freq, train, extra)


def _assemble(vocab: _Vocab, seq_parts: list[pl.DataFrame], beh_freq: np.ndarray,
              train: pl.DataFrame, extra: dict[str, str]
              ) -> tuple[pl.DataFrame, pl.DataFrame]:  # fmt: skip
    """(items, sequences) frames of the dataset contract; n_j counts each training sample's
    candidate plus every kept behaviour occurrence inside a training history. Users without
    kept behaviours get empty lists; the list columns are never copied."""
    n_items = vocab.pairs.height
    freq = beh_freq + np.bincount(train["item"].to_numpy(), minlength=n_items + 1)
    cate_of = vocab.pairs.join(vocab.cates, on="cate").sort("item")
    items = cate_of.select(
        "item",
        pl.format("{}:{}", "cate", "brand").alias("raw_item"),
        pl.col("cid").alias("cate"),
        pl.col("cate").cast(pl.Utf8).alias("cate_name"),
        pl.Series("freq", freq[1:].astype(np.int64)),
    )
    cols = {"items": pl.Int32, "cates": pl.Int32, "ts": pl.Int64,
            **{f"hist_{f}": pl.Int32 for f in extra.values()}}  # fmt: skip
    seen = pl.concat([p.select("uid") for p in seq_parts]) if seq_parts else None
    empty = vocab.users.select("uid")
    if seen is not None:
        empty = empty.join(seen, on="uid", how="anti")
    empty = empty.with_columns(pl.lit([], dtype=pl.List(t)).alias(c) for c, t in cols.items())
    seq = pl.concat([*seq_parts, empty], how="vertical", rechunk=False)
    raw_user = vocab.users.sort("uid")["user"].cast(pl.Utf8)
    sequences = seq.select(
        pl.col("uid").alias("user"),
        pl.Series("raw_user", raw_user.gather(seq["uid"].to_numpy() - 1)),
        *cols,
    )
    return items, sequences


def _summary(protocol: str, vocab: _Vocab, n_beh: int, splits: dict[str, pl.DataFrame]
             ) -> dict[str, Any]:  # fmt: skip
    hist = np.concatenate([df["hist_len"].to_numpy() for df in splits.values()])
    return {
        "protocol": protocol,
        "users": vocab.users.height,
        "items": vocab.pairs.height,
        "categories": vocab.cates.height,
        "behaviours": n_beh,
        "samples": {k: df.height for k, df in splits.items()},
        "positive_rate": {
            k: float(df["label"].mean()) if df.height else 0.0  # type: ignore[arg-type]
            for k, df in splits.items()
        },  # fmt: skip
        "hist_len": {
            "mean": float(hist.mean()) if len(hist) else 0.0,
            "p50": hist_percentile(hist, 50),
            "p99": hist_percentile(hist, 99),
            "max": int(hist.max()) if len(hist) else 0,
        },
    }


BTAG_CANDIDATE = len(tianchi.BTAGS) + 1  # the candidate's own behaviour type: "ad" (the impression)
AD_USER_FIELDS = ("cms_segid", "cms_group_id", "gender", "age_level", "pvalue_level",
                  "shopping_level", "occupation", "city_level")  # fmt: skip
AD_CONTEXT_FIELDS = ("pid", "adgroup", "campaign", "customer")


def _profile(raw: Path, vocab: _Vocab) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    """users.parquet rows (uid + one id per profile field, 0 = missing) and their values."""
    path = raw / tianchi.USER_PROFILE.name
    prof = tianchi.collect(tianchi.scan(path, tianchi.USER_PROFILE), path, tianchi.USER_PROFILE)
    dup = prof.filter(pl.col("user").is_duplicated())
    if dup.height:
        raise DinctlError(f"{path}: userid {dup['user'][0]} is listed {dup.height} times",
                          hint="each user has one row in user_profile.csv")  # fmt: skip
    prof = prof.join(vocab.users, on="user", how="inner")
    users, values = prof.select(pl.col("uid").alias("user")), []
    for f in AD_USER_FIELDS:
        ids = _dense(prof[f], "raw", f)
        users = users.with_columns(prof.select(pl.col(f).alias("raw")).join(
            ids, on="raw", how="left", maintain_order="left")[f].fill_null(0))  # fmt: skip
        values.append(_values(ids, f))
    return users, values


def _values(ids: pl.DataFrame, field: str) -> pl.DataFrame:
    raw, name = ids.columns
    return ids.select(pl.lit(field).alias("field"), pl.col(name).cast(pl.Int32).alias("id"),
                      pl.col(raw).cast(pl.Utf8).alias("raw"))  # fmt: skip


def _contexts(imp: pl.DataFrame) -> tuple[pl.DataFrame, list[pl.DataFrame], dict[str, int]]:
    """The impressions with one id column per context field, their values and vocab sizes."""
    values, vocab = [], {}
    for f in AD_CONTEXT_FIELDS:
        ids = _dense(imp[f], "raw", f"{f}_id")
        imp = imp.join(ids.rename({"raw": f}), on=f, how="left", maintain_order="left")
        values.append(_values(ids, f))
        vocab[f] = ids.height + 1
    return imp, values, vocab


def build_taobao_ad(raw: Path, *, max_len: int, valid: bool, shards: int | None = None,
                    status: Status = quiet) -> tuple[Built, dict[str, int]]:  # fmt: skip
    """The four raw files of `raw` → (Built, dropped counts); see the module docstring."""
    import tempfile

    with status("reading raw_sample.csv and ad_feature.csv"):
        imp, ads, dropped = _read_ad_inputs(raw)
    beh_path = raw / tianchi.BEHAVIOR_LOG.name
    users = _users(imp)
    with tempfile.TemporaryDirectory(prefix="dinctl-taobao-") as scratch:
        spill = _Spill(Path(scratch) / "behaviours", users, shards or _shards(beh_path),
                       partitioned=PARTITIONED_SPILL)  # fmt: skip
        with status(f"reading {beh_path.name} into {spill.k} user shard(s)"):
            log = _spill(beh_path, spill)
        with status("building the vocabularies"):
            vocab = _vocab(users, ads, log)
        imp = _ids(imp, vocab).with_columns(
            ((pl.col("ts") - AD_START) // DAY + 1).alias("day"), pl.col("clk").alias("label")
        )
        imp, ctx_values, ctx_vocab = _contexts(imp)
        imp = imp.select(  # only what the splits need, narrow: bounded per impression
            pl.col("uid", "item", "cid", "brand_id").cast(pl.Int32), "ts", "line",
            pl.col("day").cast(pl.Int8), pl.col("label").cast(pl.Int8),
            *(pl.col(f"{f}_id").cast(pl.Int32) for f in AD_CONTEXT_FIELDS),
        )  # fmt: skip
        train_end = VALID_DAY if valid else TEST_DAY
        seq_parts, beh_freq, imp, n_kept = _sharded_join(spill, vocab, imp, max_len, train_end,
                                                         status)  # fmt: skip
    splits = _day_splits(imp, valid)
    del imp  # the splits are its copies: free the impressions before the assembly peak
    with status("assembling the behaviour sequences"):
        items, sequences = _assemble(vocab, seq_parts, beh_freq, splits["train"],
                                     {"brand_id": "brand", "btag": "btag"})  # fmt: skip
    users, user_values = _profile(raw, vocab)
    brand_values = vocab.brands.select(
        pl.lit("brand").alias("field"), pl.col("brand_id").cast(pl.Int32).alias("id"),
        pl.when(pl.col("brand") == 0).then(pl.lit("NULL"))
        .otherwise(pl.col("brand").cast(pl.Utf8)).alias("raw"),
    )  # fmt: skip
    built = Built(
        items=items, sequences=sequences, splits=splits,
        summary=_summary("days", vocab, n_kept, splits),
        vocab={"user": vocab.users.height + 1, "item": vocab.pairs.height + 1,
               "cate": vocab.cates.height + 1, "brand": vocab.brands.height + 1,
               "btag": BTAG_CANDIDATE + 1, **ctx_vocab,
               **{f: int(users[f].to_numpy().max(initial=0)) + 1 for f in AD_USER_FIELDS}},
        schema=FeatureSchema(behaviour=("item", "cate", "brand", "btag"), user=AD_USER_FIELDS,
                             context=AD_CONTEXT_FIELDS),
        users=users,
        values=pl.concat([brand_values, _btag_values(), *ctx_values, *user_values]),
    )  # fmt: skip
    return built, dropped


def _day_splits(imp: pl.DataFrame, valid: bool) -> dict[str, pl.DataFrame]:
    """Days 1-7 train, day 8 test; day 7 validation unless `valid` is False."""
    cols = [pl.col("uid").alias("user"), "hist_len", "item", pl.col("cid").alias("cate"), "label",
            pl.col("brand_id").alias("brand"), pl.lit(BTAG_CANDIDATE).alias("btag"),
            *(pl.col(f"{f}_id").alias(f) for f in AD_CONTEXT_FIELDS)]  # fmt: skip
    test = imp.filter(pl.col("day") >= TEST_DAY)
    rest = imp.filter(pl.col("day") < TEST_DAY)
    if not valid:
        return {"train": rest.select(cols), "test": test.select(cols)}
    return {
        "train": rest.filter(pl.col("day") < VALID_DAY).select(cols),
        "valid": rest.filter(pl.col("day") == VALID_DAY).select(cols),
        "test": test.select(cols),
    }


def build_taobao(path: Path, *, max_len: int, seed: int, valid: bool) -> Built:
    """UserBehavior.csv → Built: last behaviour + one drawn negative per user (MIMN protocol)."""
    df = tianchi.collect(tianchi.scan(path, tianchi.USER_BEHAVIOR), path, tianchi.USER_BEHAVIOR)
    users = _dense(df["user"], "user", "uid")
    items = df.group_by("item").agg(pl.col("cate").first()).sort("item")
    items = items.with_columns(pl.int_range(1, items.height + 1, dtype=pl.Int32).alias("iid"))
    cates = _dense(items["cate"], "cate", "cid")
    items = items.join(cates, on="cate").sort("iid")
    rows = (
        df.join(users, on="user")
        .join(items.select("item", "iid", "cid"), on="item")
        .sort("uid", "ts", "line")
    )  # the catalogue's category of an item (its first row's) everywhere, as the items table
    uid, iid = rows["uid"].to_numpy(), rows["iid"].to_numpy()
    n_users, n_items = users.height, items.height
    if n_items < 2:
        raise DinctlError(f"{path} holds {n_items} item(s): no negative can be drawn",
                          hint="use the whole UserBehavior.csv")  # fmt: skip
    end = np.searchsorted(uid, np.arange(1, n_users + 1), side="right")  # (U,) past each user
    start = np.searchsorted(uid, np.arange(1, n_users + 1), side="left")
    hist = end - start - 1  # (U,) the last behaviour is the target
    rng = np.random.default_rng(seed)
    target = iid[end - 1]
    neg = rng.integers(1, n_items, size=n_users)  # 1..N-1, skip the target: uniform over others
    neg = neg + (neg >= target)
    keep, new_hist = keep_windows(start, hist, max_len, len(rows))
    keep[end - 1] = False  # the target itself is no behaviour of the stored history
    kept = rows.filter(pl.Series(keep))
    cate_of = items["cid"].to_numpy()
    cate_of = np.concatenate([[0], cate_of])
    u = np.arange(1, n_users + 1, dtype=np.int32)
    samples = pl.DataFrame({
        "user": np.repeat(u, 2), "hist_len": np.repeat(new_hist, 2),
        "item": np.stack([target, neg], 1).ravel(),
        "label": np.tile(np.array([1, 0], dtype=np.int8), n_users),
    }).with_columns(pl.Series("cate", cate_of[np.stack([target, neg], 1).ravel()]))  # fmt: skip
    splits = _user_splits(samples, rows["ts"].to_numpy()[end - 1], seed, valid)
    vocab = _Vocab(
        users,
        items.select(pl.col("cate"), pl.col("item").alias("brand"), pl.col("iid").alias("item")),
        cates,
        pl.DataFrame(),
    )
    seq_items, seqs = _frames(
        kept.select("uid", "ts", pl.col("iid").alias("item"), "cid", "btag"),
        vocab, splits["train"].rename({"user": "uid"}), {"btag": "btag"},
    )  # fmt: skip
    seq_items = seq_items.with_columns(pl.col("raw_item").str.split(":").list.last())
    return Built(
        items=seq_items,
        sequences=seqs,
        splits=splits,
        summary=_summary("last-behaviour", vocab, kept.height, splits),
        vocab={"user": n_users + 1, "item": n_items + 1, "cate": cates.height + 1,
               "btag": BTAG_CANDIDATE + 1},
        schema=FeatureSchema(behaviour=("item", "cate", "btag")),  # the candidate's btag: "ad"
        values=_btag_values(),
    )  # fmt: skip


def _btag_values() -> pl.DataFrame:
    """values.parquet rows of the btag field: the log's behaviour types, then "ad"."""
    raw = [*tianchi.BTAGS, "ad"]
    btags = pl.DataFrame({"raw": raw, "btag": list(range(1, BTAG_CANDIDATE + 1))})
    return _values(btags, "btag")


def _user_splits(samples: pl.DataFrame, last_ts: np.ndarray, seed: int, valid: bool
                 ) -> dict[str, pl.DataFrame]:  # fmt: skip
    """Test: users whose last behaviour is among the latest 30% (by time, ties by id);
    validation: a seeded 10% of the others."""
    n = len(last_ts)
    order = np.lexsort((np.arange(n), last_ts))
    test_user = np.zeros(n + 1, dtype=bool)
    test_user[order[n - int(round(n * TEST_USER_FRACTION)) :] + 1] = True
    valid_user = np.zeros(n + 1, dtype=bool)
    if valid:
        rest = np.flatnonzero(~test_user[1:]) + 1
        pick = np.random.default_rng(seed + 1).permutation(rest)
        valid_user[pick[: int(round(len(rest) * VALID_USER_FRACTION))]] = True
    user = samples["user"].to_numpy()
    cols = ["user", "hist_len", "item", "cate", "label", pl.lit(BTAG_CANDIDATE).alias("btag")]
    out = {"train": samples.filter(pl.Series(~test_user[user] & ~valid_user[user])).select(cols)}
    if valid:
        out["valid"] = samples.filter(pl.Series(valid_user[user])).select(cols)
    out["test"] = samples.filter(pl.Series(test_user[user])).select(cols)
    return out


def _write(built: Built, out: Path, *, dataset: str, inputs: list[Path], seed: int,
           valid: bool, overwrite: bool, options: dict[str, Any], dropped: dict[str, int],
           status: Status, warn: Warn) -> dict[str, Any]:  # fmt: skip
    files = [{"name": p.name, "bytes": p.stat().st_size} for p in inputs]
    return write_built(
        out,
        built,
        dataset=dataset,
        seed=seed,
        valid=valid,
        overwrite=overwrite,
        options=options,
        dropped=dropped,
        warnings=(),
        inputs=files,
        late_meta=None,
        status=status,
        warn=warn,
    )


def preprocess_taobao(raw: Path, out: Path, *, max_len: int = 200, seed: int = 1234,
                      valid: bool = True, overwrite: bool = False, status: Status = quiet,
                      warn: Warn = no_warnings) -> dict[str, Any]:  # fmt: skip
    """UserBehavior.csv (or a folder holding it) → data folder; returns the summary."""
    path = raw / tianchi.USER_BEHAVIOR.name if raw.is_dir() else raw
    with output_folder(out, [("raw input", raw)], overwrite):
        with status(f"reading {path.name} and building the samples"):
            built = build_taobao(path, max_len=max_len, seed=seed, valid=valid)
        return _write(built, out, dataset="taobao", inputs=[path], seed=seed, valid=valid,
                      overwrite=overwrite, options={"max_len": max_len}, dropped={},
                      status=status, warn=warn)  # fmt: skip


def preprocess_taobao_ad(raw: Path, out: Path, *, max_len: int = 50, seed: int = 1234,
                         valid: bool = True, overwrite: bool = False,
                         shards: int | None = None, status: Status = quiet,
                         warn: Warn = no_warnings) -> dict[str, Any]:  # fmt: skip
    """The four Alimama files in folder `raw` → data folder; returns the summary."""
    if not raw.is_dir():
        raise DinctlError(f"raw folder {raw} does not exist",
                          hint="run `dinctl download taobao-ad --from ...` first")  # fmt: skip
    with output_folder(out, [("raw folder", raw)], overwrite):
        built, dropped = build_taobao_ad(raw, max_len=max_len, valid=valid,
                                                 shards=shards, status=status)  # fmt: skip
        inputs = [raw / f.name for f in tianchi.AD_FILES]
        return _write(built, out, dataset="taobao-ad", inputs=inputs, seed=seed, valid=valid,
                      overwrite=overwrite, options={"max_len": max_len}, dropped=dropped,
                      status=status, warn=warn)  # fmt: skip
