"""Dense ids and the sorts behind them, shared by the sample builders and the extra fields:
`rank_ids` (1-based ids of the sorted raw values, 0 = padding), a stable integer argsort, and
`interleave` (positive/negative rows alternating)."""

from __future__ import annotations

import numpy as np
import polars as pl


def rank_ids(col: pl.Series) -> tuple[np.ndarray, pl.Series, np.ndarray]:
    """(dense 1-based rank of every row, the sorted unique values, each one's first row).

    Groups equal values by a 64-bit hash (checked against a second hash; an exact sort is the
    fallback), then sorts only the unique values: sorting 1.7M raw strings is the slow part.
    """
    row_bits = max(1, (len(col) - 1).bit_length())
    if col.dtype.is_integer() and len(col):
        vals = col.to_numpy()
        lo = int(vals.min())
        if int(vals.max()) - lo < max(1 << 22, 2 * len(vals)):  # small id range: a lookup table
            off = vals - lo
            present = np.bincount(off) > 0
            lut = np.cumsum(present)  # (span,) 1-based rank of every present id
            first = np.full(len(present), len(vals), dtype=np.int64)
            np.minimum.at(first, off, np.arange(len(vals), dtype=np.int64))
            uniq = pl.Series(col.name, np.flatnonzero(present) + lo).cast(col.dtype)
            return lut[off].astype(np.int64), uniq, first[present]
    if col.dtype.is_numeric():
        keys = col.to_numpy()
        check = None
    else:  # the top bits of one hash group the rows, a second hash checks the groups
        keys = (col.hash(seed=0).to_numpy() >> np.uint64(row_bits + 2)).astype(np.int64)
        check = col.hash(seed=1).to_numpy()
    order = argsort_stable(keys)  # (M,)
    srt = keys[order]
    new = np.ones(len(keys), dtype=bool)
    new[1:] = srt[1:] != srt[:-1]
    if check is not None:
        chk = check[order]
        if np.any((chk[1:] != chk[:-1]) & ~new[1:]):  # a hash collision: sort exactly instead
            return rank_exact(col)
    group = np.cumsum(new) - 1  # (M,) group of each sorted row
    uniq = col.gather(order[new])  # (G,) one value per group, in hash order
    by_value = uniq.arg_sort().to_numpy()
    rank_of_group = np.empty(len(uniq), dtype=np.int64)
    rank_of_group[by_value] = np.arange(1, len(uniq) + 1)
    ranks = np.empty(len(keys), dtype=np.int64)
    ranks[order] = rank_of_group[group]
    return ranks, uniq.gather(by_value), order[new][by_value]


def rank_exact(col: pl.Series) -> tuple[np.ndarray, pl.Series, np.ndarray]:
    order = col.arg_sort().to_numpy()  # (M,)
    srt = col.gather(order)
    new = np.ones(len(col), dtype=bool)
    if len(col) > 1:
        new[1:] = (srt.slice(1) != srt.slice(0, len(col) - 1)).to_numpy()
    ranks = np.empty(len(col), dtype=np.int64)
    ranks[order] = np.cumsum(new)
    _, first_row = first_index(ranks)
    return ranks, srt.filter(pl.Series(new)), first_row


def argsort_stable(keys: np.ndarray) -> np.ndarray:
    """Stable argsort of integer keys; sorts (key, row) packed into one int64 when they fit.

    np.sort is ~10x faster than np.argsort here, and the row in the low bits keeps it stable.
    """
    n = len(keys)
    row_bits = max(1, (n - 1).bit_length())
    if n and np.issubdtype(keys.dtype, np.integer):
        lo = int(keys.min())
        if int(keys.max()) - lo < (1 << (62 - row_bits)):
            packed = ((keys - lo).astype(np.int64) << row_bits) | np.arange(n, dtype=np.int64)
            packed.sort()
            return packed & np.int64((1 << row_bits) - 1)
    return np.argsort(keys, kind="stable")


def first_index(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique keys, index of each one's first occurrence) — np.unique without hashing."""
    order = argsort_stable(keys)
    srt = keys[order]
    new = np.ones(len(keys), dtype=bool)
    new[1:] = srt[1:] != srt[:-1]
    return srt[new], order[new]


def interleave(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a[0], b[0], a[1], b[1], ... (each positive row followed by its negative)."""
    out = np.empty(2 * len(a), dtype=np.result_type(a, b))
    out[0::2], out[1::2] = a, b
    return out
