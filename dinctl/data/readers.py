"""What every dataset reader shares: the common interactions table and the strict text/CSV helpers.

Every reader (dinctl/data/datasets/) returns `Interactions`: a frame with columns `user`, `item`
(raw ids), `ts` (int64), for labelled sources `label` (int8), in file order, and the category
name either per row (`cate`) or per item (`item_cate`: item, cate); plus the input files (for
checksums) and counted warnings. Problems raise `DinctlError` naming the file, the line and
what was expected.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from dinctl.errors import DinctlError

LINE_START = 60  # characters of a bad line quoted in an error message


@dataclass(frozen=True)
class Interactions:
    """The common table every builder consumes, with where it came from."""

    frame: pl.DataFrame  # user, item, ts[, label][, cate], in file order
    inputs: tuple[Path, ...]
    # item → cate for every item of `frame`, when the category is per item, not per row
    item_cate: pl.DataFrame | None = None
    warnings: tuple[str, ...] = field(default=())
    dropped: dict[str, int] = field(default_factory=dict)
    user_features: pl.DataFrame | None = None  # raw `user` + user field columns (logs)


@dataclass(frozen=True)
class PendingInteractions:
    """The interactions, read; their item categories still being parsed in a thread."""

    frame: pl.DataFrame  # user, item, ts of every row, in file order
    inputs: tuple[Path, ...]
    resolve: Callable[[], Interactions]  # waits for the parse: the whole read


def line_start(line: str) -> str:
    line = line.rstrip("\r\n")
    return repr(line[:LINE_START] + ("…" if len(line) > LINE_START else ""))


def expect_dict(obj: Any, path: Path, lineno: int, line: str, what: str) -> dict[str, Any]:
    """`obj`, parsed from line `lineno` of `path`, when it is a dict; else raise (`what`: the
    expected kind, as the user knows it)."""
    if not isinstance(obj, dict):
        raise DinctlError(
            f"{path}:{lineno}: expected {what}, got {type(obj).__name__}; "
            f"the line starts {line_start(line)}"
        )
    return obj


def strict_lines(name: str, raw: Iterator[bytes]) -> Iterator[str]:
    """Decode byte lines as UTF-8; a line that is not is a one-line error naming it."""
    for lineno, line in enumerate(raw, start=1):
        try:
            yield line.decode("utf-8")
        except UnicodeDecodeError as err:
            raise DinctlError(
                f"{name}:{lineno}: not valid UTF-8 text (byte {err.start + 1} of the line is "
                f"{line[err.start : err.start + 1]!r})",
                hint="save the file as UTF-8",
            ) from None


def open_text(path: Path) -> Iterator[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        yield from strict_lines(str(path), f)


def read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError) as err:
        raise DinctlError(f"cannot read {path}: {err}", hint="download it again") from None


def find_input(folder: Path, names: list[str], what: str, hint: str) -> Path:
    """The first of `names` that exists in `folder`, or a one-line error naming the first."""
    if not folder.exists():
        raise DinctlError(f"raw folder {folder} does not exist", hint=hint)
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise DinctlError(f"{folder / names[0]} does not exist ({what})", hint=hint)


def keep_known_items(
    frame: pl.DataFrame, item_cate: pl.DataFrame, items: pl.Series | None = None
) -> tuple[pl.DataFrame, int, int]:
    """(rows whose item has a category, number of rows dropped, number of items dropped)."""
    items = frame["item"].unique() if items is None else items
    unknown = items.filter(~items.is_in(item_cate["item"].implode()))
    if unknown.len() == 0:
        return frame, 0, 0
    kept = frame.filter(~pl.col("item").is_in(unknown.implode()))
    return kept, frame.height - kept.height, unknown.len()


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:120] if text else type(err).__name__


def check_csv_lines(
    name: str, text: Iterator[str], schema: dict[str, Any], separator: str = ","
) -> None:
    """Slow path: find the first bad line of a CSV and raise naming it."""
    import csv

    columns = list(schema)
    reader = csv.reader(text, delimiter=separator)
    try:
        header = next(reader, None)
        if header is None:
            raise DinctlError(f"{name} is empty", hint="download it again")
        missing = [c for c in columns if c not in header]
        if missing:
            raise DinctlError(
                f"{name}: missing column(s) {', '.join(missing)}; "
                f"the header is {','.join(header)!r:.80}"
            )
        index = [header.index(c) for c in columns]
        for row in reader:
            if row:
                _check_csv_row(name, reader.line_num, row, header, schema, columns, index)
    except csv.Error as err:
        raise DinctlError(f"{name}:{reader.line_num + 1}: not valid CSV ({err})") from None


def _check_csv_row(
    name: str,
    lineno: int,
    row: list[str],
    header: list[str],
    schema: dict[str, Any],
    columns: list[str],
    index: list[int],
) -> None:
    if len(row) != len(header):
        raise DinctlError(
            f"{name}:{lineno}: expected {len(header)} fields, got {len(row)}; "
            f"the line starts {line_start(','.join(row))}"
        )
    for col, i in zip(columns, index, strict=True):
        kind = schema[col]
        try:
            if kind == pl.Int64:
                value: float = int(row[i])
                if not -(2**63) <= value < 2**63:
                    raise ValueError
            elif kind == pl.Float64:
                value = float(row[i])
                if value != value or value in (float("inf"), float("-inf")):
                    raise ValueError
        except ValueError:
            expected = "a 64-bit integer" if kind == pl.Int64 else "a finite number"
            raise DinctlError(
                f"{name}:{lineno}: {col!r} must be {expected}, got {row[i]!r:.40}; "
                f"the line starts {line_start(','.join(row))}"
            ) from None


def _non_finite(df: pl.DataFrame) -> bool:
    floats = [c for c in df.columns if df.schema[c] == pl.Float64]
    return (
        bool(floats) and not df.select(pl.all_horizontal(pl.col(floats).is_finite().all())).item()
    )


def read_csv(name: str, path: Path, schema: dict[str, Any]) -> pl.DataFrame:
    """A CSV file (read in place) with the columns of `schema`."""
    if path.stat().st_size == 0:
        raise DinctlError(f"{name} is empty", hint="download it again")
    try:
        df = pl.read_csv(path, schema_overrides=schema, columns=list(schema))
        ok = df.select(pl.col(c) for c in schema if c != "title").null_count().sum_horizontal()
        bad = ok.item() != 0
    except Exception:  # noqa: BLE001 - polars raises several types; the slow path names the line
        bad, df = True, pl.DataFrame()
    if bad or _non_finite(df):
        with open(path, "rb") as f:
            check_csv_lines(name, strict_lines(name, f), schema)
        if df.height == 0:
            raise DinctlError(f"{name} could not be read as CSV", hint="download it again")
        null_col = next(c for c in schema if c != "title" and df[c].null_count())
        raise DinctlError(f"{name}: column {null_col!r} has empty values")
    if df.height == 0:
        raise DinctlError(f"{name} has a header but no rows", hint="download it again")
    return df
