"""Your own log: a Parquet or CSV file with named columns (`dinctl preprocess logs`).

Reader: the columns named by `LogColumns` (flags, or a TOML schema file read by
dinctl/data/schema_file.py) → user, item, cate, ts[, label] and the schema's extra fields; ids
are integers or strings, times numbers, datetimes or ISO 8601 text. Protocol: windows and drawn
negatives without a label column (Amazon's), users split at random with one (MovieLens').
"""

from __future__ import annotations

import gzip
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from dinctl.data.archives import check_gzip
from dinctl.data.preprocess import build_dataset
from dinctl.data.readers import Interactions, check_csv_lines, first_line, strict_lines
from dinctl.data.reporting import Status, Warn, no_warnings, quiet
from dinctl.errors import DinctlError


@dataclass(frozen=True)
class LogColumns:
    """Which columns of a log file hold the user, item, category, time and (optional) label,
    and the schema's other fields (dinctl/data/schema.py): more behaviour fields of an event,
    context and numeric fields of a sample, and user fields from a separate profile file
    (one row per user, its user column named like the log's)."""

    user: str = "user"
    item: str = "item"
    category: str = "category"
    time: str = "timestamp"
    label: str | None = None
    behaviour: tuple[str, ...] = ()  # beyond item and category
    context: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    user_features: Path | None = None
    user_feature_cols: tuple[str, ...] = ()

    def extra(self) -> dict[str, str]:
        """Builder column (`beh:<f>`, `ctx:<f>`, `num:<f>`) → log column of the extra fields."""
        out = {}
        for prefix, cols in (
            ("beh:", self.behaviour),
            ("ctx:", self.context),
            ("num:", self.numeric),
        ):
            out.update({prefix + field_name(c): c for c in cols})
        return out

    def options(self) -> dict[str, Any]:
        """What meta.json records of the columns."""
        return {
            "user_col": self.user,
            "item_col": self.item,
            "category_col": self.category,
            "time_col": self.time,
            "label_col": self.label,
            **(
                {"behaviour_cols": [self.item, self.category, *self.behaviour]}
                if self.behaviour
                else {}
            ),
            **({"context_cols": list(self.context)} if self.context else {}),
            **({"numeric_cols": list(self.numeric)} if self.numeric else {}),
            **(
                {
                    "user_features": self.user_features.name,
                    "user_feature_cols": list(self.user_feature_cols),
                }
                if self.user_features is not None
                else {}
            ),
        }


def split_behaviour(cols: tuple[str, ...]) -> tuple[str, str, tuple[str, ...]] | None:
    """A behaviour's columns → (item, category, its other fields): the item and the category
    come first. None when `cols` holds fewer than those two (the caller says where)."""
    if len(cols) < 2:
        return None
    return cols[0], cols[1], cols[2:]


def field_name(column: str) -> str:
    """The schema's name of a log column: lower case, other characters → _ ("Ad Slot" → ad_slot)."""
    name = re.sub(r"[^a-z0-9_]", "_", column.strip().lower())
    return name if name[:1].isalpha() else f"f_{name}"


TIME_HINT = "store Unix seconds, a Parquet timestamp or ISO 8601 text (e.g. 2024-05-01T12:00:00Z)"
INT64_MAX = 2**63 - 1
FLOAT32_MAX = 3.4028234663852886e38


def _read_log_file(path: Path, text_cols: tuple[str, ...] = ()) -> pl.DataFrame:
    """The log as a frame; a CSV that cannot be parsed names its first bad line. The CSV
    columns `text_cols` (ids) are read as text: `00063` stays `00063`, never 63."""
    if not path.is_file():
        raise DinctlError(f"{path} does not exist", hint="pass a Parquet or CSV log file")
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".pq", ".csv", ".tsv", ".gz"):
        raise DinctlError(
            f"{path} has suffix {suffix!r}, expected .parquet or .csv",
            hint="convert the log to Parquet or CSV",
        )
    if suffix in (".parquet", ".pq"):
        try:
            return pl.read_parquet(path)
        except Exception as err:  # noqa: BLE001 - polars/arrow raise several types
            raise DinctlError(f"cannot read {path}: {first_line(err)}") from None
    if path.stat().st_size == 0:
        raise DinctlError(f"{path} is empty", hint="pass a file with a header and rows")
    if suffix == ".gz":
        check_gzip(path)
    sep = "\t" if ".tsv" in path.suffixes else ","
    try:
        return pl.read_csv(
            path,
            separator=sep,
            infer_schema_length=10_000,
            schema_overrides=dict.fromkeys(text_cols, pl.Utf8),
        )
    except Exception as err:  # noqa: BLE001 - polars raises several types; find the bad line
        opener = gzip.open if suffix == ".gz" else open
        try:
            with opener(path, "rb") as f:
                check_csv_lines(str(path), strict_lines(str(path), f), {}, sep)
        except (OSError, EOFError) as io_err:
            raise DinctlError(f"cannot read {path}: {io_err}") from None
        raise DinctlError(f"cannot read {path}: {first_line(err)}") from None


