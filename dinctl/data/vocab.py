"""Dense ids back to the source data's names: raw item/user ids and category names.

Shared by the figures (and anything else that shows a dataset's ids to a person); reads only
what `dinctl.data.store.Dataset` exposes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dinctl.errors import DinctlError

if TYPE_CHECKING:
    from dinctl.data.store import Dataset


@dataclass(frozen=True)
class Vocab:
    """Raw ids and names of a dataset's dense ids (index 0 = padding)."""

    raw_item: np.ndarray  # (N+1,) object
    cate_name: np.ndarray  # (C+1,) object
    raw_user: np.ndarray  # (U+1,) object
    items_path: Path
    sequences_path: Path

    def item_id(self, raw: str) -> int:
        hits = np.flatnonzero(self.raw_item == raw)
        if hits.size == 0:
            example = self.raw_item[1] if self.raw_item.size > 1 else "?"
            raise DinctlError(
                f"item {raw!r} is not in {self.items_path}",
                hint=f"give a raw item id as in the source data, e.g. {example}",
            )
        return int(hits[0])

    def user_id(self, raw: str) -> int:
        hits = np.flatnonzero(self.raw_user == raw)
        if hits.size == 0:
            known = [u for u in self.raw_user[1:] if u is not None]
            example = known[0] if known else "?"
            raise DinctlError(
                f"user {raw!r} is not in {self.sequences_path}",
                hint=f"give a raw user id as in the source data, e.g. {example}",
            )
        return int(hits[0])


def read_vocab(dataset: Dataset) -> Vocab:
    """Map dense ids back to raw ids and category names (items.parquet, sequences.parquet)."""
    items = dataset.items_frame()
    raw_item = np.full(dataset.n_items + 1, "", dtype=object)
    raw_item[items["item"].to_numpy()] = items["raw_item"].to_list()
    cate_name = np.full(dataset.n_cates + 1, "", dtype=object)
    cate_name[items["cate"].to_numpy()] = items["cate_name"].to_list()
    users = dataset.users_frame()
    raw_user = np.full(dataset.n_users + 1, None, dtype=object)
    raw_user[users["user"].to_numpy()] = users["raw_user"].to_list()
    return Vocab(
        raw_item=raw_item,
        cate_name=cate_name,
        raw_user=raw_user,
        items_path=dataset.path / "items.parquet",
        sequences_path=dataset.path / "sequences.parquet",
    )


def most_active_user(dataset: Dataset) -> int:
    """The user with the most behaviours (ties: the smallest id)."""
    lengths = np.diff(dataset.seq_offsets)[: dataset.n_users + 1]  # (U+1,), index = user id
    return int(np.argmax(lengths))


def user_target(dataset: Dataset, user: int) -> tuple[int, int]:
    """(hist_len, target item) of the user's test target; the last behaviour when not in test."""
    if dataset.has_split("test"):
        test = dataset.split("test")
        rows = np.flatnonzero(test.user == user)
        if rows.size:
            positives = rows[test.label[rows] > 0.5]
            pool = positives if positives.size else rows
            row = pool[np.argmax(test.hist_len[pool])]
            return int(test.hist_len[row]), int(test.item[row])
    start, end = int(dataset.seq_offsets[user]), int(dataset.seq_offsets[user + 1])
    n = end - start
    return max(n - 1, 0), int(dataset.seq_items[end - 1]) if n else 0
