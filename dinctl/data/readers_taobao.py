"""Readers of the two public Taobao datasets' raw CSV files (one reader per file format).

Each reader returns a Polars LazyFrame with typed, validated columns and never collects the
file itself, so the 700M-row behaviour log can be streamed. A malformed row is one line
naming file:line, the column, the value and what was expected.

UserBehavior.csv (Tianchi 649, no header):  user,item,category,behavior_type,timestamp
raw_sample.csv    (Tianchi 56):  user,time_stamp,adgroup_id,pid,nonclk,clk
ad_feature.csv:   adgroup_id,cate_id,campaign_id,customer,brand,price   (brand may be NULL)
user_profile.csv: userid,cms_segid,cms_group_id,final_gender_code,age_level,pvalue_level,
                  shopping_level,occupation,new_user_class_level  (levels may be empty; the
                  real header ends in a space, which is ignored)
behavior_log.csv: user,time_stamp,btag,cate,brand
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dinctl.errors import DinctlError

BTAGS = ("pv", "cart", "fav", "buy")  # id 1..4 in this order


@dataclass(frozen=True)
class CsvFormat:
    """One raw file: its name, header (None: headerless) and column kinds."""

    name: str
    header: tuple[str, ...] | None
    columns: tuple[str, ...]  # our names, in file order
    kinds: tuple[str, ...]  # "int", "int?" (empty or NULL allowed), "str", "float", "btag"


USER_BEHAVIOR = CsvFormat(
    "UserBehavior.csv", None, ("user", "item", "cate", "btag", "ts"),
    ("int", "int", "int", "btag", "int"),
)  # fmt: skip
RAW_SAMPLE = CsvFormat(
    "raw_sample.csv", ("user", "time_stamp", "adgroup_id", "pid", "nonclk", "clk"),
    ("user", "ts", "adgroup", "pid", "nonclk", "clk"), ("int", "int", "int", "str", "int", "int"),
)  # fmt: skip
AD_FEATURE = CsvFormat(
    "ad_feature.csv", ("adgroup_id", "cate_id", "campaign_id", "customer", "brand", "price"),
    ("adgroup", "cate", "campaign", "customer", "brand", "price"),
    ("int", "int", "int", "int", "int?", "float"),
)  # fmt: skip
USER_PROFILE = CsvFormat(
    "user_profile.csv",
    ("userid", "cms_segid", "cms_group_id", "final_gender_code", "age_level", "pvalue_level",
     "shopping_level", "occupation", "new_user_class_level"),
    ("user", "cms_segid", "cms_group_id", "gender", "age_level", "pvalue_level",
     "shopping_level", "occupation", "city_level"),
    ("int", "int", "int", "int", "int", "int?", "int", "int", "int?"),
)  # fmt: skip
BEHAVIOR_LOG = CsvFormat(
    "behavior_log.csv", ("user", "time_stamp", "btag", "cate", "brand"),
    ("user", "ts", "btag", "cate", "brand"), ("int", "int", "btag", "int", "int?"),
)  # fmt: skip
AD_FILES = (RAW_SAMPLE, AD_FEATURE, USER_PROFILE, BEHAVIOR_LOG)
FORMATS = {f.name: f for f in (USER_BEHAVIOR, *AD_FILES)}


def _expected(kind: str) -> str:
    return {
        "int": "an integer",
        "int?": "an integer, NULL or nothing",
        "float": "a number",
        "str": "a value",
        "btag": f"one of {', '.join(BTAGS)}",
    }[kind]


def _bad_value(value: str, kind: str) -> bool:
    if kind == "btag":
        return value not in BTAGS
    if kind == "int?" and value in ("", "NULL"):
        return False
    try:
        (float if kind == "float" else int)(value)
    except ValueError:
        return kind != "str"
    return False


def check_header(path: Path, fmt: CsvFormat) -> None:
    """The first line must be the file's header (headerless files: a plausible first row)."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            first = f.readline()
    except (OSError, UnicodeDecodeError) as err:
        raise DinctlError(f"cannot read {path}: {err}", hint="download it again") from None
    if not first:
        raise DinctlError(f"{path} is empty", hint="download it again")
    cells = [c.strip() for c in next(csv.reader([first]))]
    if fmt.header is not None and tuple(cells) != fmt.header:
        raise DinctlError(
            f"{path}:1: header is {','.join(cells)!r}, expected {','.join(fmt.header)!r}",
            hint=f"is this the dataset's {fmt.name}?",
        )
    if fmt.header is None:
        _check_row(path, fmt, 1, cells)


