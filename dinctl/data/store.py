"""The on-disk dataset contract (docs/formats.md): write it atomically, read it with validation.

Layout of data/<dataset>/:
  meta.json          format_version, dataset, protocol, seed, valid, counts, vocab, inputs,
                     checksum, files ({name: {bytes, blake2b}} of every data file)
  items.parquet      item:int32 (1..N), raw_item:str, cate:int32 (1..C), cate_name:str, freq:int64
  sequences.parquet  user:int32 (1..U), raw_user:str, items, cates: list[int32], ts: list[int64],
                     hist_<f>: list[int32] per extra behaviour field f (format 2)
  {train,valid,test}.parquet  user:int32, hist_len:int32, item:int32, cate:int32, label:int8,
                     <f>:int32 per extra behaviour (candidate) and context field,
                     <f>:float32 per numeric field (format 2)
  users.parquet      user:int32 (1..U), <f>:int32 per user field (format 2, only with user fields)
  values.parquet     field:str, id:int32, raw:str: the raw value of every id of the extra
                     categorical fields (format 2, only with extra fields)
Id 0 is padding everywhere (and "missing" for user fields). A sample's history is the first
`hist_len` behaviours of its user's sequence; histories are never materialised per sample.
meta.json `schema` (dinctl/data/schema.py) names the fields; a version-1 folder has none and
reads as behaviour (item, cate) only.

Loading verifies each file against its recorded size and blake2b (hashed while it is read)
and the values against the contract (ids within the vocabulary, labels 0/1, hist_len within
the user's sequence, one row per user): a dataset edited after preprocessing is one line,
before anything trains on it. Folders written before per-file checksums existed (no `files`
in meta.json) load with the value checks only.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dinctl.data.schema import FeatureSchema, field_vocab
from dinctl.errors import DinctlError
from dinctl.fsutil import (
    atomic_dir,
    file_digests,
    probe_write,
    read_json,
    sha256_file,
    write_error,
)
from dinctl.locks import folder_lock

FORMAT_VERSION = 2  # 2 adds `schema`; `files` (per-file checksums) is optional in both
READABLE_VERSIONS = (1, 2)
REBUILD_HINT = (
    "the dataset was changed after preprocessing: re-run `dinctl preprocess` with --overwrite"
)
SPLITS = ("train", "valid", "test")
# zstd level 1: MovieLens-20M sequences write in ~3 s instead of ~9 s at the default level
PARQUET_OPTIONS: dict[str, Any] = {"compression": "zstd", "compression_level": 1}
SAMPLE_COLUMNS = ("user", "hist_len", "item", "cate", "label")
ITEM_COLUMNS = ("item", "raw_item", "cate", "cate_name", "freq")
SEQUENCE_COLUMNS = ("user", "raw_user", "items", "cates", "ts")


@dataclass(frozen=True)
class Split:
    """One split's sample rows as numpy arrays (all of length N)."""

    name: str
    user: np.ndarray  # (N,) int32
    hist_len: np.ndarray  # (N,) int32
    item: np.ndarray  # (N,) int32
    cate: np.ndarray  # (N,) int32
    label: np.ndarray  # (N,) float32
    # extra columns by field name: candidate behaviour fields and context (int32), numeric (float32)
    fields: dict[str, np.ndarray] = field(default_factory=dict)
    schema: FeatureSchema = field(default_factory=FeatureSchema)
    offset: int = 0  # the row of the whole split this one starts at (a rank's share)
    total: int = -1  # rows in the whole split; -1: this is the whole split

    def __len__(self) -> int:
        return int(self.user.shape[0])

    @property
    def n_total(self) -> int:
        """Rows in the whole split (more than `len` for a rank's share)."""
        return len(self) if self.total < 0 else self.total