def _id_column(path: Path, frame: pl.DataFrame, col: str, source: str) -> pl.Series:
    """An id column as integers or strings (ids are labels, not quantities)."""
    s = frame[col]
    dtype = s.dtype
    if dtype in (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32):
        return s.cast(pl.Int64)
    if dtype.is_integer() or dtype == pl.Decimal or dtype in (pl.Categorical, pl.Enum):
        return s.cast(pl.Utf8)  # UInt64, Int128, decimals: kept exactly as text
    if dtype == pl.Utf8:
        return s
    if dtype.is_float():
        bad = (~s.is_finite() | (s != s.round()) | (s.abs() > 2**53)).arg_true()
        if len(bad):
            raise DinctlError(
                f"{path}: id column {source!r} holds {s[bad[0]]!r} in data row {bad[0] + 1}, "
                "expected whole numbers",
                hint="store ids as integers or strings",
            )
        return s.cast(pl.Int64)
    raise DinctlError(
        f"{path}: id column {source!r} has type {dtype}, expected integers or strings",
        hint="store ids as integers or strings",
    )


def _fromisoformat(text: str) -> Any:
    """`datetime.fromisoformat` as Python 3.11 reads it, on 3.10 too: a `Z` suffix, and a
    fraction of 1 to 6 digits (3.10 takes only 3 or 6)."""
    from datetime import datetime

    if sys.version_info < (3, 11):
        text = re.sub(r"[zZ]$", "+00:00", text)
        text = re.sub(r"\.(\d{1,6})(?=$|[+-])", lambda m: "." + m.group(1).ljust(6, "0"), text)
    return datetime.fromisoformat(text)


