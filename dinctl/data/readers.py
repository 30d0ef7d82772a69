"""One reader per raw format → a common interactions table (polars).

Every reader returns `Interactions`: a frame with columns `user`, `item` (raw ids), `ts`
(int64), for labelled sources `label` (int8), in file order, and the category name either per
row (`cate`) or per item (`item_cate`: item, cate); plus the input files (for checksums) and
counted warnings. Problems raise `DinctlError` naming the file,
the line and what was expected.
"""

from __future__ import annotations

import ast
import gzip
import json
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from dinctl.data.archives import MAX_EXTRACT_BYTES, check_gzip, extract_member, open_zip
from dinctl.errors import DinctlError

REVIEW_KEYS = {"reviewerID": pl.Utf8, "asin": pl.Utf8, "unixReviewTime": pl.Int64}
RATINGS_SCHEMA = {
    "userId": pl.Int64,
    "movieId": pl.Int64,
    "rating": pl.Float64,
    "timestamp": pl.Int64,
}
MOVIES_SCHEMA = {"movieId": pl.Int64, "title": pl.Utf8, "genres": pl.Utf8}
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


def _start(line: str) -> str:
    line = line.rstrip("\r\n")
    return repr(line[:LINE_START] + ("…" if len(line) > LINE_START else ""))