@dataclass(frozen=True)
class Dataset:
    """A preprocessed dataset: behaviours in CSR form plus lazily read sample splits."""

    path: Path
    meta: dict[str, Any]
    seq_offsets: np.ndarray  # (U+2,) int64: user u's behaviours are [offsets[u], offsets[u+1])
    seq_items: np.ndarray  # (total_behaviours,) int32
    seq_cates: np.ndarray  # (total_behaviours,) int32
    item_cate: np.ndarray  # (N+1,) int32, item_cate[0] == 0
    item_freq: np.ndarray  # (N+1,) int64, training frequency n_j, item_freq[0] == 0
    schema: FeatureSchema = field(default_factory=FeatureSchema)
    seq_fields: dict[str, np.ndarray] = field(default_factory=dict)  # extra behaviour: (S,) int32
    user_table: np.ndarray | None = None  # (U+1, len(schema.user)) int32, row 0 zeros
    share: tuple[int, int] | None = None  # (rank, world) when `load_share` read a rank's share
    _splits: dict[str, Split] = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_users(self) -> int:
        return int(self.meta["vocab"]["user"]) - 1

    @property
    def n_items(self) -> int:
        return int(self.meta["vocab"]["item"]) - 1

    @property
    def n_cates(self) -> int:
        return int(self.meta["vocab"]["cate"]) - 1

    @property
    def checksum(self) -> str:
        return str(self.meta["checksum"])

    def cate_freq(self) -> np.ndarray:
        """(C+1,) training frequency per category (sum of its items' n_j)."""
        out = np.zeros(self.n_cates + 1, dtype=np.int64)
        np.add.at(out, self.item_cate, self.item_freq)
        out[0] = 0
        return out

    def cate_sample_freq(self) -> np.ndarray:
        """(C+1,) n_c of Eq. (6) for category tables (see `field_sample_freq`)."""
        return self.field_sample_freq("cate")

    def vocab_size(self, name: str) -> int:
        """Ids + 1 of a categorical field (row count of its embedding table)."""
        return int(self.meta["vocab"][name])

    def field_sample_freq(self, name: str) -> np.ndarray:
        """(V,) n_j of Eq. (6) for any categorical field but `item` (items.parquet has that):
        the number of training samples whose features hold value j, each counted once.

        Behaviour fields: for each (user, value) first seen at position f, the user's samples
        with hist_len > f contain it; a candidate adds its sample when its value is not already
        among the first hist_len behaviours. User and context fields: one per sample.
        """
        n_c = self.vocab_size(name)
        out = np.zeros(n_c, dtype=np.int64)
        if not self.has_split("train"):
            return out
        tr = self.split("train")
        if name in self.schema.user:
            assert self.user_table is not None
            col = self.user_table[tr.user, self.schema.user.index(name)]
            out += np.bincount(col, minlength=n_c)
        elif name in self.schema.context:
            out += np.bincount(tr.fields[name], minlength=n_c)
        else:
            seq = self.seq_cates if name == "cate" else self.seq_fields[name]
            cand = tr.cate if name == "cate" else tr.fields[name]
            out += _behaviour_sample_freq(self.seq_offsets, seq, tr.user, tr.hist_len, cand, n_c)
        out[0] = 0
        return out

    def item_fields(self) -> np.ndarray:
        """(N+1, F) each item's extra behaviour fields as its latest behaviour records them
        (0 for an item no behaviour holds): the candidate fields of an arbitrary item."""
        names = self.schema.extra_behaviour
        out = np.zeros((self.n_items + 1, len(names)), dtype=np.int64)
        for k, name in enumerate(names):
            out[self.seq_items, k] = self.seq_fields[name]  # later positions overwrite earlier
        return out

    def value_names(self, name: str) -> list[str]:
        """Raw value of every id 1.. of an extra categorical field (index 0 = id 1)."""
        frame = _read_frame(self.path, "values.parquet", self.meta, ["field", "id", "raw"])
        rows = frame.filter(frame["field"] == name).sort("id")
        names = ["?"] * (self.vocab_size(name) - 1)
        for i, raw in zip(rows["id"].to_list(), rows["raw"].to_list(), strict=True):
            if 1 <= i <= len(names):
                names[i - 1] = str(raw)
        return names

    def split(self, name: str) -> Split:
        """Read one split (cached)."""
        if name not in SPLITS:
            raise DinctlError(
                f"unknown split {name!r}", hint=f"expected one of {', '.join(SPLITS)}"
            )
        if name not in self._splits and self.share is not None:
            raise DinctlError(
                f"split {name!r} of {self.path} was not read: this is rank {self.share[0]} of "
                f"{self.share[1]}'s share, which holds the train and valid rows only",
                hint="open the dataset whole with load_dataset",
            )
        if name not in self._splits:
            self._splits[name] = _read_split(self.path, name, self.meta, self)
        return self._splits[name]

    def has_split(self, name: str) -> bool:
        return (self.path / f"{name}.parquet").exists()

    def items_frame(self) -> Any:
        """items.parquet as a polars DataFrame."""
        return _read_frame(self.path, "items.parquet", self.meta, list(ITEM_COLUMNS))

    def users_frame(self) -> Any:
        """(user, raw_user) as a polars DataFrame."""
        return _read_frame(self.path, "sequences.parquet", self.meta, ["user", "raw_user"])


def _behaviour_sample_freq(
    offsets: np.ndarray,
    seq: np.ndarray,
    user: np.ndarray,
    hist_len: np.ndarray,
    cand: np.ndarray,
    n_c: int,
) -> np.ndarray:
    """(n_c,) samples holding each value of one behaviour field (its history or candidate)."""
    out = np.zeros(n_c, dtype=np.int64)
    n_beh = int(seq.shape[0])
    beh_user = np.repeat(np.arange(offsets.shape[0] - 1), np.diff(offsets))  # (S,)
    pos = np.arange(n_beh) - offsets[beh_user]  # (S,) position within the user
    key = beh_user.astype(np.int64) * n_c + seq  # (S,) (user, value)
    order = np.argsort(key, kind="stable")  # ties keep position order
    sorted_key = key[order]
    first = np.ones(n_beh, dtype=bool)
    first[1:] = sorted_key[1:] != sorted_key[:-1]
    pair_key, pair_first = sorted_key[first], pos[order][first]  # (P,), (P,)
    pair_user, pair_val = pair_key // n_c, pair_key % n_c
    slot = offsets[user] + hist_len  # (N,) each sample's (user, hist_len) slot
    done = np.concatenate([[0], np.cumsum(np.bincount(slot, minlength=n_beh + 1))])
    after = done[offsets[pair_user + 1]] - done[offsets[pair_user] + pair_first + 1]  # (P,)
    out += np.bincount(pair_val, weights=after, minlength=n_c).astype(np.int64)
    cand_key = user.astype(np.int64) * n_c + cand  # (N,)
    at = np.minimum(np.searchsorted(pair_key, cand_key), max(len(pair_key) - 1, 0))
    found = (pair_key[at] == cand_key) if len(pair_key) else np.zeros(len(user), dtype=bool)
    in_hist = found & (pair_first[at] < hist_len)
    out += np.bincount(cand[~in_hist], minlength=n_c)
    return out