def _parse_iso(path: Path, s: pl.Series, source: str) -> pl.Series:
    """ISO 8601 text (offset, `Z`, naive = UTC, or a date) → µs since the epoch (UTC)."""
    from datetime import datetime, timezone

    uniq = s.unique(maintain_order=True)
    values: list[int] = []
    for text in uniq.to_list():
        try:
            when = _fromisoformat(text.strip())
        except (ValueError, AttributeError):
            row = int((s == text).arg_true()[0])
            raise DinctlError(
                f"{path}: time column {source!r} holds {text!r:.40} in data row {row + 1}, "
                "expected a number or an ISO 8601 date/time",
                hint=TIME_HINT,
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        delta = when - datetime(1970, 1, 1, tzinfo=timezone.utc)
        values.append((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds)
    lookup = pl.DataFrame({"text": uniq, "us": pl.Series(values, dtype=pl.Int64)})
    return s.to_frame("text").join(lookup, on="text", how="left", maintain_order="left")["us"]


def _time_column(path: Path, s: pl.Series, source: str) -> pl.Series:
    """Any time column → int64 (seconds, or µs for datetimes and fractional seconds)."""
    dtype = s.dtype
    if dtype in (pl.Datetime, pl.Date) or isinstance(dtype, pl.Datetime):
        # microseconds, so sub-second order survives
        return (s.cast(pl.Datetime("us")) if dtype == pl.Date else s).dt.epoch("us")
    if dtype == pl.Utf8:
        numbers = s.str.strip_chars().cast(pl.Float64, strict=False)
        if numbers.null_count() == 0:  # numbers stored as text
            whole = s.str.strip_chars().cast(pl.Int64, strict=False)
            return _time_column(path, whole if whole.null_count() == 0 else numbers, source)
        if numbers.null_count() < len(numbers):  # mostly numbers: name the first one that is not
            row = int(numbers.is_null().arg_true()[0])
            raise DinctlError(
                f"{path}: time column {source!r} holds {s[row]!r:.40} in data row {row + 1}, "
                "expected a number like the other rows",
                hint=TIME_HINT,
            )
        return _parse_iso(path, s, source)
    if dtype == pl.Decimal:
        s = s.cast(pl.Float64)
        dtype = s.dtype
    if dtype in (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32):
        return s.cast(pl.Int64)  # lossless; comparing Int32 with 2**63 would overflow
    if dtype.is_integer():
        too_big = (
            s > INT64_MAX if dtype.is_unsigned_integer() else (s > INT64_MAX) | (s < -INT64_MAX)
        )
        bad = too_big.arg_true()
        if len(bad):
            raise DinctlError(
                f"{path}: time column {source!r} holds {s[bad[0]]} in data row {bad[0] + 1}, "
                "out of the 64-bit range",
                hint=TIME_HINT,
            )
        return s.cast(pl.Int64)
    if dtype.is_float():
        return _float_times(path, s, source)
    kind = {pl.Duration: "a duration", pl.Time: "a time of day"}.get(type(dtype), f"{dtype}")
    raise DinctlError(
        f"{path}: time column {source!r} is {kind}, expected a number or a datetime",
        hint=TIME_HINT,
    )


def _float_times(path: Path, s: pl.Series, source: str) -> pl.Series:
    whole = bool((s == s.round()).all())
    scale = 1 if whole else 1_000_000  # fractional times: keep their order, to the µs
    limit = INT64_MAX / scale
    bad = (~s.is_finite() | (s.abs() >= limit)).arg_true()
    if len(bad):
        value = s[bad[0]]
        what = (
            "is not a finite number"
            if value != value or abs(value) == float("inf")
            else (f"holds {value:g}, too large for a time")
        )
        raise DinctlError(
            f"{path}: time column {source!r} {what} in data row {bad[0] + 1}", hint=TIME_HINT
        )
    return (s * scale).round().cast(pl.Int64)


def read_logs(path: Path, columns: LogColumns) -> Interactions:
    """A Parquet or CSV log with named columns → user, item, cate, ts[, label]."""
    ids = (columns.user, columns.item, columns.category, *columns.behaviour, *columns.context)
    df = _read_log_file(path, ids)
    wanted = {
        "user": columns.user,
        "item": columns.item,
        "cate": columns.category,
        "ts": columns.time,
    }
    if columns.label is not None:
        wanted["label"] = columns.label
    extra = columns.extra()
    missing = [c for c in (*wanted.values(), *extra.values()) if c not in df.columns]
    if missing:
        raise DinctlError(
            f"{path} has no column(s) {', '.join(map(repr, missing))}; "
            f"it has {', '.join(df.columns)}",
            hint="name them with --user-col/--item-col/--category-col/--time-col/--label-col "
            "(--behaviour-cols/--context-cols/--numeric-cols, or the --schema file)",
        )
    _check_distinct(path, [*wanted.values(), *extra.values()])
    _check_field_names(path, [*columns.behaviour, *columns.context, *columns.numeric,
                              *columns.user_feature_cols])  # fmt: skip
    if df.height == 0:
        raise DinctlError(f"{path} has no rows", hint="pass a non-empty log")
    frame = df.select(pl.col(src).alias(dst) for dst, src in wanted.items())
    for col in ("user", "item", "cate", "ts"):
        if frame[col].null_count():
            row = frame[col].is_null().arg_true()[0]
            raise DinctlError(f"{path}: column {wanted[col]!r} is empty in data row {row + 1}")
    frame = frame.with_columns(
        _id_column(path, frame, "user", columns.user),
        _id_column(path, frame, "item", columns.item),
        _id_column(path, frame, "cate", columns.category).cast(pl.Utf8),
        _time_column(path, frame["ts"], columns.time).alias("ts"),
    )
    if columns.label is not None:
        frame = frame.with_columns(_label_column(path, frame["label"], columns.label))
    frame = frame.with_columns(
        _extra_column(path, df, src, d.startswith("num:")).alias(d) for d, src in extra.items()
    )
    if columns.user_features is None:
        return Interactions(frame=frame, inputs=(path,))
    profile = read_user_features(columns.user_features, columns.user, columns.user_feature_cols)
    return Interactions(frame=frame, inputs=(path, columns.user_features), user_features=profile)


def _check_distinct(path: Path, cols: list[str]) -> None:
    """One column per field: a column named twice (e.g. as behaviour and context) is an error."""
    seen: set[str] = set()
    for col in cols:
        if col in seen:
            raise DinctlError(
                f"{path}: column {col!r} is named for two fields",
                hint="give each field its own column",
            )
        seen.add(col)


def _check_field_names(path: Path, cols: list[str]) -> None:
    """Two columns whose field names collide (`a-b` and `a_b`, `brand` and `Brand`) would
    become one field and lose a column: an error naming both."""
    seen: dict[str, str] = {}
    for col in cols:
        name = field_name(col)
        if name in seen or name in ("item", "cate"):
            other = seen.get(name, name)
            raise DinctlError(
                f"{path}: columns {other!r} and {col!r} both become the field {name!r}",
                hint="rename one of the columns (field names are lower case, other characters _)",
            )
        seen[name] = col


def _extra_column(path: Path, df: pl.DataFrame, col: str, numeric: bool = False) -> pl.Series:
    """An extra field's column: ids (integers or strings) or, `numeric`, finite floats; a
    missing value or a value of the wrong type is one line naming the column and row."""
    s = df[col]
    if s.null_count():
        row = int(s.is_null().arg_true()[0])
        raise DinctlError(
            f"{path}: column {col!r} is empty in data row {row + 1}",
            hint="fill in every value of the schema's columns",
        )
    if not numeric:
        return _id_column(path, df, col, col)
    if s.dtype == pl.Utf8:
        numbers = s.str.strip_chars().cast(pl.Float64, strict=False)
        if numbers.null_count():
            row = int(numbers.is_null().arg_true()[0])
            raise DinctlError(
                f"{path}: numeric column {col!r} holds {s[row]!r:.40} in data row {row + 1}, "
                "expected a number",
                hint="numeric fields hold numbers; list id-like columns with --context-cols",
            )
        s = numbers
    if not s.dtype.is_numeric():
        raise DinctlError(f"{path}: numeric column {col!r} has type {s.dtype}, expected numbers")
    s = s.cast(pl.Float64)
    bad = (~s.is_finite() | (s.abs() > FLOAT32_MAX)).arg_true()
    if len(bad):
        raise DinctlError(
            f"{path}: numeric column {col!r} holds {s[bad[0]]} in data row "
            f"{bad[0] + 1}, expected a finite number within ±{FLOAT32_MAX:.3g}",
            hint="numeric fields are stored as float32; rescale the column (e.g. its log)",
        )
    return s


def read_user_features(path: Path, user_col: str, cols: tuple[str, ...]) -> pl.DataFrame:
    """The user profile file → `user` + one id column per field (named by `field_name`); each
    user on one row, every value present."""
    df = _read_log_file(path, (user_col, *cols))
    if not cols:
        raise DinctlError(
            f"no user feature columns named for {path}",
            hint="name them with --user-feature-cols a,b (or columns = [...])",
        )
    missing = [c for c in (user_col, *cols) if c not in df.columns]
    if missing:
        raise DinctlError(
            f"user feature file {path} has no column(s) {', '.join(map(repr, missing))}; "
            f"it has {', '.join(df.columns)}",
            hint="its user column is named like the log's (--user-col)",
        )
    _check_distinct(path, [user_col, *cols])
    if df.height == 0:
        raise DinctlError(f"user feature file {path} has no rows", hint="pass a non-empty file")
    users = _extra_column(path, df, user_col)
    dup = users.is_duplicated()
    if dup.any():
        row = int(dup.arg_true()[0])
        raise DinctlError(
            f"user feature file {path}: user {users[row]!r} (column {user_col!r}) is on more "
            "than one row",
            hint="keep one profile row per user",
        )
    out = {"user": users.cast(pl.Utf8)}
    out.update({field_name(c): _extra_column(path, df, c) for c in cols})
    return pl.DataFrame(out)


def _label_column(path: Path, s: pl.Series, source: str) -> pl.Series:
    if not (s.dtype.is_numeric() or s.dtype == pl.Boolean):
        raise DinctlError(f"{path}: label column {source!r} has type {s.dtype}, expected 0/1")
    values = set(s.unique().to_list())  # raw values: 0.7 is not a label
    if not values <= {0, 1}:
        shown = sorted(values, key=str)[:5]
        raise DinctlError(f"{path}: label column {source!r} must hold 0/1, got values {shown}")
    return s.cast(pl.Int8).alias("label")


def preprocess_logs(
    path: Path,
    out: Path,
    *,
    columns: LogColumns,
    seed: int = 1234,
    valid: bool = True,
    overwrite: bool = False,
    status: Status = quiet,
    warn: Warn = no_warnings,
) -> dict[str, Any]:
    """Your own log: windows + negatives without a label column, user split with one."""
    inputs = [("log file", path)]
    if columns.user_features is not None:
        inputs.append(("user feature file", columns.user_features))
    return build_dataset(
        lambda _: read_logs(path, columns),
        out,
        inputs=inputs,
        dataset="logs",
        protocol="windows" if columns.label is None else "users",
        seed=seed,
        valid=valid,
        overwrite=overwrite,
        options=columns.options(),
        status=status,
        warn=warn,
    )
