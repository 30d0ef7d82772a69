"""Vectorised history gathering: sample rows (user, hist_len, ...) → padded `Batch` tensors.

The history of a row is the last min(hist_len, max_len) behaviours before position hist_len
of its user's sequence, left-aligned (oldest first, most recent at position L-1), padded with
id 0 only up to the longest history in the batch.

Datasets with more fields (dinctl/data/schema.py) add the extra inputs `dinctl.inputs.INPUTS`
declares: the history's from the behaviour CSR, the user's from the user table, and the
split's own columns (`inputs.ROW_FIELDS`); absent groups are None, so a two-field batch is
exactly what it always was.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from dinctl.data.store import Dataset, Split
from dinctl.inputs import INPUTS, ROW_FIELDS, schema_columns

Tensors = dict[str, Any]  # input name → tensor, or None for an absent field group


@dataclass
class Batch:
    """One mini-batch; every model's forward takes exactly this."""

    user: torch.Tensor  # (B,) int64
    item: torch.Tensor  # (B,) int64, candidate ad
    cate: torch.Tensor  # (B,) int64, candidate category
    hist_item: torch.Tensor  # (B, T) int64, 0 = padding
    hist_cate: torch.Tensor  # (B, T) int64, 0 = padding
    hist_mask: torch.Tensor  # (B, T) bool, True = a real behaviour
    label: torch.Tensor  # (B,) float32
    hist_fields: torch.Tensor | None = None  # (B, T, F) int64 extra behaviour fields, 0 = pad
    cand_fields: torch.Tensor | None = None  # (B, F) int64 the candidate's extra fields
    user_fields: torch.Tensor | None = None  # (B, U) int64, 0 = missing
    context: torch.Tensor | None = None  # (B, K) int64
    numeric: torch.Tensor | None = None  # (B, M) float32, standardised

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        moved: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            moved[f.name] = None if value is None else value.to(device, non_blocking=non_blocking)
        return Batch(**moved)

    def __len__(self) -> int:
        return int(self.item.shape[0])

    def as_requests(self) -> tuple[Tensors, Tensors]:
        """The batch as B requests of one candidate: the user-side and the candidate-side
        inputs of `encode_user` / `score` (dinctl/inputs.py), the latter with C = 1."""
        user: Tensors = {}
        candidates: Tensors = {}
        for f in INPUTS:
            value = getattr(self, f.batch_name)
            if f.name == "hist_len":
                value = self.hist_mask.sum(1)  # (B,) left-aligned windows
            if f.side == "user":
                user[f.name] = value
            else:
                candidates[f.name] = value.unsqueeze(1) if value is not None else None
        return user, candidates


Rows = tuple[Any, ...]  # user, hist_len, item, cate, label (B,) each, then ROW_FIELDS or None
_NUMPY = {"int64": np.int64, "float32": np.float32}


def _stack(columns: list[np.ndarray], dtype: type) -> torch.Tensor | None:
    """Columns (N,) each → (N, F) tensor, None without columns."""
    if not columns:
        return None
    return torch.from_numpy(np.stack([c.astype(dtype) for c in columns], axis=1))