def _require_columns(path: Path, columns: list[str], expected: tuple[str, ...]) -> None:
    missing = [c for c in expected if c not in columns]
    if missing:
        raise DinctlError(
            f"{path} lacks column(s) {', '.join(missing)}",
            hint="re-run `dinctl preprocess` with --overwrite",
        )


def file_digest(data: bytes) -> str:
    """The fast per-file hash recorded in meta.json (blake2b, 128 bits)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


TEXT_COLUMNS = ("raw_item", "raw_user", "cate_name", "field", "raw")


def _read_frame(
    root: Path, name: str, meta: dict[str, Any], columns: list[str], floats: tuple[str, ...] = ()
) -> Any:
    """Read one data file, verified against meta.json's size and hash when it records them."""
    import polars as pl

    path = root / name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DinctlError(f"{path} does not exist", hint="re-run `dinctl preprocess`") from None
    except OSError as err:
        raise DinctlError(f"cannot read {path}: {err.strerror}") from None
    _verify(root, name, meta, len(data), lambda: file_digest(data))
    try:
        df = pl.read_parquet(io.BytesIO(data))
    except Exception:  # noqa: BLE001 - polars/arrow raise several types for a non-Parquet file
        raise DinctlError(f"{path} is not a readable Parquet file", hint=REBUILD_HINT) from None
    _require_columns(path, df.columns, tuple(columns))
    _check_types(path, df, columns, floats)
    return df.select(columns)


def _verify(root: Path, name: str, meta: dict[str, Any], size: int, digest: Any) -> None:
    """Refuse a data file whose `size` or `digest()` (blake2b) differs from meta.json's record."""
    path = root / name
    recorded = (meta.get("files") or {}).get(name)
    if isinstance(recorded, dict):
        changed = size != recorded.get("bytes") or digest() != recorded.get("blake2b")
        # the authoritative record is the folder's sha256 `checksum`; the per-file entries are
        # its fast path, so a file they disagree with is refused only if that disagrees too
        if changed and dataset_checksum(root) != meta.get("checksum"):
            what = (
                f"{size} bytes, meta.json records {recorded.get('bytes')}"
                if size != recorded.get("bytes")
                else "its content hash differs from meta.json's"
            )
            raise DinctlError(
                f"{path} was modified after preprocessing ({what})", hint=REBUILD_HINT
            )


def _parquet_file(root: Path, name: str, meta: dict[str, Any]) -> Any:
    """A data file opened for reading by row group, verified (hashed streamed) first."""
    import pyarrow.parquet as pq

    path = root / name
    try:
        size, digests = file_digests(path, "blake2b")
    except FileNotFoundError:
        raise DinctlError(f"{path} does not exist", hint="re-run `dinctl preprocess`") from None
    except OSError as err:
        raise DinctlError(f"cannot read {path}: {err.strerror}") from None
    _verify(root, name, meta, size, lambda: digests["blake2b"])
    try:
        return pq.ParquetFile(path)
    except Exception:  # noqa: BLE001 - arrow raises several types for a non-Parquet file
        raise DinctlError(f"{path} is not a readable Parquet file", hint=REBUILD_HINT) from None


def _read_parts(
    root: Path,
    name: str,
    meta: dict[str, Any],
    columns: list[str],
    floats: tuple[str, ...] = (),
    rows: tuple[int, int] | None = None,
) -> Iterator[Any]:
    """A data file's row groups as polars frames of `columns`, only those that overlap the
    rows [lo, hi) of `rows` and cut to them: never the whole file in memory at once."""
    import polars as pl

    file = _parquet_file(root, name, meta)
    path = root / name
    _require_columns(path, file.schema_arrow.names, tuple(columns))
    lo, hi = rows if rows is not None else (0, file.metadata.num_rows)
    start = 0
    for group in range(file.metadata.num_row_groups):
        n = file.metadata.row_group(group).num_rows
        if start < hi and start + n > lo:
            df = pl.from_arrow(file.read_row_group(group, columns=columns))
            assert isinstance(df, pl.DataFrame)
            df = df.slice(max(lo - start, 0), min(hi, start + n) - max(lo, start))
            _check_types(path, df, columns, floats)
            yield df
        start += n


def _check_types(path: Path, df: Any, columns: list[str], floats: tuple[str, ...]) -> None:
    """Integer columns (lists of them) but for the text ones and the numeric `floats`."""
    import polars as pl

    for col in columns:
        dtype = df.schema[col]
        if col in TEXT_COLUMNS:
            continue
        inner = dtype.inner if isinstance(dtype, pl.List) else dtype  # type: ignore[attr-defined]
        if col in floats and inner.is_numeric():
            continue
        if not inner.is_integer():
            raise DinctlError(
                f"{path}: column {col!r} has type {dtype}, expected integers", hint=REBUILD_HINT
            )


