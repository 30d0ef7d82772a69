"""The schema's extra fields in the builders: per-row columns → ids, sample columns, user table.

A reader hands the builder its extra columns inside the interactions frame, named
`beh:<f>` (a behaviour field of the event, e.g. brand), `ctx:<f>` (a context field of the
sample, e.g. ad slot) and `num:<f>` (a numeric field of the sample), and the user profile
table separately (`user` + one column per user field). Categorical values become dense
1-based ids of their sorted raw values (0 = padding / missing), as items do.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar, Protocol, TypeVar

import numpy as np
import polars as pl

from dinctl.data.ranks import interleave, rank_ids
from dinctl.data.schema import FeatureSchema
from dinctl.errors import DinctlError


class _Built(Protocol):
    """The parts of `builder.Built` that `finish` reads (named here, not imported: builder
    imports this module). A frozen dataclass, so `finish` returns a `replace`d copy."""

    __dataclass_fields__: ClassVar[dict[str, Any]]

    @property
    def sequences(self) -> pl.DataFrame: ...
    @property
    def splits(self) -> dict[str, pl.DataFrame]: ...
    @property
    def summary(self) -> dict[str, Any]: ...
    @property
    def vocab(self) -> dict[str, int]: ...


BuiltT = TypeVar("BuiltT", bound=_Built)

PREFIXES = {"beh:": "behaviour", "ctx:": "context", "num:": "numeric"}


def extra_columns(frame: pl.DataFrame) -> list[str]:
    """The frame's extra field columns, in frame order."""
    return [c for c in frame.columns if c[:4] in PREFIXES]


@dataclass(frozen=True)
class ExtraColumns:
    """The extra columns of the interactions, in the builder's sorted row order."""

    values: dict[str, np.ndarray]  # column → (M,) int64 ids or float64 numbers
    names: dict[str, pl.Series]  # categorical column → raw value of ids 1..V
    item_attr: dict[str, np.ndarray]  # behaviour column → (N+1,) its value at the item's first row


def sort_extra(
    frame: pl.DataFrame, cols: list[str], order: np.ndarray, first_row: np.ndarray
) -> ExtraColumns:
    """Dense ids (categorical) or floats (numeric) of each extra column, rows in `order`;
    `first_row[i-1]` is the file row of item i's first occurrence."""
    values, names, item_attr = {}, {}, {}
    for col in cols:
        if col.startswith("num:"):
            values[col] = frame[col].cast(pl.Float64).to_numpy()[order]
            continue
        ranks, uniq, _ = rank_ids(frame[col])
        values[col] = ranks[order]
        names[col] = uniq.cast(pl.Utf8)
        if col.startswith("beh:"):
            item_attr[col] = np.concatenate([[0], ranks[first_row]])
    return ExtraColumns(values=values, names=names, item_attr=item_attr)


def sample_columns(
    extra: ExtraColumns | None, rows: np.ndarray, negatives: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Per-sample columns (by field name) of samples taken at sorted rows `rows`; with
    `negatives` (windows protocol) each row is a positive followed by its negative, whose
    behaviour fields are the negative item's own (its first row's) and whose context and
    numeric fields are the positive's (the same impression)."""
    if extra is None:
        return {}
    out = {}
    for col, values in extra.values.items():
        own = values[rows]
        if negatives is None:
            out[col[4:]] = own
        elif col.startswith("beh:"):
            out[col[4:]] = interleave(own, extra.item_attr[col][negatives])
        else:
            out[col[4:]] = np.repeat(own, 2)
    return out


