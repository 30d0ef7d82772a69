"""Amazon 2014 (McAuley et al.): reviews_<C>_5.json + meta_<C>.json of one category.

Sources: the 5-core review file and the metadata file of a category, from SNAP or a mirror.
Reader: reviews are strict JSON lines (reviewerID, asin, unixReviewTime); meta lines are
Python dict literals, read with regular expressions and, for any line they cannot read,
`ast.literal_eval` (never `eval`); the category is categories[-1][-1]. Protocol: sliding
windows with one drawn negative per positive (docs/protocols.md).
"""

from __future__ import annotations

import ast
import json
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from dinctl.data.archives import check_gzip
from dinctl.data.download import fetch_source
from dinctl.data.preprocess import build_dataset
from dinctl.data.readers import (
    Interactions,
    PendingInteractions,
    expect_dict,
    find_input,
    keep_known_items,
    line_start,
    open_text,
    read_bytes,
)
from dinctl.data.reporting import Status, Warn, no_warnings, quiet
from dinctl.data.sources import RemoteFile, Source, check_name, check_url, join_url
from dinctl.errors import DinctlError

REVIEW_KEYS = {"reviewerID": pl.Utf8, "asin": pl.Utf8, "unixReviewTime": pl.Int64}

# The 2014 Amazon release (McAuley et al.), per-category 5-core reviews + metadata: the paper's
# source (the authors' `utils/0_download_raw.sh` fetches these two Electronics files from SNAP).
# Tried in order. SNAP publishes no checksums for these files, so they are verified by the size
# and sha256 recorded in MANIFEST.json at first download.
AMAZON_MIRRORS: tuple[str, ...] = (
    "https://snap.stanford.edu/data/amazon/productGraph/categoryFiles/",
    "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/",
    "https://jmcauley.ucsd.edu/data/amazon/productGraph/categoryFiles/",
    "http://jmcauley.ucsd.edu/data/amazon/productGraph/categoryFiles/",
)

# The 24 categories with a 5-core file in the 2014 release.
AMAZON_CATEGORIES: tuple[str, ...] = (
    "Amazon_Instant_Video",
    "Apps_for_Android",
    "Automotive",
    "Baby",
    "Beauty",
    "Books",
    "CDs_and_Vinyl",
    "Cell_Phones_and_Accessories",
    "Clothing_Shoes_and_Jewelry",
    "Digital_Music",
    "Electronics",
    "Grocery_and_Gourmet_Food",
    "Health_and_Personal_Care",
    "Home_and_Kitchen",
    "Kindle_Store",
    "Movies_and_TV",
    "Musical_Instruments",
    "Office_Products",
    "Patio_Lawn_and_Garden",
    "Pet_Supplies",
    "Sports_and_Outdoors",
    "Tools_and_Home_Improvement",
    "Toys_and_Games",
    "Video_Games",
)


def amazon_source(category: str = "Electronics", mirrors: tuple[str, ...] = ()) -> Source:
    """The 5-core review file and the metadata file of one 2014 Amazon category."""
    check_name(category, "Amazon category")
    for mirror in mirrors:
        check_url(mirror, "--mirror")
    if category not in AMAZON_CATEGORIES and not mirrors:
        raise DinctlError(
            f"unknown Amazon category {category!r}: expected one of the 2014 release's "
            f"{len(AMAZON_CATEGORIES)} 5-core categories",
            hint="e.g. --category Electronics (see `dinctl download amazon --help`)",
        )
    bases = mirrors or AMAZON_MIRRORS
    names = (f"reviews_{category}_5.json.gz", f"meta_{category}.json.gz")
    files = tuple(RemoteFile(name, tuple(join_url(b, name) for b in bases)) for name in names)
    return Source("amazon", category, files)


def _check_review_lines(path: Path) -> None:
    """Slow path: find the first bad line of a reviews file and raise naming it."""
    try:
        _check_review_text(path)
    except (OSError, EOFError) as err:  # a truncated or corrupt .gz
        raise DinctlError(f"cannot read {path}: {err}", hint="download it again") from None


def _check_review_text(path: Path) -> None:
    for lineno, line in enumerate(open_text(path), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except RecursionError:
            raise DinctlError(f"{path}:{lineno}: JSON nested too deeply") from None
        except json.JSONDecodeError as err:
            raise DinctlError(
                f"{path}:{lineno}: not valid JSON ({err.msg}); the line starts {line_start(line)}",
                hint="each line of a reviews file must be one JSON object",
            ) from None
        expect_dict(obj, path, lineno, line, "a JSON object")
        for key in REVIEW_KEYS:
            if key not in obj or obj[key] is None:
                raise DinctlError(
                    f"{path}:{lineno}: missing key {key!r}; the line starts {line_start(line)}",
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
            f"{path}:{lineno}: not a Python literal ({reason}); the line starts {line_start(line)}",
            hint="each line of a meta file must be one Python dict literal",
        ) from None
    return expect_dict(obj, path, lineno, line, "a dict")


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
    data = read_bytes(path)
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
            start = line_start(line)
            raise DinctlError(
                f"{path}:{lineno}: missing key 'asin' (a string); the line starts {start}"
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


def amazon_inputs(raw: Path, category: str = "Electronics") -> tuple[Path, Path]:
    """(reviews file, meta file) of one category in `raw`, or a one-line error."""
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
    frame, missing, n_items = keep_known_items(reviews, meta, reviewed)
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


def start_amazon(raw: Path, pool: Executor, category: str = "Electronics") -> PendingInteractions:
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
    return PendingInteractions(frame=reviews, inputs=(reviews_path, meta_path), resolve=done.result)


def preprocess_amazon(
    raw: Path,
    out: Path,
    *,
    category: str = "Electronics",
    seed: int = 1234,
    valid: bool = True,
    overwrite: bool = False,
    status: Status = quiet,
    warn: Warn = no_warnings,
) -> dict[str, Any]:
    """Amazon 2014 reviews + meta of `category` → data folder; returns the summary."""
    return build_dataset(
        lambda pool: start_amazon(raw, pool, category),
        out,
        inputs=[("raw folder", raw)],
        dataset=f"amazon-{category}",
        protocol="windows",
        seed=seed,
        valid=valid,
        overwrite=overwrite,
        options={"category": category},
        status=status,
        warn=warn,
    )


fetch = fetch_source  # the files as published: nothing to convert