def _check_row(path: Path, fmt: CsvFormat, line: int, cells: list[str]) -> None:
    if len(cells) != len(fmt.columns):
        raise DinctlError(
            f"{path}:{line}: {len(cells)} fields, expected {len(fmt.columns)} "
            f"({','.join(fmt.header or fmt.columns)})",
            hint=f"is this the dataset's {fmt.name}? a truncated download?",
        )
    for name, kind, value in zip(fmt.columns, fmt.kinds, cells, strict=True):
        if _bad_value(value, kind):
            raise DinctlError(
                f"{path}:{line}: column {name!r} holds {value!r}, expected {_expected(kind)}",
                hint=f"fix or remove that line of {path.name}",
            )


def find_bad_line(path: Path, fmt: CsvFormat) -> None:
    """Scan the file row by row and raise for the first malformed row (the slow error path)."""
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        for i, cells in enumerate(csv.reader(f), start=1):
            if i == 1 and fmt.header is not None:
                continue
            _check_row(path, fmt, i, cells)


def scan(path: Path, fmt: CsvFormat) -> Any:
    """The file as a typed LazyFrame (our column names) plus `line`, its 1-based line number."""
    import polars as pl

    if not path.is_file():
        raise DinctlError(
            f"{path} does not exist ({fmt.name})",
            hint="get the dataset with `dinctl download` (see docs/protocols.md)",
        )
    check_header(path, fmt)
    dtypes = {"int": pl.Int64, "int?": pl.Utf8, "float": pl.Float64, "str": pl.Utf8,
              "btag": pl.Utf8}  # fmt: skip
    lf = pl.scan_csv(
        path,
        has_header=fmt.header is not None,
        new_columns=list(fmt.columns),
        schema_overrides={c: dtypes[k] for c, k in zip(fmt.columns, fmt.kinds, strict=True)},
        row_index_name="line",
        row_index_offset=1 if fmt.header is None else 2,
        truncate_ragged_lines=False,
    )
    exprs, bad = [], pl.lit(False)
    for name, kind in zip(fmt.columns, fmt.kinds, strict=True):
        if kind == "int?":
            raw = pl.col(name).str.strip_chars()
            empty = raw.is_in(["", "NULL"]) | raw.is_null()
            exprs.append(
                pl.when(empty).then(None).otherwise(raw).cast(pl.Int64, strict=False).alias(name)
            )
            bad = bad | (~empty & raw.cast(pl.Int64, strict=False).is_null())
        else:  # a short (ragged) row leaves its last columns null
            bad = bad | pl.col(name).is_null()
        if kind == "btag":
            bad = bad | ~pl.col(name).is_in(list(BTAGS))
            # a when-chain, not replace_strict: that one leaves the streaming engine (5x memory)
            code = pl.lit(0, dtype=pl.Int8)
            for i, b in enumerate(BTAGS, start=1):
                code = pl.when(pl.col(name) == b).then(pl.lit(i, dtype=pl.Int8)).otherwise(code)
            exprs.append(code.alias(name))
    return lf.with_columns(*exprs, bad.alias("_bad"))


def collect(lf: Any, path: Path, fmt: CsvFormat) -> Any:
    """Collect a scan (streaming); a malformed row becomes its line's one-line error."""
    try:
        df = lf.collect(engine="streaming")
    except Exception as err:  # noqa: BLE001 - polars raises its own ComputeError types
        find_bad_line(path, fmt)
        raise DinctlError(f"cannot read {path}: {err}", hint="download it again") from None
    if "_bad" in df.columns:
        if df["_bad"].any():
            find_bad_line(path, fmt)
        df = df.drop("_bad")
    return df