def finish(
    built: BuiltT, extra: ExtraColumns | None, offsets: np.ndarray, user_features: Any
) -> BuiltT:
    """`built` with the schema's extra parts: sequences' `hist_<f>` lists, users.parquet,
    values.parquet, the fields' vocabularies and the numeric fields standardised."""
    import pyarrow as pa

    user_fields = (
        tuple(c for c in user_features.columns if c != "user") if user_features is not None else ()
    )
    if extra is None and not user_fields:
        return built
    extra = extra or ExtraColumns({}, {}, {})
    schema = FeatureSchema(
        behaviour=("item", "cate", *(c[4:] for c in extra.values if c.startswith("beh:"))),
        user=user_fields,
        context=tuple(c[4:] for c in extra.values if c.startswith("ctx:")),
        numeric=tuple(c[4:] for c in extra.values if c.startswith("num:")),
    )
    arrow_offsets = pa.array(offsets.astype(np.int32))
    lists = [
        pl.Series(
            f"hist_{c[4:]}", pa.ListArray.from_arrays(arrow_offsets, pa.array(v.astype(np.int32)))
        )
        for c, v in extra.values.items()
        if c.startswith("beh:")
    ]
    sequences = built.sequences.with_columns(lists) if lists else built.sequences
    names = {c[4:]: s for c, s in extra.names.items()}
    users = None
    summary = {**built.summary, "fields": schema.to_dict()}
    if user_features is not None:
        users, user_names = _user_table(built.sequences["raw_user"], user_features)
        names.update(user_names)
        missing = int((users[user_fields[0]] == 0).sum())
        if missing == users.height:
            raise DinctlError(
                "no user of the log has a row in the user feature file (its first ids: "
                f"{', '.join(map(str, user_features['user'].head(3).to_list()))}; the log's: "
                f"{', '.join(map(str, built.sequences['raw_user'].head(3).to_list()))})",
                hint="the profile file's user column must hold the log's user ids",
            )
        summary["users_without_profile"] = missing
    vocab = {**built.vocab, **{name: len(s) + 1 for name, s in names.items()}}
    values = _values_table(names) if names else None
    splits, stats = _standardise(built.splits, schema.numeric)
    if stats:
        summary["numeric"] = stats
    return replace(
        built,
        sequences=sequences,
        splits=splits,
        summary=summary,
        vocab=vocab,
        schema=schema,
        users=users,
        values=values,
    )


def _values_table(names: dict[str, pl.Series]) -> pl.DataFrame:
    """values.parquet: (field, id 1..V, raw value) of every extra categorical field."""
    return pl.concat(
        pl.DataFrame(
            {"field": [name] * len(s), "id": np.arange(1, len(s) + 1, dtype=np.int32), "raw": s}
        )
        for name, s in names.items()
    )


def _user_table(
    raw_user: pl.Series, features: pl.DataFrame
) -> tuple[pl.DataFrame, dict[str, pl.Series]]:
    """users.parquet (user id 1..U + field ids; 0 where the user has no profile row) and the
    raw values of each user field. `features` has one row per raw user (checked by the reader)."""
    fields = [c for c in features.columns if c != "user"]
    ids = {}
    names = {}
    for name in fields:
        ranks, uniq, _ = rank_ids(features[name])
        ids[name] = ranks
        names[name] = uniq.cast(pl.Utf8)
    table = pl.DataFrame({"user": features["user"].cast(pl.Utf8), **ids})
    users = (
        pl.DataFrame(
            {"user": np.arange(1, len(raw_user) + 1, dtype=np.int32), "raw": raw_user.cast(pl.Utf8)}
        )
        .join(table, left_on="raw", right_on="user", how="left", maintain_order="left")
        .select("user", *(pl.col(n).fill_null(0) for n in fields))
    )
    return users, names


def _standardise(
    splits: dict[str, pl.DataFrame], numeric: tuple[str, ...]
) -> tuple[dict[str, pl.DataFrame], dict[str, dict[str, float]]]:
    """Numeric fields → (x − mean) / std with the training split's mean and std (std 1 when
    constant); returns the splits and the statistics (recorded in meta.json's counts)."""
    if not numeric:
        return splits, {}
    stats = {}
    train = splits["train"]
    for name in numeric:
        col = train[name].cast(pl.Float64)
        mean = float(col.mean()) if train.height else 0.0  # type: ignore[arg-type]
        std = float(col.std(ddof=0)) if train.height else 1.0  # type: ignore[arg-type]
        stats[name] = {"mean": mean, "std": std if std > 0 else 1.0}
    out = {
        split: df.with_columns(
            ((pl.col(n).cast(pl.Float64) - stats[n]["mean"]) / stats[n]["std"]).alias(n)
            for n in numeric
        )
        for split, df in splits.items()
    }
    for split, df in out.items():
        for name in numeric:
            _check_finite(df[name], name, split, stats[name])
    return out, stats


def _check_finite(values: pl.Series, name: str, split: str, stat: dict[str, float]) -> None:
    """A standardised value float32 cannot hold (or a non-finite mean/std) is an error naming
    the field and the sample row, never an inf or a silent 0 in the dataset."""
    as32 = values.cast(pl.Float32)
    bad = (~as32.is_finite()).arg_true()
    if len(bad) or not all(np.isfinite([stat["mean"], stat["std"]])):
        row = int(bad[0]) + 1 if len(bad) else 1
        raise DinctlError(
            f"numeric field {name!r}: the {split} sample in row {row} standardises to "
            f"{values[row - 1]:.3g} with the training mean {stat['mean']:.3g} and std "
            f"{stat['std']:.3g}, beyond float32",
            hint="rescale the column (e.g. its log) so its values are of one magnitude",
        )