def _check_range(
    path: Path, col: str, values: np.ndarray, lo: int, hi: int, what: str, first: int = 0
) -> None:
    """Every value in [lo, hi], or one line naming the file, column, row and value (`values`
    start at row `first` + 1 of the file)."""
    if len(values) == 0:
        return
    bad = np.flatnonzero((values < lo) | (values > hi))
    if len(bad):
        raise DinctlError(
            f"{path}: column {col!r} holds {values[bad[0]]} in row {first + bad[0] + 1}, "
            f"expected {what}",
            hint=REBUILD_HINT,
        )


def _refuse_first(path: Path, bad: np.ndarray, describe: Callable[[int], str]) -> None:
    """Raise on the first row where `bad` holds, `describe(row index)` saying what is wrong."""
    rows = np.flatnonzero(bad)
    if len(rows):
        raise DinctlError(f"{path}: {describe(int(rows[0]))}", hint=REBUILD_HINT)


def _read_split(
    root: Path,
    name: str,
    meta: dict[str, Any],
    ds: Dataset | None = None,
    rows: tuple[int, int] | None = None,
) -> Split:
    """One split, validated (against `ds`'s behaviours and items when given); only the rows
    [lo, hi) of `rows`, read by row group, when given."""
    import polars as pl

    path = root / f"{name}.parquet"
    if not path.exists():
        hint = (
            "this dataset was built with --no-valid"
            if name == "valid"
            else "re-run `dinctl preprocess`"
        )
        raise DinctlError(f"split {name!r} is missing: {path} does not exist", hint=hint)
    schema = FeatureSchema.from_dict(meta.get("schema"))
    columns = [*SAMPLE_COLUMNS, *schema.sample_columns()]
    if rows is None:
        df = _read_frame(root, path.name, meta, columns, floats=schema.numeric)
    else:
        parts = list(_read_parts(root, path.name, meta, columns, schema.numeric, rows))
        empty = {c: pl.Float32 if c in schema.numeric else pl.Int32 for c in columns}
        df = pl.concat(parts) if parts else pl.DataFrame(schema=empty)
    first = rows[0] if rows is not None else 0
    cols = {c: df[c].to_numpy() for c in SAMPLE_COLUMNS}
    fields = _split_fields(path, df, meta, schema, first)
    vocab = meta["vocab"]
    for col, what in (("user", "a user id"), ("item", "an item id"), ("cate", "a category id")):
        hi = vocab[col] - 1
        _check_range(path, col, cols[col], 1, hi, f"{what} in 1..{hi}", first)
    _check_range(path, "label", cols["label"], 0, 1, "0 or 1", first)
    _check_range(path, "hist_len", cols["hist_len"], 0, np.iinfo(np.int32).max, "≥ 0", first)
    split = Split(
        name=name,
        user=cols["user"].astype(np.int32, copy=False),
        hist_len=cols["hist_len"].astype(np.int32, copy=False),
        item=cols["item"].astype(np.int32, copy=False),
        cate=cols["cate"].astype(np.int32, copy=False),
        label=cols["label"].astype(np.float32),
        fields=fields,
        schema=schema,
        offset=first,
        total=-1 if rows is None else _parquet_file_rows(path),
    )
    if ds is not None:
        _check_rows(path, split, ds.seq_offsets, ds.item_cate[split.item])
    return split


def _split_fields(
    path: Path, df: Any, meta: dict[str, Any], schema: FeatureSchema, first: int
) -> dict[str, np.ndarray]:
    """A split's extra columns by field name, validated: ids (int32), numbers (float32)."""
    vocab = meta["vocab"]
    fields: dict[str, np.ndarray] = {}
    for col in (*schema.extra_behaviour, *schema.context):
        values = df[col].to_numpy()
        hi = int(vocab[col]) - 1
        lo = 1 if col in schema.behaviour else 0
        _check_range(path, col, values, lo, hi, f"a {col} id in 0..{hi}", first)
        fields[col] = values.astype(np.int32, copy=False)
    for col in schema.numeric:
        values = df[col].cast(float).to_numpy().astype(np.float32)
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            raise DinctlError(
                f"{path}: column {col!r} holds {values[bad[0]]} in row {first + bad[0] + 1}, "
                "expected a finite number",
                hint=REBUILD_HINT,
            )
        fields[col] = values
    return fields


def _check_rows(path: Path, split: Split, offsets: np.ndarray, item_cate: np.ndarray) -> None:
    """Each row's hist_len within its user's sequence (`offsets`: the behaviour CSR) and its
    cate its item's (`item_cate`: (N,) the category items.parquet gives each row's item)."""
    first = split.offset
    length = np.diff(offsets)[split.user]  # (N,) each row's user's sequence length
    _refuse_first(
        path,
        split.hist_len > length,
        lambda i: (
            f"column 'hist_len' holds {split.hist_len[i]} in row {first + i + 1}, past "
            f"the {length[i]} behaviours of user {split.user[i]}"
        ),
    )
    _refuse_first(
        path,
        item_cate != split.cate,
        lambda i: (
            f"column 'cate' holds {split.cate[i]} in row {first + i + 1}, but item "
            f"{split.item[i]} has category {item_cate[i]} in items.parquet"
        ),
    )