class WindowGatherer:
    """Holds a dataset's behaviour CSR as tensors and cuts batch windows out of it."""

    seq_fields: torch.Tensor | None
    user_table: torch.Tensor | None

    def __init__(self, dataset: Dataset, max_len: int = 100) -> None:
        self.max_len = int(max_len)
        self.offsets = torch.from_numpy(dataset.seq_offsets.astype(np.int64))  # (U+2,)
        items = dataset.seq_items.astype(np.int64)
        cates = dataset.seq_cates.astype(np.int64)
        # one trailing zero so masked positions can safely index something
        self.seq_items = torch.from_numpy(np.concatenate([items, [0]]))  # (S+1,)
        self.seq_cates = torch.from_numpy(np.concatenate([cates, [0]]))  # (S+1,)
        # the extra fields stay int32 (half the memory of a long CSR); batches get int64
        extra = [dataset.seq_fields[name] for name in dataset.schema.extra_behaviour]
        self.seq_fields = _stack([np.concatenate([c, [0]]) for c in extra], np.int32)  # (S+1, F)
        table = dataset.user_table
        self.user_table = (
            torch.from_numpy(table.astype(np.int32)) if table is not None else None
        )  # (U+1, U_f) | None

    def gather(
        self,
        user: torch.Tensor,
        hist_len: torch.Tensor,
        item: torch.Tensor,
        cate: torch.Tensor,
        label: torch.Tensor,
        *row_fields: torch.Tensor | None,
    ) -> Batch:
        """Build a Batch from row tensors of one mini-batch ((B,) each), and the split's extra
        inputs `row_fields` in `inputs.ROW_FIELDS` order (cand_fields (B, F), context (B, K),
        numeric (B, M)), None when absent."""
        extra = {
            f.batch_name: None if value is None else value.to(getattr(torch, f.dtype))
            for f, value in zip(ROW_FIELDS, row_fields, strict=False)  # trailing ones may lack
        }
        user = user.long()
        hist_len = hist_len.long()
        length = hist_len.clamp(max=self.max_len)  # (B,)
        t = max(int(length.max()) if length.numel() else 0, 1)
        start = self.offsets[user] + hist_len - length  # (B,)
        pos = torch.arange(t, device=start.device)  # (T,) on the rows' device (CPU or GPU)
        mask = pos.unsqueeze(0) < length.unsqueeze(1)  # (B, T)
        idx = torch.where(mask, start.unsqueeze(1) + pos.unsqueeze(0), self.seq_items.shape[0] - 1)
        return Batch(
            user=user,
            item=item.long(),
            cate=cate.long(),
            hist_item=self.seq_items[idx],  # (B, T)
            hist_cate=self.seq_cates[idx],  # (B, T)
            hist_mask=mask,
            label=label.float(),
            hist_fields=self.seq_fields[idx].long() if self.seq_fields is not None else None,
            user_fields=self.user_table[user].long() if self.user_table is not None else None,
            **extra,
        )

    def to(self, device: torch.device) -> None:
        """Move the CSR (and the user table) to `device`, so batches are gathered there."""
        _move(self, ("offsets", "seq_items", "seq_cates", "seq_fields", "user_table"), device)


class SplitTensors:
    """A split's rows as tensors, so batches are slices plus one gather."""

    def __init__(self, split: Split) -> None:
        schema = split.schema
        self.name = split.name
        self.offset = split.offset  # a rank's share starts at this row of the whole split
        self.total = split.n_total  # rows in the whole split
        self.is_share = split.total >= 0  # a rank's share (`load_share`), not the whole split
        self.user = torch.from_numpy(split.user.astype(np.int64))
        self.hist_len = torch.from_numpy(split.hist_len.astype(np.int64))
        self.item = torch.from_numpy(split.item.astype(np.int64))
        self.cate = torch.from_numpy(split.cate.astype(np.int64))
        self.label = torch.from_numpy(split.label.astype(np.float32))
        columns = split.fields
        self.fields: Tensors = {  # cand_fields (N, F), context (N, K), numeric (N, M)
            f.name: _stack([columns[n] for n in schema_columns(schema, f)], _NUMPY[f.dtype])
            for f in ROW_FIELDS
        }

    def __len__(self) -> int:
        return int(self.user.shape[0])

    def rows(self, index: torch.Tensor | slice) -> Rows:
        """The arguments of `WindowGatherer.gather` for the rows at `index`."""
        return (
            self.user[index],
            self.hist_len[index],
            self.item[index],
            self.cate[index],
            self.label[index],
            *(value[index] if value is not None else None for value in self.fields.values()),
        )

    def to(self, device: torch.device) -> None:
        """Move every row tensor to `device`."""
        _move(self, ("user", "hist_len", "item", "cate", "label"), device)
        self.fields = {k: v.to(device) if v is not None else None for k, v in self.fields.items()}


def _move(obj: Any, names: tuple[str, ...], device: torch.device) -> None:
    """Move each tensor attribute `names` of `obj` (None stays None) to `device`."""
    for name in names:
        value = getattr(obj, name)
        if value is not None:
            setattr(obj, name, value.to(device))


def iter_batches(
    rows: SplitTensors,
    gatherer: WindowGatherer,
    batch_size: int,
    order: torch.Tensor | None = None,
    start_batch: int = 0,
) -> Iterator[Batch]:
    """Yield Batches over `rows` in `order` (default: file order), from batch `start_batch` on."""
    n = len(rows)
    for b in range(start_batch, (n + batch_size - 1) // batch_size):
        lo, hi = b * batch_size, min(n, (b + 1) * batch_size)
        index = order[lo:hi] if order is not None else slice(lo, hi)
        yield gatherer.gather(*rows.rows(index))
