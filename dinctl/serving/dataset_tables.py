"""A preprocessed dataset's tables as serving needs them: the items with their fields, each
user's latest history, the extra fields' values, the numeric stats, and the request encoder
built from them (export writes these tables into a bundle; a RUN builds its encoder from them)."""

from __future__ import annotations

from typing import Any

from dinctl.serving.fields import FieldTables
from dinctl.serving.vocab import RequestEncoder


def user_histories(ds: Any, max_len: int) -> Any:
    """(raw_user, items) of a preprocessed dataset, each user's last max_len items; with a
    feature schema also hist_<f> (the same behaviours' extra fields) and the user fields."""
    import polars as pl

    beh = [f"hist_{n}" for n in ds.schema.extra_behaviour]
    users = pl.read_parquet(
        ds.path / "sequences.parquet", columns=["user", "raw_user", "items", *beh]
    )
    users = users.with_columns(pl.col(c).list.tail(max_len) for c in ("items", *beh))
    if ds.schema.user:
        table = ds.user_table[users["user"].to_numpy()]  # (users, U)
        users = users.with_columns(
            pl.Series(name, table[:, k], dtype=pl.Int32) for k, name in enumerate(ds.schema.user)
        )
    return users.drop("user")


def items_with_fields(ds: Any) -> Any:
    """items.parquet's frame plus, per extra behaviour field f, `hist_<f>` (the item's value in
    its latest behaviour) and `cand_<f>` (a candidate's default, dinctl/serving/fields.py)."""
    import polars as pl

    items = ds.items_frame()
    beh = ds.schema.extra_behaviour
    if not beh:
        return items
    latest = ds.item_fields()  # (N+1, F)
    cand = latest.copy()
    if ds.has_split("train"):
        train = ds.split("train")
        for k, name in enumerate(beh):
            values = train.fields[name]
            if len(values) and (values == values[0]).all():  # one value for every candidate
                cand[1:, k] = values[0]
            else:
                cand[train.item, k] = values  # the item's last training sample wins
    ids = items["item"].to_numpy()
    return items.with_columns(
        *(pl.Series(f"hist_{n}", latest[ids, k], dtype=pl.Int32) for k, n in enumerate(beh)),
        *(pl.Series(f"cand_{n}", cand[ids, k], dtype=pl.Int32) for k, n in enumerate(beh)),
    )


def values_frame(ds: Any) -> Any:
    """(field, id, raw) of every extra categorical field of the dataset (values.parquet)."""
    import polars as pl

    columns: dict[str, list[Any]] = {"field": [], "id": [], "raw": []}
    for name in (*ds.schema.extra_behaviour, *ds.schema.user, *ds.schema.context):
        raw = ds.value_names(name)  # ids 1..V
        columns["field"] += [name] * len(raw)
        columns["id"] += list(range(1, len(raw) + 1))
        columns["raw"] += raw
    return pl.DataFrame(columns, schema={"field": pl.Utf8, "id": pl.Int32, "raw": pl.Utf8})


def numeric_stats(ds: Any) -> dict[str, dict[str, float]]:
    """The training split's mean/std of each numeric field, as preprocessing recorded them."""
    stats = ds.meta.get("counts", {}).get("numeric", {})
    return {n: dict(stats[n]) for n in ds.schema.numeric if n in stats}


def vocab_of_dataset(ds: Any, max_len: int) -> RequestEncoder:
    """The vocabulary and end-of-data histories of a preprocessed dataset."""
    items, users = items_with_fields(ds), user_histories(ds, max_len)
    fields = None
    if not ds.schema.is_basic:
        fields = FieldTables.from_frames(
            ds.schema, items, users, values_frame(ds), numeric_stats(ds), max_len
        )
    return RequestEncoder.from_frames(items, users, max_len, fields)


def dataset_info(ds: Any) -> dict[str, Any]:
    return {
        "path": str(ds.path),
        "checksum": ds.checksum,
        "n_users": ds.n_users,
        "n_items": ds.n_items,
        "n_cates": ds.n_cates,
    }