def _parquet_file_rows(path: Path) -> int:
    """Rows of a Parquet file, from its footer."""
    import pyarrow.parquet as pq

    try:
        return int(pq.ParquetFile(path).metadata.num_rows)
    except Exception:  # noqa: BLE001 - arrow raises several types for a non-Parquet file
        raise DinctlError(f"{path} is not a readable Parquet file", hint=REBUILD_HINT) from None


def check_trainable(
    dataset: Dataset, split: str = "train", counts: tuple[int, int] | None = None
) -> None:
    """Refuse a split that is empty or has one class (nothing to learn): one line naming it.
    `counts`: (rows, positives) of the whole split, when `dataset` is a rank's share."""
    data = dataset.split(split)
    path = dataset.path / f"{split}.parquet"
    n_rows, positives = counts if counts is not None else (len(data), int(data.label.sum()))
    if n_rows == 0:
        raise DinctlError(
            f"split {split!r} of {dataset.path} is empty ({path} has no rows)",
            hint="preprocess more data, or with other settings (e.g. without --no-valid)",
        )
    if positives in (0, n_rows):
        kind = "positive" if positives else "negative"
        why = (
            "a classifier cannot learn from one class"
            if split == "train"
            else "its AUC is undefined, so no epoch can be chosen on it"
        )
        raise DinctlError(
            f"split {split!r} of {dataset.path} has only {kind} labels ({n_rows} rows of "
            f"{path}): {why}",
            hint="check the label column of your log (or the rating threshold) and re-run "
            "`dinctl preprocess`",
        )


def read_meta(path: Path) -> dict[str, Any]:
    """Read and validate meta.json of a dataset folder."""
    path = Path(path)
    meta_path = path / "meta.json"
    if not path.is_dir():
        raise DinctlError(
            f"dataset folder {path} does not exist", hint="run `dinctl preprocess` first"
        )
    if not meta_path.exists():
        raise DinctlError(
            f"{meta_path} does not exist: {path} is not a dinctl dataset",
            hint="run `dinctl preprocess` first",
        )
    meta = read_json(meta_path, hint=REBUILD_HINT)
    version = meta.get("format_version") if isinstance(meta, dict) else None
    if version not in READABLE_VERSIONS or isinstance(version, bool):
        raise DinctlError(
            f"{meta_path} has format version {version!r}, expected "
            f"{' or '.join(map(str, READABLE_VERSIONS))}",
            hint="re-run `dinctl preprocess` with --overwrite to rebuild it",
        )
    for key in ("vocab", "counts", "checksum"):
        if key not in meta:
            raise DinctlError(
                f"{meta_path} lacks the key {key!r}", hint="re-run `dinctl preprocess`"
            )
    vocab = meta["vocab"]
    for key in ("user", "item", "cate"):
        value = vocab.get(key) if isinstance(vocab, dict) else None
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 2**31:
            raise DinctlError(
                f"{meta_path}: vocab.{key} is {value!r}, expected a positive integer",
                hint=REBUILD_HINT,
            )
    if "files" in meta and not isinstance(meta["files"], dict):
        raise DinctlError(f"{meta_path}: 'files' must be an object", hint=REBUILD_HINT)
    try:
        field_vocab(FeatureSchema.from_dict(meta.get("schema")), vocab)
    except DinctlError as err:
        raise DinctlError(f"{meta_path}: {err.message}", hint=REBUILD_HINT) from None
    return meta