def _expect_dict(obj: Any, path: Path, lineno: int, line: str, what: str) -> dict[str, Any]:
    """`obj`, parsed from line `lineno` of `path`, when it is a dict; else raise (`what`: the
    expected kind, as the user knows it)."""
    if not isinstance(obj, dict):
        raise DinctlError(
            f"{path}:{lineno}: expected {what}, got {type(obj).__name__}; "
            f"the line starts {_start(line)}"
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


def _open_text(path: Path) -> Iterator[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        yield from strict_lines(str(path), f)


def _read_bytes(path: Path) -> bytes:
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


# ---------------------------------------------------------------- Amazon reviews (JSON lines)


def _check_review_lines(path: Path) -> None:
    """Slow path: find the first bad line of a reviews file and raise naming it."""
    try:
        _check_review_text(path)
    except (OSError, EOFError) as err:  # a truncated or corrupt .gz
        raise DinctlError(f"cannot read {path}: {err}", hint="download it again") from None


def _check_review_text(path: Path) -> None:
    for lineno, line in enumerate(_open_text(path), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except RecursionError:
            raise DinctlError(f"{path}:{lineno}: JSON nested too deeply") from None
        except json.JSONDecodeError as err:
            raise DinctlError(
                f"{path}:{lineno}: not valid JSON ({err.msg}); the line starts {_start(line)}",
                hint="each line of a reviews file must be one JSON object",
            ) from None
        _expect_dict(obj, path, lineno, line, "a JSON object")
        for key in REVIEW_KEYS:
            if key not in obj or obj[key] is None:
                raise DinctlError(
                    f"{path}:{lineno}: missing key {key!r}; the line starts {_start(line)}",
                    hint="every review needs reviewerID, asin and unixReviewTime",
                )
        for key in ("reviewerID", "asin"):
            if not isinstance(obj[key], str):
                raise DinctlError(
                    f"{path}:{lineno}: {key!r} must be a string, got {obj[key]!r}",
                    hint="is this an Amazon 2014 reviews file?",
                )
        ts = obj["unixReviewTime"]
        if isinstance(ts, bool) or not isinstance(ts, int):
            raise DinctlError(
                f"{path}:{lineno}: 'unixReviewTime' must be an integer, got {ts!r}",
                hint="is this an Amazon 2014 reviews file?",
            )
        if not -(2**63) <= ts < 2**63:
            raise DinctlError(
                f"{path}:{lineno}: 'unixReviewTime' {ts} is out of range (a 64-bit integer of "
                "Unix seconds expected)",
                hint="is this an Amazon 2014 reviews file?",
            )


def read_amazon_reviews(path: Path) -> pl.DataFrame:
    """reviewerID, asin, unixReviewTime of a strict-JSON-lines file → user, item, ts."""
    try:
        df = pl.read_ndjson(path, schema=REVIEW_KEYS, low_memory=False)
        ok = df.null_count().sum_horizontal().item() == 0
    except Exception:  # noqa: BLE001 - polars raises several types; the slow path names the line
        ok, df = False, pl.DataFrame()
    if not ok:
        _check_review_lines(path)
        if df.height == 0:
            raise DinctlError(f"{path} could not be read as JSON lines", hint="download it again")
    if df.height == 0:
        raise DinctlError(f"{path} is empty: no reviews", hint="download it again")
    return df.rename({"reviewerID": "user", "asin": "item", "unixReviewTime": "ts"})


# ---------------------------------------------------------------- Amazon meta (Python literals)

_ASIN = r"'asin': '([^'\\]*)'"
_ASIN_FIRST = r"^\{'asin': '([^'\\]*)'"
# categories[-1][-1] is the last string literal of the list, right before its closing `]]`
_CATS = r"'categories': (\[.*?\]\])(?:, '|\}\s*$)"
_LAST = r"""(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")\]\]$"""


def _literal_line(path: Path, lineno: int, line: str) -> dict[str, Any]:
    try:
        obj = ast.literal_eval(line)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as err:
        reason = type(err).__name__
        raise DinctlError(
            f"{path}:{lineno}: not a Python literal ({reason}); the line starts {_start(line)}",
            hint="each line of a meta file must be one Python dict literal",
        ) from None
    return _expect_dict(obj, path, lineno, line, "a dict")


def _category_of(path: Path, lineno: int, obj: dict[str, Any]) -> str | None:
    """categories[-1][-1], None when the row has no categories; raise on a wrong type."""
    cats = obj.get("categories")
    if cats is None or cats == [] or cats == [[]]:
        return None
    if not (isinstance(cats, list) and all(isinstance(c, list) for c in cats)):
        raise DinctlError(
            f"{path}:{lineno}: 'categories' must be a list of lists of strings, got {cats!r:.60}"
        )
    last = cats[-1]
    if not last:
        return None
    if not isinstance(last[-1], str):
        raise DinctlError(f"{path}:{lineno}: category name must be a string, got {last[-1]!r:.60}")
    return last[-1]


def _text_lines(path: Path) -> pl.DataFrame:
    """(lineno, line) of a text file, blank lines kept; null where a line is not UTF-8."""
    if path.suffix != ".gz":
        try:  # one column that no separator or quote splits: Rust reads it in parallel
            df = pl.read_csv(
                path,
                has_header=False,
                separator="\x1f",
                quote_char=None,
                new_columns=["line"],
                schema={"line": pl.Utf8},
            )
            # it fails on bad UTF-8, so a null here is a blank line
            return df.with_columns(pl.col("line").fill_null("")).with_row_index("lineno", offset=1)
        except Exception:  # noqa: BLE001 - odd bytes: the exact, slower path below decides
            pass
    data = _read_bytes(path)
    parts = data.split(b"\n")
    del data
    if parts and parts[-1] == b"":
        parts.pop()
    text: list[str | None] = []
    for part in parts:
        try:
            text.append(part.decode("utf-8"))
        except UnicodeDecodeError:
            text.append(None)
    del parts
    return pl.DataFrame({"line": text}, schema={"line": pl.Utf8}).with_row_index("lineno", offset=1)


@dataclass(frozen=True)
class MetaLines:
    """The lines of a meta file with each one's asin (the part that needs no reviews)."""

    lines: pl.DataFrame  # lineno, line, asin (null where the regex cannot read it)
    slow_rows: list[tuple[str, str | None]]  # (asin, category) of the lines parsed properly


def read_meta_lines(path: Path) -> MetaLines:
    """Every line of a meta file with its asin; malformed lines without one raise here."""
    lines = _text_lines(path)
    # the usual layout starts with the asin (an anchored regex is fast); search the others
    asins = lines["line"].str.extract(_ASIN_FIRST, 1)
    other = (asins.is_null() & lines["line"].is_not_null()).arg_true()
    if len(other):
        asins = asins.scatter(other, lines["line"].gather(other).str.extract(_ASIN, 1))
    lines = lines.with_columns(asins.alias("asin"))
    # lines the regex cannot read (no asin): parse them properly, which names a malformed one
    slow_rows: list[tuple[str, str | None]] = []
    for lineno, line in lines.filter(pl.col("asin").is_null()).select("lineno", "line").iter_rows():
        if line is None:
            raise DinctlError(f"{path}:{lineno}: not valid UTF-8 text")
        if not line.strip():
            continue
        obj = _literal_line(path, lineno, line)
        asin: Any = obj.get("asin")
        if not isinstance(asin, str):
            raise DinctlError(
                f"{path}:{lineno}: missing key 'asin' (a string); the line starts {_start(line)}"
            )
        slow_rows.append((asin, _category_of(path, lineno, obj)))
    if not slow_rows and lines["asin"].null_count() == lines.height:
        raise DinctlError(f"{path} is empty: no products", hint="download it again")
    return MetaLines(lines=lines, slow_rows=slow_rows)


def meta_categories(path: Path, meta: MetaLines, reviewed: pl.Series) -> tuple[pl.DataFrame, int]:
    """asin → category name (categories[-1][-1]) of the reviewed asins of `meta`."""
    lines, slow_rows = meta.lines, meta.slow_rows
    kept = lines.filter(pl.col("asin").is_in(reviewed.implode()))
    kept = kept.unique("asin", keep="first", maintain_order=True)
    cats = kept.with_columns(pl.col("line").str.extract(_CATS, 1).alias("cats"))
    cats = cats.with_columns(
        pl.col("cats").str.extract(_LAST, 1).alias("single"),
        pl.col("cats").str.extract(_LAST, 2).alias("double"),
    )
    # a whole dict literal (a truncated line, e.g. a cut download, goes to the strict parser)
    whole = pl.col("line").str.strip_chars()
    whole = whole.str.starts_with("{") & whole.str.ends_with("}")
    fast = cats.filter(
        whole
        & (
            (pl.col("single").is_not_null() & ~pl.col("single").str.contains("\\", literal=True))
            | (pl.col("double").is_not_null() & ~pl.col("double").str.contains("\\", literal=True))
        )
    )
    rows = [
        fast.select(pl.col("asin").alias("item"), pl.coalesce("single", "double").alias("cate"))
    ]
    # the rest (no categories, escapes, unusual layout): the safe literal parser decides
    rest = cats.filter(~pl.col("asin").is_in(fast["asin"].implode()))
    slow: list[tuple[str, str | None]] = []
    for lineno, line, kept_asin in rest.select("lineno", "line", "asin").iter_rows():
        obj = _literal_line(path, lineno, line)
        slow.append((kept_asin, _category_of(path, lineno, obj)))
    reviewed_set = set(reviewed.to_list()) if slow_rows else set()
    seen = set(kept["asin"].to_list()) if slow_rows else set()
    for slow_asin, cate in slow_rows:
        if slow_asin in reviewed_set and slow_asin not in seen:
            slow.append((slow_asin, cate))
            seen.add(slow_asin)
    if slow:
        rows.append(pl.DataFrame(slow, schema={"item": pl.Utf8, "cate": pl.Utf8}, orient="row"))
    out = pl.concat(rows)
    no_cats = int(out["cate"].null_count())
    return out.drop_nulls("cate"), no_cats


def read_amazon_meta(path: Path, reviewed: pl.Series) -> tuple[pl.DataFrame, int]:
    """asin → category name (categories[-1][-1]) for the reviewed asins only.

    Returns (frame item/cate, number of reviewed meta rows without categories). Lines are
    parsed with regular expressions; any line they cannot read goes through `ast.literal_eval`
    (never `eval`), which also names the line when it is malformed.
    """
    return meta_categories(path, read_meta_lines(path), reviewed)


def _keep_known_items(
    frame: pl.DataFrame, item_cate: pl.DataFrame, items: pl.Series | None = None
) -> tuple[pl.DataFrame, int, int]:
    """(rows whose item has a category, number of rows dropped, number of items dropped)."""
    items = frame["item"].unique() if items is None else items
    unknown = items.filter(~items.is_in(item_cate["item"].implode()))
    if unknown.len() == 0:
        return frame, 0, 0
    kept = frame.filter(~pl.col("item").is_in(unknown.implode()))
    return kept, frame.height - kept.height, unknown.len()


def amazon_inputs(raw: Path, category: str = "Electronics") -> tuple[Path, Path]:
    """(reviews file, meta file) of one category in `raw`, or a one-line error."""
    from dinctl.data.sources import check_name

    check_name(category, "Amazon category")
    hint = (
        f"run `dinctl download amazon` or pass --raw DIR holding reviews_{category}_5.json "
        f"and meta_{category}.json (or .json.gz)"
    )
    reviews_path = find_input(
        raw, [f"reviews_{category}_5.json", f"reviews_{category}_5.json.gz"], "reviews", hint
    )
    meta_path = find_input(raw, [f"meta_{category}.json", f"meta_{category}.json.gz"], "meta", hint)
    for path in (reviews_path, meta_path):
        if path.suffix == ".gz":
            check_gzip(path)  # a gzip bomb never reaches the readers, which hold files whole
    return reviews_path, meta_path


def _amazon_interactions(
    reviews_path: Path,
    meta_path: Path,
    reviews: pl.DataFrame,
    reviewed: pl.Series,
    meta: pl.DataFrame,
    no_cats: int,
) -> Interactions:
    """Reviews whose item has a category, with the warnings about the others."""
    frame, missing, n_items = _keep_known_items(reviews, meta, reviewed)
    warnings: list[str] = []
    dropped: dict[str, int] = {}
    if missing:
        without = min(no_cats, n_items)
        absent = n_items - without
        parts = []
        if absent:
            parts.append(f"{absent} reviewed items are missing from {meta_path.name}")
        if without:
            parts.append(f"{without} reviewed items have no categories in {meta_path.name}")
        warnings.append(f"{' and '.join(parts)}: dropped them and their {missing} reviews")
        dropped = {"items": n_items, "reviews": missing}
    if frame.height == 0:
        raise DinctlError(
            f"no review of {reviews_path.name} has a product with categories in {meta_path.name}",
            hint="are the reviews and meta files of the same category?",
        )
    return Interactions(
        frame=frame.select("user", "item", "ts"),
        inputs=(reviews_path, meta_path),
        item_cate=meta,
        warnings=tuple(warnings),
        dropped=dropped,
    )


def read_amazon(raw: Path, category: str = "Electronics") -> Interactions:
    """Amazon 2014 5-core reviews + meta of one category → user, item, cate, ts."""
    reviews_path, meta_path = amazon_inputs(raw, category)
    reviews = read_amazon_reviews(reviews_path)
    reviewed = reviews["item"].unique()
    meta, no_cats = read_amazon_meta(meta_path, reviewed)
    return _amazon_interactions(reviews_path, meta_path, reviews, reviewed, meta, no_cats)


@dataclass(frozen=True)
class PendingAmazon:
    """The reviews, read; the meta file still being parsed in a thread."""

    frame: pl.DataFrame  # user, item, ts of every review, in file order
    inputs: tuple[Path, ...]
    resolve: Callable[[], Interactions]  # waits for the meta parse: what `read_amazon` returns


def start_amazon(raw: Path, pool: Executor, category: str = "Electronics") -> PendingAmazon:
    """`read_amazon` with the meta parse overlapped: with the reviews read, then with whatever
    the caller does with `frame` until it calls `resolve` (Polars releases the GIL)."""
    reviews_path, meta_path = amazon_inputs(raw, category)
    lines = pool.submit(read_meta_lines, meta_path)
    try:
        reviews = read_amazon_reviews(reviews_path)
    except BaseException:
        lines.cancel()
        raise

    def finish() -> Interactions:
        reviewed = reviews["item"].unique()
        meta, no_cats = meta_categories(meta_path, lines.result(), reviewed)
        return _amazon_interactions(reviews_path, meta_path, reviews, reviewed, meta, no_cats)

    done = pool.submit(finish)
    return PendingAmazon(frame=reviews, inputs=(reviews_path, meta_path), resolve=done.result)


# ---------------------------------------------------------------- MovieLens (CSV, folder or zip)


def _check_csv_lines(
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
            f"the line starts {_start(','.join(row))}"
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
                f"the line starts {_start(','.join(row))}"
            ) from None


def _non_finite(df: pl.DataFrame) -> bool:
    floats = [c for c in df.columns if df.schema[c] == pl.Float64]
    return (
        bool(floats) and not df.select(pl.all_horizontal(pl.col(floats).is_finite().all())).item()
    )


def _read_csv(name: str, path: Path, schema: dict[str, Any]) -> pl.DataFrame:
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
            _check_csv_lines(name, strict_lines(name, f), schema)
        if df.height == 0:
            raise DinctlError(f"{name} could not be read as CSV", hint="download it again")
        null_col = next(c for c in schema if c != "title" and df[c].null_count())
        raise DinctlError(f"{name}: column {null_col!r} has empty values")
    if df.height == 0:
        raise DinctlError(f"{name} has a header but no rows", hint="download it again")
    return df


def _movielens_files(raw: Path, scratch: Path, max_bytes: int) -> tuple[Path, dict[str, Path]]:
    """ratings.csv and movies.csv of a folder, or of a release zip (streamed into `scratch`)."""
    hint = "run `dinctl download movielens` or pass --raw DIR (or the ml-20m.zip itself)"
    if not raw.exists():
        raise DinctlError(f"raw input {raw} does not exist", hint=hint)
    if raw.is_dir():
        for folder in [raw, *sorted(p for p in raw.iterdir() if p.is_dir())]:
            if (folder / "ratings.csv").is_file():
                if not (folder / "movies.csv").is_file():
                    raise DinctlError(f"{folder / 'movies.csv'} does not exist", hint=hint)
                paths = {n: folder / n for n in ("ratings.csv", "movies.csv")}
                return folder / "ratings.csv", paths
        zips = sorted(raw.glob("*.zip"))
        if not zips:
            raise DinctlError(
                f"{raw / 'ratings.csv'} does not exist (nor a .zip in {raw})", hint=hint
            )
        raw = zips[0]
    files: dict[str, Path] = {}
    with open_zip(raw, str(raw), hint) as zf:
        names = zf.namelist()
        for want in ("ratings.csv", "movies.csv"):
            member = next((n for n in names if n == want or n.endswith("/" + want)), None)
            if member is None:
                raise DinctlError(f"{raw} holds no {want}", hint="is this a MovieLens release zip?")
            files[want] = scratch / want
            extract_member(zf, member, scratch / want, str(raw), max_bytes)
            max_bytes -= (scratch / want).stat().st_size
    return raw, files


def read_movielens(raw: Path, max_extract_bytes: int = MAX_EXTRACT_BYTES) -> Interactions:
    """MovieLens ratings.csv + movies.csv → user, item, cate (first genre), ts, label.

    A release zip's members are streamed to a temporary folder (within `max_extract_bytes`)
    and read from there: a member is never held in memory whole.
    """
    with tempfile.TemporaryDirectory(prefix="dinctl-ml-") as scratch:
        source, files = _movielens_files(Path(raw), Path(scratch), max_extract_bytes)
        where = f"{source}" if source.suffix == ".zip" else str(source.parent)
        ratings = _read_csv(f"{where}/ratings.csv", files.pop("ratings.csv"), RATINGS_SCHEMA)
        movies = _read_csv(f"{where}/movies.csv", files.pop("movies.csv"), MOVIES_SCHEMA)
    return _movielens_interactions(source, where, ratings, movies)


def _movielens_interactions(
    source: Path, where: str, ratings: pl.DataFrame, movies: pl.DataFrame
) -> Interactions:
    movies = movies.select(
        pl.col("movieId").alias("item"),
        pl.col("genres").fill_null("(no genres listed)").str.split("|").list.first().alias("cate"),
    ).unique("item", keep="first")
    frame = ratings.select(
        pl.col("userId").alias("user"),
        pl.col("movieId").alias("item"),
        pl.col("timestamp").alias("ts"),
        (pl.col("rating") >= 4).cast(pl.Int8).alias("label"),  # label = rating ≥ 4
    )
    frame, missing, n_items = _keep_known_items(frame, movies)
    warnings: list[str] = []
    dropped: dict[str, int] = {}
    if missing:
        warnings.append(
            f"{n_items} rated movies are missing from movies.csv: "
            f"dropped them and their {missing} ratings"
        )
        dropped = {"items": n_items, "ratings": missing}
    inputs = (source,) if source.suffix == ".zip" else (source, source.parent / "movies.csv")
    if frame.height == 0:
        raise DinctlError(f"no rated movie of {where}/ratings.csv is in movies.csv")
    return Interactions(
        frame=frame,
        inputs=inputs,
        item_cate=movies,
        warnings=tuple(warnings),
        dropped=dropped,
    )


# ---------------------------------------------------------------- your own logs


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


def field_name(column: str) -> str:
    """The schema's name of a log column: lower case, other characters → _ ("Ad Slot" → ad_slot)."""
    name = re.sub(r"[^a-z0-9_]", "_", column.strip().lower())
    return name if name[:1].isalpha() else f"f_{name}"


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
            f"cannot read schema file {path}: {_first_line(err)}",
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
        if len(behaviour) < 2:
            raise DinctlError(
                f"schema file {path}: 'behaviour' needs at least the item and the "
                f"category column, got {list(behaviour)}"
            )
        item, category, behaviour = behaviour[0], behaviour[1], behaviour[2:]
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


TIME_HINT = "store Unix seconds, a Parquet timestamp or ISO 8601 text (e.g. 2024-05-01T12:00:00Z)"
INT64_MAX = 2**63 - 1


def _read_log_file(path: Path) -> pl.DataFrame:
    """The log as a frame; a CSV that cannot be parsed names its first bad line."""
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
            raise DinctlError(f"cannot read {path}: {_first_line(err)}") from None
    if path.stat().st_size == 0:
        raise DinctlError(f"{path} is empty", hint="pass a file with a header and rows")
    if suffix == ".gz":
        check_gzip(path)
    sep = "\t" if ".tsv" in path.suffixes else ","
    try:
        return pl.read_csv(path, separator=sep, infer_schema_length=10_000)
    except Exception as err:  # noqa: BLE001 - polars raises several types; find the bad line
        opener = gzip.open if suffix == ".gz" else open
        try:
            with opener(path, "rb") as f:
                _check_csv_lines(str(path), strict_lines(str(path), f), {}, sep)
        except (OSError, EOFError) as io_err:
            raise DinctlError(f"cannot read {path}: {io_err}") from None
        raise DinctlError(f"cannot read {path}: {_first_line(err)}") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:120] if text else type(err).__name__


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
    df = _read_log_file(path)
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
    bad = (~s.is_finite()).arg_true()
    if len(bad):
        raise DinctlError(
            f"{path}: numeric column {col!r} holds {s[bad[0]]} in data row "
            f"{bad[0] + 1}, expected a finite number"
        )
    return s


def read_user_features(path: Path, user_col: str, cols: tuple[str, ...]) -> pl.DataFrame:
    """The user profile file → `user` + one id column per field (named by `field_name`); each
    user on one row, every value present."""
    df = _read_log_file(path)
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
