"""Vectorised history gathering: sample rows (user, hist_len, ...) → padded `Batch` tensors.

The history of a row is the last min(hist_len, max_len) behaviours before position hist_len
of its user's sequence, left-aligned (oldest first, most recent at position L-1), padded with
id 0 only up to the longest history in the batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields

import numpy as np
import torch

from dinctl.data.store import Dataset, Split


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

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return Batch(
            **{
                f.name: getattr(self, f.name).to(device, non_blocking=non_blocking)
                for f in fields(self)
            }
        )

    def __len__(self) -> int:
        return int(self.item.shape[0])


class WindowGatherer:
    """Holds a dataset's behaviour CSR as tensors and cuts batch windows out of it."""

    def __init__(self, dataset: Dataset, max_len: int = 100) -> None:
        self.max_len = int(max_len)
        self.offsets = torch.from_numpy(dataset.seq_offsets.astype(np.int64))  # (U+2,)
        items = dataset.seq_items.astype(np.int64)
        cates = dataset.seq_cates.astype(np.int64)
        # one trailing zero so masked positions can safely index something
        self.seq_items = torch.from_numpy(np.concatenate([items, [0]]))  # (S+1,)
        self.seq_cates = torch.from_numpy(np.concatenate([cates, [0]]))  # (S+1,)

    def gather(
        self,
        user: torch.Tensor,
        hist_len: torch.Tensor,
        item: torch.Tensor,
        cate: torch.Tensor,
        label: torch.Tensor,
    ) -> Batch:
        """Build a Batch from row tensors of one mini-batch (all shape (B,))."""
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
        )


class SplitTensors:
    """A split's rows as tensors, so batches are slices plus one gather."""

    def __init__(self, split: Split) -> None:
        self.name = split.name
        self.user = torch.from_numpy(split.user.astype(np.int64))
        self.hist_len = torch.from_numpy(split.hist_len.astype(np.int64))
        self.item = torch.from_numpy(split.item.astype(np.int64))
        self.cate = torch.from_numpy(split.cate.astype(np.int64))
        self.label = torch.from_numpy(split.label.astype(np.float32))

    def __len__(self) -> int:
        return int(self.user.shape[0])

    def rows(self, index: torch.Tensor | slice) -> tuple[torch.Tensor, ...]:
        return (
            self.user[index],
            self.hist_len[index],
            self.item[index],
            self.cate[index],
            self.label[index],
        )


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