def _item_table(path: Path, meta: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(item_cate, item_freq), each (N+1,), from items.parquet, validated."""
    items = _read_frame(path, "items.parquet", meta, ["item", "cate", "freq"])
    file = path / "items.parquet"
    n_items = int(meta["vocab"]["item"]) - 1
    if items.height != n_items:
        raise DinctlError(
            f"{file} has {items.height} rows, meta.json says {n_items} items",
            hint="re-run `dinctl preprocess` with --overwrite",
        )
    ids = items["item"].to_numpy()
    _check_range(file, "item", ids, 1, n_items, f"an item id in 1..{n_items}")
    if len(np.unique(ids)) != len(ids):
        raise DinctlError(f"{file} lists an item id twice", hint=REBUILD_HINT)
    n_cates = int(meta["vocab"]["cate"]) - 1
    cate = items["cate"].to_numpy()
    _check_range(file, "cate", cate, 1, n_cates, f"a category id in 1..{n_cates}")
    freq = items["freq"].to_numpy()
    _check_range(file, "freq", freq, 0, np.iinfo(np.int64).max, "≥ 0")
    item_cate = np.zeros(n_items + 1, dtype=np.int32)
    item_freq = np.zeros(n_items + 1, dtype=np.int64)
    item_cate[ids] = cate
    item_freq[ids] = freq
    return item_cate, item_freq


def _sequence_table(
    path: Path, meta: dict[str, Any], schema: FeatureSchema
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(offsets (U+2,), items (S,), cates (S,), {extra field: (S,)}) from sequences.parquet."""
    extra = [f"hist_{name}" for name in schema.extra_behaviour]
    seq = _read_frame(path, "sequences.parquet", meta, ["user", "items", "cates", *extra])
    return _behaviour_csr(path / "sequences.parquet", seq, meta, schema)


def _behaviour_csr(
    file: Path, seq: Any, meta: dict[str, Any], schema: FeatureSchema
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The CSR of `_sequence_table` from (some of) sequences.parquet's rows, validated."""
    extra = {f"hist_{name}": name for name in schema.extra_behaviour}
    n_users = int(meta["vocab"]["user"]) - 1
    users = seq["user"].to_numpy()
    _check_range(file, "user", users, 1, n_users, f"a user id in 1..{n_users}")
    uniq, counts = np.unique(users, return_counts=True)
    if len(uniq) != len(users):
        raise DinctlError(
            f"{file} has user {uniq[counts > 1][0]} on {counts.max()} rows, expected one row "
            "per user",
            hint=REBUILD_HINT,
        )
    seq = seq.sort("user")
    lens_items = seq["items"].list.len().fill_null(0).to_numpy()
    for col in ("cates", *extra):
        if not np.array_equal(lens_items, seq[col].list.len().fill_null(0).to_numpy()):
            raise DinctlError(f"{file}: 'items' and {col!r} differ in length", hint=REBUILD_HINT)
    lengths = np.zeros(n_users + 2, dtype=np.int64)
    lengths[seq["user"].to_numpy() + 1] = lens_items
    offsets = np.cumsum(lengths)  # offsets[u] = start of user u; offsets[u+1] = its end
    lists = {}
    for col, name in {"items": "item", "cates": "cate", **extra}.items():
        values = seq[col].explode().drop_nulls().to_numpy().astype(np.int32, copy=False)
        if len(values) != offsets[-1]:
            raise DinctlError(f"{file}: a behaviour list holds a null", hint=REBUILD_HINT)
        hi = int(meta["vocab"][name]) - 1
        _check_range(file, col, values, 1, hi, f"{name} ids in 1..{hi}")
        lists[name] = values
    fields = {name: lists[name] for name in schema.extra_behaviour}
    return offsets, lists["item"], lists["cate"], fields


def _user_table(path: Path, meta: dict[str, Any], schema: FeatureSchema) -> np.ndarray | None:
    """(U+1, F) user field ids from users.parquet (row 0 and users it lacks: 0), validated."""
    if not schema.user:
        return None
    frame = _read_frame(path, "users.parquet", meta, ["user", *schema.user])
    file = path / "users.parquet"
    n_users = int(meta["vocab"]["user"]) - 1
    users = frame["user"].to_numpy()
    _check_range(file, "user", users, 1, n_users, f"a user id in 1..{n_users}")
    if len(np.unique(users)) != len(users):
        raise DinctlError(f"{file} lists a user twice", hint=REBUILD_HINT)
    table = np.zeros((n_users + 1, len(schema.user)), dtype=np.int32)
    for k, name in enumerate(schema.user):
        values = frame[name].to_numpy()
        hi = int(meta["vocab"][name]) - 1
        _check_range(file, name, values, 0, hi, f"a {name} id in 0..{hi}")
        table[users, k] = values
    return table


def load_dataset(path: Path | str) -> Dataset:
    """Open a dataset folder written by `write_dataset`, validating its contract."""
    path = Path(path)
    meta = read_meta(path)
    schema = FeatureSchema.from_dict(meta.get("schema"))
    item_cate, item_freq = _item_table(path, meta)
    offsets, seq_items, seq_cates, seq_fields = _sequence_table(path, meta, schema)
    return Dataset(
        path=path,
        meta=meta,
        seq_offsets=offsets,
        seq_items=seq_items,
        seq_cates=seq_cates,
        item_cate=item_cate,
        item_freq=item_freq,
        schema=schema,
        seq_fields=seq_fields,
        user_table=_user_table(path, meta, schema),
    )


def load_share(path: Path | str, rank: int, world: int) -> Dataset:
    """Rank `rank` of `world`'s share of a dataset folder, to train on under torchrun: the
    rows [n·rank/world, n·(rank+1)/world) of train and valid (read by row group), the
    behaviours of the users those rows name, and items.parquet's n_j (int32 when it fits;
    no `item_cate`: training reads none). Each file is hashed as it streams by, never held
    whole, and the values of the share are validated as `load_dataset` validates all."""
    import polars as pl
    import pyarrow as pa

    path = Path(path)
    meta = read_meta(path)
    schema = FeatureSchema.from_dict(meta.get("schema"))
    splits = {}
    for name in ("train", "valid"):
        if (path / f"{name}.parquet").exists():
            n = _parquet_file_rows(path / f"{name}.parquet")
            share = (n * rank // world, n * (rank + 1) // world)
            splits[name] = _read_split(path, name, meta, rows=share)
    parts = list(splits.values())
    items = np.unique(np.concatenate([s.item for s in parts] or [np.zeros(0, np.int32)]))
    users = np.unique(np.concatenate([s.user for s in parts] or [np.zeros(0, np.int32)]))
    item_freq, cates = _item_freq_share(path, meta, items)
    extra = [f"hist_{name}" for name in schema.extra_behaviour]
    columns = ["user", "items", "cates", *extra]
    seq_parts = [
        df.filter(pl.Series(np.isin(df["user"].to_numpy(), users)))
        for df in _read_parts(path, "sequences.parquet", meta, columns)
    ]
    seq = _concat_frames(seq_parts, columns)
    offsets, seq_items, seq_cates, seq_fields = _behaviour_csr(
        path / "sequences.parquet", seq, meta, schema
    )
    pa.default_memory_pool().release_unused()  # the row groups' buffers, kept by its allocator
    for split in parts:
        _check_rows(
            path / f"{split.name}.parquet",
            split,
            offsets,
            cates[np.searchsorted(items, split.item)],
        )
    return Dataset(
        path=path,
        meta=meta,
        seq_offsets=offsets,
        seq_items=seq_items,
        seq_cates=seq_cates,
        item_cate=np.zeros(0, dtype=np.int32),
        item_freq=item_freq,
        schema=schema,
        seq_fields=seq_fields,
        user_table=_user_table(path, meta, schema),
        share=(rank, world),
        _splits=splits,
    )


def _concat_frames(frames: list[Any], columns: list[str]) -> Any:
    import polars as pl

    if frames:
        return pl.concat(frames)
    lists = {c: pl.List(pl.Int32) for c in columns[1:]}
    return pl.DataFrame(schema={"user": pl.Int32, **lists})


def _item_freq_share(
    path: Path, meta: dict[str, Any], needed: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(item_freq (N+1,), the category of each of the sorted item ids `needed`) from
    items.parquet, streamed by row group and validated as `_item_table` does."""
    file = path / "items.parquet"
    n_items = int(meta["vocab"]["item"]) - 1
    n_cates = int(meta["vocab"]["cate"]) - 1
    freq = np.zeros(n_items + 1, dtype=np.int32)
    seen = np.zeros(n_items + 1, dtype=bool)
    cates = np.zeros(len(needed), dtype=np.int32)
    done = 0
    for df in _read_parts(path, "items.parquet", meta, ["item", "cate", "freq"]):
        ids, cate, f = (df[c].to_numpy() for c in ("item", "cate", "freq"))
        _check_range(file, "item", ids, 1, n_items, f"an item id in 1..{n_items}", done)
        _check_range(file, "cate", cate, 1, n_cates, f"a category id in 1..{n_cates}", done)
        _check_range(file, "freq", f, 0, np.iinfo(np.int64).max, "≥ 0", done)
        if seen[ids].any() or len(np.unique(ids)) != len(ids):
            raise DinctlError(f"{file} lists an item id twice", hint=REBUILD_HINT)
        seen[ids] = True
        if freq.dtype == np.int32 and len(f) and int(f.max()) > np.iinfo(np.int32).max:
            freq = freq.astype(np.int64)
        freq[ids] = f
        at = np.minimum(np.searchsorted(needed, ids), max(len(needed) - 1, 0))
        hit = needed[at] == ids if len(needed) else np.zeros(len(ids), dtype=bool)
        cates[at[hit]] = cate[hit]
        done += len(ids)
    if done != n_items:
        raise DinctlError(
            f"{file} has {done} rows, meta.json says {n_items} items",
            hint="re-run `dinctl preprocess` with --overwrite",
        )
    return freq, cates


# the data files in checksum order; the last two: format 2 only
DATA_FILES = (
    "items.parquet",
    "sequences.parquet",
    *(f"{s}.parquet" for s in SPLITS),
    "users.parquet",
    "values.parquet",
)


def _checksum(sha256: dict[str, str]) -> str:
    """sha256 over (name, file sha256) of the data files present, in `DATA_FILES` order."""
    h = hashlib.sha256()
    for name in DATA_FILES:
        if name in sha256:
            h.update(name.encode())
            h.update(sha256[name].encode())
    return h.hexdigest()


def dataset_checksum(folder: Path) -> str:
    """sha256 over the data files of a dataset folder (names and contents), order-fixed."""
    return _checksum({n: sha256_file(folder / n) for n in DATA_FILES if (folder / n).exists()})


def dataset_meta(
    dataset: str,
    built_summary: dict[str, Any],
    *,
    dropped: dict[str, int],
    vocab: dict[str, Any],
    seed: int,
    valid: bool,
    options: dict[str, Any],
    inputs: list[dict[str, Any]] | None,
    warnings: list[str],
) -> dict[str, Any]:
    """meta.json's fields for a freshly built dataset; its "counts" is the preprocess summary."""
    return {
        "dataset": dataset,
        "protocol": built_summary["protocol"],
        "seed": seed,
        "valid": valid,
        "options": options,
        "counts": {"dataset": dataset, **built_summary, "dropped": dropped},
        "vocab": vocab,
        "inputs": inputs,
        "warnings": warnings,
    }


def write_dataset(
    out: Path,
    *,
    meta: dict[str, Any],
    items: Any,
    sequences: Any,
    splits: dict[str, Any],
    overwrite: bool = False,
    late_meta: Callable[[], dict[str, Any]] | None = None,
    schema: FeatureSchema | None = None,
    users: Any = None,
    values: Any = None,
) -> Path:
    """Write a dataset folder atomically (temporary folder + rename) under its lock; returns `out`.

    `items`, `sequences` and each split are polars DataFrames with the contract's columns
    (plus `hist_<f>` lists and per-sample columns of `schema`'s extra fields); `users`
    (user + user fields) is required when the schema has user fields, `values` (field, id,
    raw) when it has extra categorical fields. `meta` gets format_version, schema and checksum
    filled in here, and the entries `late_meta()` returns (called once the data files are
    written: work still running, such as hashing the inputs, overlaps the writing).
    """
    out = Path(out)
    schema = schema or FeatureSchema()
    field_vocab(schema, meta.get("vocab") or {})
    frames = _contract_frames(schema, items, sequences, splits, users, values)
    with folder_lock(out, what="dataset"), atomic_dir(out, overwrite=overwrite) as tmp:
        # the files are independent and Polars releases the GIL: write them side by side
        with ThreadPoolExecutor(max_workers=2) as pool:
            jobs = [
                pool.submit(_write_frame, df, tmp / f"{name}.parquet", out / f"{name}.parquet")
                for name, df in frames.items()
            ]
            written = [job.result() for job in jobs]  # (name, {bytes, blake2b}, sha256)
        files = {name: entry for name, entry, _ in written}
        if late_meta is not None:
            meta = {**meta, **late_meta()}
        full = {
            "format_version": FORMAT_VERSION,
            **meta,
            "schema": schema.to_dict(),
            "checksum": _checksum({name: sha for name, _, sha in written}),
            "files": dict(sorted(files.items())),
        }
        (tmp / "meta.json").write_text(json.dumps(full, indent=2, sort_keys=False) + "\n")
    return out


def _contract_frames(
    schema: FeatureSchema,
    items: Any,
    sequences: Any,
    splits: dict[str, Any],
    users: Any,
    values: Any,
) -> dict[str, Any]:
    """The files to write, checked for the contract's columns and cast to its types."""
    import polars as pl

    hist = tuple(f"hist_{name}" for name in schema.extra_behaviour)
    _require_columns(Path("items"), items.columns, ITEM_COLUMNS)
    _require_columns(Path("sequences"), sequences.columns, (*SEQUENCE_COLUMNS, *hist))
    ints = (*schema.extra_behaviour, *schema.context)
    for name, df in splits.items():
        if name not in SPLITS:
            raise DinctlError(f"unknown split {name!r}")
        _require_columns(Path(name), df.columns, (*SAMPLE_COLUMNS, *schema.sample_columns()))
    frames = {
        "items": items.select(
            pl.col("item").cast(pl.Int32),
            pl.col("raw_item").cast(pl.Utf8),
            pl.col("cate").cast(pl.Int32),
            pl.col("cate_name").cast(pl.Utf8),
            pl.col("freq").cast(pl.Int64),
        ),
        "sequences": sequences.select(
            pl.col("user").cast(pl.Int32),
            pl.col("raw_user").cast(pl.Utf8),
            pl.col("items").cast(pl.List(pl.Int32)),
            pl.col("cates").cast(pl.List(pl.Int32)),
            pl.col("ts").cast(pl.List(pl.Int64)),
            *(pl.col(c).cast(pl.List(pl.Int32)) for c in hist),
        ),
    }
    for name, df in splits.items():
        frames[name] = df.select(
            pl.col("user").cast(pl.Int32),
            pl.col("hist_len").cast(pl.Int32),
            pl.col("item").cast(pl.Int32),
            pl.col("cate").cast(pl.Int32),
            pl.col("label").cast(pl.Int8),
            *(pl.col(c).cast(pl.Int32) for c in ints),
            *(pl.col(c).cast(pl.Float32) for c in schema.numeric),
        )
    if schema.user:
        if users is None:
            raise DinctlError("the schema has user fields but no users table was given")
        _require_columns(Path("users"), users.columns, ("user", *schema.user))
        frames["users"] = users.select(pl.col(c).cast(pl.Int32) for c in ("user", *schema.user))
    if (schema.extra_behaviour or schema.user or schema.context) and values is not None:
        _require_columns(Path("values"), values.columns, ("field", "id", "raw"))
        frames["values"] = values.select(
            pl.col("field").cast(pl.Utf8), pl.col("id").cast(pl.Int32), pl.col("raw").cast(pl.Utf8)
        )
    return frames


def _write_frame(df: Any, tmp: Path, final: Path) -> tuple[str, dict[str, Any], str]:
    """Write one Parquet file; returns (name, {bytes, blake2b}, sha256) of the bytes written
    (read back once); a write error names `final`."""
    try:
        df.write_parquet(tmp, **PARQUET_OPTIONS)
        size, digests = file_digests(tmp, "blake2b", "sha256")  # read back in chunks
    except OSError as err:
        raise write_error(final, err) from None
    except Exception as err:  # noqa: BLE001 - polars wraps I/O errors in its own types
        code = re.search(r"os error (\d+)", str(err))
        if code is None:
            full = probe_write(tmp.parent)  # Polars says "Invalid thrift" on a full disk
            if full is None or full.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise
            raise write_error(final, full) from None
        errno_ = int(code.group(1))
        raise write_error(final, OSError(errno_, os.strerror(errno_))) from None
    return tmp.name, {"bytes": size, "blake2b": digests["blake2b"]}, digests["sha256"]
