"""The TOML schema file of `dinctl preprocess logs --schema` (docs/formats.md): its one reader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dinctl.data.datasets.logs import LogColumns, split_behaviour
from dinctl.data.readers import first_line
from dinctl.errors import DinctlError

SCHEMA_KEYS = {
    "user",
    "time",
    "item",
    "category",
    "behaviour",
    "label",
    "context",
    "numeric",
    "user_features",
}


def columns_from_toml(path: Path) -> LogColumns:
    """A TOML schema file → LogColumns (docs/formats.md); `user_features.file` is relative to
    the TOML file."""
    from dinctl import toml

    try:
        data = toml.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DinctlError(f"schema file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, toml.TOMLDecodeError) as err:
        raise DinctlError(
            f"cannot read schema file {path}: {first_line(err)}",
            hint="write it in TOML (see docs/formats.md)",
        ) from None
    unknown = sorted(set(data) - SCHEMA_KEYS)
    if unknown:
        raise DinctlError(
            f"schema file {path} has unknown key(s) {', '.join(unknown)}",
            hint=f"expected keys among {', '.join(sorted(SCHEMA_KEYS))}",
        )

    def text(key: str, default: str | None) -> str | None:
        value = data.get(key, default)
        if value is not None and not isinstance(value, str):
            raise DinctlError(f"schema file {path}: {key!r} must be a column name, got {value!r}")
        return value

    def names(table: dict[str, Any], key: str) -> tuple[str, ...]:
        value = table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise DinctlError(
                f"schema file {path}: {key!r} must be a list of column names, got {value!r}"
            )
        return tuple(value)

    behaviour = names(data, "behaviour")
    item, category = (text("item", "item"), text("category", "category"))
    if behaviour:
        split = split_behaviour(behaviour)
        if split is None:
            raise DinctlError(
                f"schema file {path}: 'behaviour' needs at least the item and the "
                f"category column, got {list(behaviour)}"
            )
        item, category, behaviour = split
    users = data.get("user_features", {})
    if "user_features" in data and (
        not isinstance(users, dict) or not isinstance(users.get("file"), str)
    ):
        raise DinctlError(f'schema file {path}: [user_features] needs file = "..."')
    return LogColumns(
        user=text("user", "user") or "user",
        item=item or "item",
        category=category or "category",
        time=text("time", "timestamp") or "timestamp",
        label=text("label", None),
        behaviour=behaviour,
        context=names(data, "context"),
        numeric=names(data, "numeric"),
        user_features=(path.parent / users["file"]) if users else None,
        user_feature_cols=names(users, "columns") if users else (),
    )
