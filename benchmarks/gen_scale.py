"""A seeded, paper-shaped synthetic dataset for `train --shard-embeddings` (issue 23).

The paper's data (§5, Table 1) has 0.6 billion goods ids and long-tailed behaviours: a huge
item vocabulary of which a small head is seen often and most ids rarely or never. This writes a
dinctl dataset folder (the Amazon layout: per-user sequences, every target with one uniform
negative) with an item table of `--items` rows (default 20 million), categories of Zipf-like
size, behaviours drawn from a Zipf(`--zipf`) popularity over all ids, so that the embedding
tables, not the samples, dominate memory, as at the paper's scale. `freq` (MBA's n_j) counts
an id's occurrences in the training samples' candidates and behaviours.

    python benchmarks/gen_scale.py --out benchmarks/out/scale-20m [--items 20000000]
        [--users 20000] [--cates 10000] [--seed 23]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl


def zipf_ids(rng: np.random.Generator, n_ids: int, size: int, a: float) -> np.ndarray:
    """`size` ids in 1..n_ids with P(rank r) ∝ r^-a, ranks shuffled over the ids (int32)."""
    u = rng.random(size)
    # inverse CDF of the continuous power law on [1, n_ids + 1), good enough for a tail
    ranks = ((n_ids + 1) ** (1 - a) * u + (1 - u)) ** (1 / (1 - a))
    ranks = np.minimum(ranks.astype(np.int64), n_ids)  # 1..n_ids
    # a fixed pseudo-random permutation of ranks to ids (multiplicative hash mod n_ids)
    return (((ranks - 1) * 2_654_435_761) % n_ids + 1).astype(np.int32)


def sequences(
    rng: np.random.Generator, n_users: int, n_items: int, a: float
) -> tuple[np.ndarray, np.ndarray]:
    """(offsets (U+1,), items (S,)) of every user's behaviours, 5 to 60 each (log-normal)."""
    lengths = np.clip(rng.lognormal(np.log(14), 0.6, n_users).astype(np.int64), 5, 60)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return offsets, zipf_ids(rng, n_items, int(offsets[-1]), a)


def sample_rows(
    rng: np.random.Generator,
    offsets: np.ndarray,
    seq: np.ndarray,
    n_items: int,
    item_cate: np.ndarray,
) -> dict[str, pl.DataFrame]:
    """Amazon protocol: target k (history 0..k-1) of each user, k ≥ 1; the last is test, the
    one before valid; each positive gets one uniform negative."""
    lengths = np.diff(offsets)
    user = np.repeat(np.arange(1, len(lengths) + 1, dtype=np.int32), lengths - 1)
    k = (np.arange(len(user)) - np.repeat(np.cumsum(lengths - 1) - (lengths - 1), lengths - 1)) + 1
    pos = seq[offsets[user - 1] + k]
    neg = rng.integers(1, n_items + 1, size=len(user)).astype(np.int32)
    last = k == lengths[user - 1] - 1
    split = np.where(last, 2, np.where(k == lengths[user - 1] - 2, 1, 0))
    frames = {}
    for code, name in enumerate(("train", "valid", "test")):
        keep = split == code
        # each positive followed by its negative, the users in order: `preprocess`'s layout,
        # so a rank's share of the rows names about 1/W of the users
        both = np.stack([pos[keep], neg[keep]], axis=1).reshape(-1)
        frames[name] = pl.DataFrame(
            {
                "user": np.repeat(user[keep], 2),
                "hist_len": np.repeat(k[keep].astype(np.int32), 2),
                "item": both,
                "cate": item_cate[both],
                "label": np.tile(np.array([1, 0], dtype=np.int8), int(keep.sum())),
            }
        )
    return frames


def training_freq(train: pl.DataFrame, offsets: np.ndarray, seq: np.ndarray, n: int) -> np.ndarray:
    """(n+1,) occurrences of each id in the training rows' candidates and behaviours."""
    # each positive's negative has the same history: count the positives' twice
    users = train["user"].to_numpy()[0::2].astype(np.int64)
    lens = train["hist_len"].to_numpy()[0::2].astype(np.int64)
    starts = offsets[users - 1]
    index = np.repeat(starts - np.cumsum(lens) + lens, lens) + np.arange(int(lens.sum()))
    hist = seq[index]
    return np.bincount(np.concatenate([hist, hist, train["item"].to_numpy()]), minlength=n + 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("benchmarks/out/scale-20m"))
    p.add_argument("--items", type=int, default=20_000_000)
    p.add_argument("--users", type=int, default=20_000)
    p.add_argument("--cates", type=int, default=10_000)
    p.add_argument("--zipf", type=float, default=1.1)
    p.add_argument("--seed", type=int, default=23)
    args = p.parse_args()
    t0 = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    n_items, n_cates = args.items, args.cates
    # category sizes long-tailed too: item i's category by a Zipf draw over the categories
    item_cate = np.zeros(n_items + 1, dtype=np.int32)
    item_cate[1:] = zipf_ids(rng, n_cates, n_items, 1.2)
    offsets, seq = sequences(rng, args.users, n_items, args.zipf)
    splits = sample_rows(rng, offsets, seq, n_items, item_cate)
    freq = training_freq(splits["train"], offsets, seq, n_items)
    write(args, item_cate, offsets, seq, splits, freq)
    print(
        f"wrote {args.out}: {n_items:,} items ({int((freq > 0).sum()):,} seen in training), "
        f"{args.users:,} users, {len(seq):,} behaviours, {len(splits['train']):,} train rows "
        f"in {time.perf_counter() - t0:.0f} s"
    )


def write(
    args: Any,
    item_cate: np.ndarray,
    offsets: np.ndarray,
    seq: np.ndarray,
    splits: dict[str, pl.DataFrame],
    freq: np.ndarray,
) -> None:
    """The dataset folder through dinctl's own writer (validated like any dataset)."""
    from dinctl.data.store import write_dataset

    n_items, n_users = args.items, args.users
    ids = pl.int_range(1, n_items + 1, dtype=pl.Int32, eager=True)
    items = pl.DataFrame(
        {
            "item": ids,
            "raw_item": ids.cast(pl.Utf8),
            "cate": item_cate[1:],
            "cate_name": pl.Series(item_cate[1:]).cast(pl.Utf8),
            "freq": freq[1:].astype(np.int64),
        }
    )
    lengths = np.diff(offsets)
    user = np.repeat(np.arange(1, n_users + 1, dtype=np.int32), lengths)
    flat = pl.DataFrame({"user": user, "items": seq, "cates": item_cate[seq]})
    seqs = flat.group_by("user", maintain_order=True).agg(pl.col("items"), pl.col("cates"))
    seqs = seqs.with_columns(
        raw_user=pl.col("user").cast(pl.Utf8),
        ts=pl.col("items").list.eval(pl.int_range(pl.len(), dtype=pl.Int64)),
    ).select("user", "raw_user", "items", "cates", "ts")
    meta = {
        "dataset": "scale-synthetic",
        "protocol": "amazon",
        "seed": args.seed,
        "valid": True,
        "counts": {
            "users": n_users,
            "items": n_items,
            "cates": args.cates,
            "behaviours": len(seq),
            **{name: len(df) for name, df in splits.items()},
        },
        "vocab": {"user": n_users + 1, "item": n_items + 1, "cate": args.cates + 1},
        "inputs": {},
    }
    write_dataset(args.out, meta=meta, items=items, sequences=seqs, splits=splits, overwrite=True)


if __name__ == "__main__":
    main()
