"""The fields beyond item and category at serving time: raw values → ids, defaults, the rules.

A model trained on a dataset with a feature schema (dinctl/data/schema.py) takes, per request,
the extra behaviour fields of each history event and candidate, the user fields, and the
context and numeric fields of each candidate. Where each value comes from:

* behaviour fields (brand, ...): the event's / candidate's own (`{"item": ..., "brand": ...}`),
  else the item's default, else 0 for an unknown item. A history event's default is the
  item's latest behaviour in the data (a stored user history keeps its own events' values); a
  candidate's is what training candidates carry: the field's one value when every training
  candidate has the same (taobao-ad's btag "ad"), else the item's last training sample, else
  its latest behaviour;
* user fields: `user_fields`, else the known user's row of users.parquet; else the request is
  refused (422 naming the field);
* context and numeric fields: the candidate's own, else the request's `context` / `numeric`;
  else refused. Numeric values are standardised with the training split's mean and std, as
  preprocessing did: float32((x − mean) / std) computed in float64.

A raw value the training data never saw gets id 0, the field's padding/missing row (an all-zero
embedding), and is reported in `unknown_values`, as unknown items are.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dinctl.data.schema import FeatureSchema
from dinctl.serving.errors import RequestError

Entry = Any  # a raw id, or an object {"item": id, field: value, ...}
Unknown = dict[str, list[str]]  # field → raw values the training data never saw


def raw_value(value: Any, where: str) -> str:
    """A categorical raw value as text (an integer stands for its decimal text)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, np.integer)):
        raise RequestError(
            f"{where}: expected a string or an integer, got {value!r} instead",
            hint="send the raw value as the data had it (a category, a code)",
        )
    return str(value)


NO_FIELDS: dict[str, Any] = {}  # a bare id's extra values (never written to)


def split_entries(
    entries: Sequence[Entry], allowed: Sequence[str], what: str
) -> tuple[list[Any], list[dict[str, Any]]]:
    """Raw item ids and each entry's extra values; an object entry needs `item` and may carry
    only the `allowed` fields."""
    if {type(e) for e in entries} <= {str, int}:  # bare ids: nothing to split
        return list(entries), [NO_FIELDS] * len(entries)  # one shared, read-only empty dict
    ids: list[Any] = []
    extras: list[dict[str, Any]] = []
    for j, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            ids.append(entry)
            extras.append({})
            continue
        if "item" not in entry:
            raise RequestError(
                f"{what} {j}: an object needs the key 'item'",
                hint=f'send {{"item": id, ...}}; fields: {", ".join(allowed) or "none"}',
            )
        unknown = [k for k in entry if k != "item" and k not in allowed]
        if unknown:
            raise RequestError(
                f"{what} {j}: {unknown[0]!r} is not a field of this model's {what}s",
                hint=f"expected among {', '.join(['item', *allowed])}",
            )
        ids.append(entry["item"])
        extras.append({k: v for k, v in entry.items() if k != "item"})
    return ids, extras


