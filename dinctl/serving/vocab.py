"""Raw ids → model ids, the stored histories of known users, and the out-of-vocabulary rules.

What the model sees for an id the training data never saw:

* an unknown item gets item id 0, the padding row of the item table: an all-zero embedding,
  the same vector padding has (the model never learned anything for the item);
* its category is the request's category for it (`item_cates`) when that category is known,
  else category id 0, the all-zero padding row;
* a history behaviour whose item *and* category are both unknown is dropped (its embedding
  would be all zero; DIN's sum pooling adds nothing for it, and the softmax variant would give
  it weight), so it does not count towards the history length either;
* an unknown candidate is still scored, from its category (if known) and the user's history.

The category of a known item is always the one in the training data. Fields beyond item and
category (a run trained on a feature schema) follow dinctl/serving/fields.py: an unknown value
gets its field's id 0, the same rule; a history behaviour is dropped only when every one of its
ids is 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dinctl.data.schema import FeatureSchema
from dinctl.inputs import INPUTS
from dinctl.serving.errors import RequestError
from dinctl.serving.fields import FieldTables, Unknown, check_names, split_entries
from dinctl.serving.id_table import IdTable

__all__ = ["EncodedRequest", "RawId", "RequestError", "RequestEncoder", "pad_requests", "raw"]

RawId = str | int


@dataclass(frozen=True)
class EncodedRequest:
    """One request in model ids; histories oldest first, at most max_len behaviours."""

    hist_item: np.ndarray  # (T,) int64
    hist_cate: np.ndarray  # (T,) int64
    cand_item: np.ndarray  # (C,) int64
    cand_cate: np.ndarray  # (C,) int64
    unknown_items: list[str]  # raw candidate/history ids not in the training vocabulary
    # the extra inputs of a multi-field model (dinctl/inputs.py), None when it has none
    hist_fields: np.ndarray | None = None  # (T, F) int64
    cand_fields: np.ndarray | None = None  # (C, F) int64
    user_fields: np.ndarray | None = None  # (U,) int64
    context: np.ndarray | None = None  # (C, K) int64
    numeric: np.ndarray | None = None  # (C, M) float32, standardised
    unknown_values: Unknown = field(default_factory=dict)  # field → unseen raw values


def raw(value: RawId) -> str:
    """Raw ids are strings; JSON/Parquet integers stand for their decimal text."""
    if isinstance(value, bool) or not isinstance(value, (str, int, np.integer)):
        raise RequestError(f"an id must be a string or an integer, got {value!r} instead")
    return str(value)


class RequestEncoder:
    """Raw requests → model inputs: the training vocabulary of one dataset plus every known
    user's last max_len behaviours (not `dinctl.data.vocab.Vocab`, the plots' id → name view)."""

    def __init__(
        self,
        raw_items: Sequence[str],
        item_ids: np.ndarray,
        item_cates: np.ndarray,
        cate_names: Sequence[str],
        users: Sequence[str],
        user_lengths: np.ndarray,
        user_hist: np.ndarray,
        max_len: int,
        fields: FieldTables | None = None,
    ) -> None:
        self.max_len = int(max_len)
        self.fields = fields
        self.schema = fields.schema if fields is not None else FeatureSchema()
        ids = np.asarray(item_ids, dtype=np.int64)  # (K,)
        self.n_items = int(ids.max()) if len(ids) else 0
        self.item_cate = np.zeros(self.n_items + 1, dtype=np.int64)  # (N+1,)
        self.item_cate[ids] = np.asarray(item_cates)
        # raw item → (model id, its category), the category as item_cate gives it
        self.item_table = IdTable(
            [str(r) for r in raw_items], np.stack([ids, self.item_cate[ids]], 1)
        )
        self.cate_id: dict[str, int] = {}
        for name, cate in zip(cate_names, item_cates, strict=True):
            self.cate_id.setdefault(str(name), int(cate))
        self.n_cates = max(self.cate_id.values(), default=0)
        self.user_row = {str(u): k for k, u in enumerate(users)}
        self.user_offsets = np.concatenate([[0], np.cumsum(user_lengths)]).astype(np.int64)
        self.user_hist = np.asarray(user_hist, dtype=np.int64)  # users' histories back to back

    @classmethod
    def from_frames(
        cls, items: Any, users: Any, max_len: int, fields: FieldTables | None = None
    ) -> RequestEncoder:
        """From polars frames: items (item, raw_item, cate, cate_name), users (raw_user, items);
        each user keeps the last max_len items of its list."""
        import polars as pl

        tails = users["items"].list.tail(max_len)
        return cls(
            raw_items=items["raw_item"].to_list(),
            item_ids=items["item"].to_numpy().astype(np.int64),
            item_cates=items["cate"].to_numpy().astype(np.int64),
            cate_names=items["cate_name"].to_list(),
            users=users["raw_user"].to_list(),
            user_lengths=tails.list.len().to_numpy().astype(np.int64),
            user_hist=tails.explode().drop_nulls().cast(pl.Int64).to_numpy(),
            max_len=max_len,
            fields=fields,
        )

    def user_history(self, user: str) -> np.ndarray | None:
        """Item ids (T,) of a known user's last max_len behaviours, None for an unknown user."""
        k = self.user_row.get(user)
        if k is None:
            return None
        return self.user_hist[self.user_offsets[k] : self.user_offsets[k + 1]]

    def items(
        self, ids: Sequence[RawId], item_cates: Mapping[str, RawId]
    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Model item and category ids of raw ids, and the raw ids that were unknown."""
        item, cate, missing = self._lookup(ids, item_cates)
        return item, cate, [key for _, key in missing]

    def _lookup(
        self, ids: Sequence[RawId], item_cates: Mapping[str, RawId]
    ) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]:
        """`items`, the unknown ids with their positions: the table answers all ids in one
        call (see dinctl/serving/id_table.py for why)."""
        try:
            (item, cate), absent = self.item_table.lookup(ids)  # (n,) each, 0: not found
        except TypeError:  # an id that is not a str: its text (or refused by raw, in order)
            keys = [k if isinstance(k, str) else raw(k) for k in ids]
            (item, cate), absent = self.item_table.lookup(keys)
        missing = [(j, raw(ids[j])) for j in absent]
        for j, key in missing:
            given = item_cates.get(key)
            cate[j] = self.cate_id.get(raw(given), 0) if given is not None else 0
        return item, cate, missing

    def encode(
        self,
        candidates: Sequence[Any],
        user: RawId | None = None,
        history: Sequence[Any] | None = None,
        item_cates: Mapping[str, RawId] | None = None,
        user_fields: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        numeric: Mapping[str, Any] | None = None,
    ) -> EncodedRequest:
        """A request in model ids; an explicit history wins over the stored one of `user`.
        Candidates and history events are raw item ids or objects {"item": id, field: value}."""
        if len(candidates) == 0:
            raise RequestError("candidates is empty; expected at least one candidate item id")
        schema = self.schema
        beh = schema.extra_behaviour
        cand_ids, cand_extra = split_entries(
            candidates, (*beh, *schema.context, *schema.numeric), "candidate"
        )
        if self.fields is None:  # an item/category model: no field may be sent
            for given, group in ((user_fields, "user_fields"), (context, "context")):
                check_names(given or {}, (), group)
            check_names(numeric or {}, (), "numeric")
        cates = item_cates or {}
        values: Unknown = {}
        row = self.user_row.get(raw(user)) if user is not None else None
        if history is not None:
            hist_ids, hist_extras = split_entries(history, beh, "history event")
            n = len(hist_ids)  # one table look-up for the history and the candidates
            item, cate, missing = self._lookup([*hist_ids, *cand_ids], cates)
            cand_item, cand_cate = item[n:], cate[n:]
            unknown = [key for j, key in missing if j < n]
            cand_unknown = [key for j, key in missing if j >= n]
            hist_item, hist_cate, hist_fields = self._history(
                item[:n], cate[:n], hist_extras, values
            )
        elif user is not None:
            if row is None:
                raise RequestError(
                    f"unknown user {raw(user)!r} and no history given",
                    status=404,
                    hint="send the user's history as a list of item ids, most recent last",
                )
            span = slice(self.user_offsets[row], self.user_offsets[row + 1])
            hist_item, unknown = self.user_hist[span], []
            hist_cate = self.item_cate[hist_item]
            hist_fields = self.fields.hist_fields[span] if self.fields is not None else None
            cand_item, cand_cate, cand_unknown = self.items(cand_ids, cates)
        else:
            raise RequestError("a request needs a user or a history; got neither")
        extra: dict[str, Any] = {}
        if self.fields is not None:
            ctx, num = self.fields.per_candidate(cand_extra, context, numeric, values)
            extra = {
                "hist_fields": hist_fields,
                "cand_fields": self.fields.behaviour(cand_item, cand_extra, "candidate", values),
                "user_fields": self.fields.user(user_fields, row, values),
                "context": ctx,
                "numeric": num,
            }
        return EncodedRequest(
            hist_item=hist_item,
            hist_cate=hist_cate,
            cand_item=cand_item,
            cand_cate=cand_cate,
            unknown_items=list(dict.fromkeys(cand_unknown + unknown)),
            unknown_values=values,
            **extra,
        )

    def _history(
        self, item: np.ndarray, cate: np.ndarray, extras: list[dict[str, Any]], values: Unknown
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """An explicit history's item, category and field ids, from its looked-up item and
        category ids (the last max_len kept ones)."""
        keep = (item != 0) | (cate != 0)  # every id unknown: dropped (see above)
        fields = None
        if self.fields is not None:
            fields = self.fields.behaviour(item, extras, "history event", values)  # (T, F)
            keep |= (fields != 0).any(axis=1)
            fields = fields[keep][-self.max_len :]
        return item[keep][-self.max_len :], cate[keep][-self.max_len :], fields


def pad_requests(requests: Sequence[EncodedRequest]) -> dict[str, np.ndarray]:
    """The scorer's padded inputs (dinctl/inputs.py) for a list of requests: each input the
    requests carry, zero-padded to the longest history (T) and candidate list (C); a field
    group of width 0 stays in (the caller's model signature drops it)."""
    if len(requests) == 1 and len(requests[0].hist_item) > 0:
        return _one_request(requests[0])
    r = len(requests)
    sizes = {
        "R": r,
        "T": max(max((len(q.hist_item) for q in requests), default=1), 1),
        "C": max((len(q.cand_item) for q in requests), default=1),
    }
    out = {"hist_len": np.array([len(q.hist_item) for q in requests], dtype=np.int64)}
    for spec in INPUTS:
        if spec.name == "hist_len":
            continue
        parts = [getattr(q, spec.name) for q in requests]
        if spec.group is not None and (not parts or parts[0] is None):
            continue  # a model without extra fields
        widths = parts[0].shape if parts else (0,) * (len(spec.axes) - 1)
        shape = (r, *(sizes.get(a, w) for a, w in zip(spec.axes[1:], widths, strict=True)))
        grid = np.zeros(shape, dtype=spec.dtype)
        for k, part in enumerate(parts):
            index: tuple[Any, ...] = (k, *(slice(0, n) for n in np.shape(part)))
            grid[index] = part
        out[spec.name] = grid
    return {name: out[name] for name in [f.name for f in INPUTS] if name in out}


def _one_request(q: EncodedRequest) -> dict[str, np.ndarray]:
    """`pad_requests` of one request with a history: nothing to pad, each input a (1, ...)
    view of the request's own array (with the zero-filled copies, padding took 38 µs of a
    request on cold caches, this 13)."""
    out = {}
    for spec in INPUTS:
        part = getattr(q, spec.name) if spec.name != "hist_len" else [len(q.hist_item)]
        if part is not None:
            out[spec.name] = np.asarray(part, dtype=spec.dtype)[None]  # (1, ...)
    out["hist_len"] = out["hist_len"][0]  # (1,)
    return out