@dataclass
class FieldTables:
    """A dataset's extra fields as the encoder needs them."""

    schema: FeatureSchema
    values: dict[str, dict[str, int]]  # field → raw value → id
    item_fields: np.ndarray  # (N+1, F) a history event's default fields per item
    cand_fields: np.ndarray  # (N+1, F) a candidate's default fields per item
    user_fields: np.ndarray  # (users, U) in the RequestEncoder's user order
    hist_fields: np.ndarray  # (S, F) the stored histories' fields, back to back
    numeric_stats: dict[str, tuple[float, float]]  # name → (mean, std)

    @classmethod
    def from_frames(
        cls, schema: FeatureSchema, items: Any, users: Any, values: Any, stats: Any, max_len: int
    ) -> FieldTables:
        """From the serving frames (dinctl/serving/bundle.py layout) and meta's numeric stats."""
        import polars as pl

        beh = schema.extra_behaviour
        n_items = int(items["item"].max()) if items.height else 0
        defaults = {p: np.zeros((n_items + 1, len(beh)), dtype=np.int64) for p in ("hist", "cand")}
        for prefix, default in defaults.items():
            for k, name in enumerate(beh):
                default[items["item"].to_numpy(), k] = items[f"{prefix}_{name}"].to_numpy()
        hist = [
            users[f"hist_{n}"].list.tail(max_len).explode().drop_nulls().cast(pl.Int64).to_numpy()
            for n in beh
        ]
        table: dict[str, dict[str, int]] = {n: {} for n in (*beh, *schema.user, *schema.context)}
        for name, i, value in values.select("field", "id", "raw").iter_rows():
            if name in table:
                table[name][str(value)] = int(i)
        missing = [n for n in schema.numeric if n not in (stats or {})]
        if missing:
            from dinctl.errors import DinctlError

            raise DinctlError(
                f"the dataset records no training mean/std for the numeric field {missing[0]!r}",
                hint="re-run `dinctl preprocess` with --overwrite",
            )
        return cls(
            schema=schema,
            values=table,
            item_fields=defaults["hist"],
            cand_fields=defaults["cand"],
            user_fields=np.stack(
                [users[n].to_numpy().astype(np.int64) for n in schema.user], axis=1
            )
            if schema.user
            else np.zeros((users.height, 0), dtype=np.int64),
            hist_fields=np.stack(hist, axis=1) if beh else np.zeros((0, 0), dtype=np.int64),
            numeric_stats={
                n: (float(stats[n]["mean"]), float(stats[n]["std"])) for n in schema.numeric
            },
        )

    def lookup(self, name: str, value: Any, where: str, unknown: Unknown) -> int:
        """The id of a raw value of field `name`; 0 (added to `unknown`) when never seen."""
        key = raw_value(value, f"{where} {name}")
        found = self.values[name].get(key)
        if found is None:
            seen = unknown.setdefault(name, [])
            if key not in seen:
                seen.append(key)
            return 0
        return found

    def behaviour(
        self, item: np.ndarray, extras: list[dict[str, Any]], what: str, unknown: Unknown
    ) -> np.ndarray:
        """(n, F) extra behaviour ids: the entry's own value, else the item's default for a
        `what` ("candidate" or "history event"), else 0."""
        names = self.schema.extra_behaviour
        table = self.cand_fields if what == "candidate" else self.item_fields
        out = table[item]  # (n, F), a new array; unknown items (id 0) get row 0: zeros
        for j, given in enumerate(extras):
            for k, name in enumerate(names):
                if name in given:
                    out[j, k] = self.lookup(name, given[name], f"{what} {j}", unknown)
        return out

    def user(
        self, given: Mapping[str, Any] | None, row: int | None, unknown: Unknown
    ) -> np.ndarray:
        """(U,) user field ids: `user_fields`, else the known user's stored row."""
        given = dict(given or {})
        check_names(given, self.schema.user, "user_fields")
        out = np.zeros(len(self.schema.user), dtype=np.int64)
        for k, name in enumerate(self.schema.user):
            if name in given:
                out[k] = self.lookup(name, given[name], "user_fields", unknown)
            elif row is not None:
                out[k] = self.user_fields[row, k]
            else:
                raise missing_field("user field", name, "user_fields")
        return out

    def per_candidate(
        self, extras: list[dict[str, Any]], context: Mapping[str, Any] | None,
        numeric: Mapping[str, Any] | None, unknown: Unknown,
    ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """(C, K) context ids and (C, M) standardised numeric values of the candidates."""
        shared_ctx, shared_num = dict(context or {}), dict(numeric or {})
        check_names(shared_ctx, self.schema.context, "context")
        check_names(shared_num, self.schema.numeric, "numeric")
        ctx = self._columns(extras, shared_ctx, self.schema.context, "context", np.int64,
                            lambda name, value, where: self.lookup(name, value, where, unknown))
        num = self._columns(extras, shared_num, self.schema.numeric, "numeric", np.float32,
                            self.standardise)  # fmt: skip
        return ctx, num

    @staticmethod
    def _columns(extras: list[dict[str, Any]], shared: dict[str, Any], names: Sequence[str],
                 key: str, dtype: Any, convert: Callable[[str, Any, str], Any]) -> np.ndarray:
        """(C, len(names)): each candidate's own value of each field, else the request's
        shared one, converted once per request (not once per candidate)."""
        out = np.zeros((len(extras), len(names)), dtype=dtype)
        done: dict[str, Any] = {}  # shared values converted so far
        for j, own in enumerate(extras):
            for k, name in enumerate(names):
                if name not in own and name in done:
                    out[j, k] = done[name]
                    continue
                value = own[name] if name in own else shared.get(name)
                if value is None:
                    raise missing_field(f"{key} field", name, key)
                out[j, k] = convert(name, value, f"candidate {j}")
                if name not in own:
                    done[name] = out[j, k]
        return out

    def standardise(self, name: str, value: Any, where: str) -> float:
        """(x − mean) / std with the training split's statistics, as preprocessing did."""
        hint = f"send the raw {name} (it is standardised with the training mean and std)"
        number = not isinstance(value, bool) and isinstance(value, (int, float))
        if not number or (isinstance(value, float) and not math.isfinite(value)):
            raise RequestError(f"{where} {name}: expected a finite number, got {value!r} "
                               "instead", hint=hint)  # fmt: skip
        mean, std = self.numeric_stats[name]
        try:  # an integer too large for a float raises OverflowError
            with np.errstate(over="ignore", invalid="ignore"):
                scaled = np.float32((float(value) - mean) / std)
        except OverflowError:
            scaled = np.float32("inf")
        if not math.isfinite(scaled):  # beyond float32 once standardised, as training data is
            raise RequestError(
                f"{where} {name}: {str(value)[:40]} is out of range (standardised with the "
                f"training mean {mean:.3g} and std {std:.3g}, it exceeds float32)",
                hint=hint,
            )
        return float(scaled)


def check_names(given: Mapping[str, Any], names: Sequence[str], group: str) -> None:
    extra = [k for k in given if k not in names]
    if extra:
        raise RequestError(
            f"{group}: {extra[0]!r} is not one of this model's fields",
            hint=f"expected among {', '.join(names) or 'none (drop the key)'}",
        )


def missing_field(kind: str, name: str, key: str) -> RequestError:
    """The one line for a field the model needs and the request lacks."""
    where = "the candidate's own value" if key != "user_fields" else "a known user"
    return RequestError(
        f"the {kind} {name!r} is missing; this model needs it",
        hint=f'send "{key}": {{"{name}": ...}} (or {where})',
    )
