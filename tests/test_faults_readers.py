"""Hostile raw inputs of `dinctl preprocess` (issue 13: items 10 and 18).

Every Polars dtype a log's time or id column may have gives a correct result or one line
naming the column (and the row); ISO 8601 text times are accepted as the README promises;
out-of-range JSON numbers, non-UTF-8 bytes and CSV rows with extra fields name their line.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
from pathlib import Path

import polars as pl
import pytest

from dinctl.data.datasets.amazon import read_amazon_reviews
from dinctl.data.datasets.logs import LogColumns, read_logs
from dinctl.data.datasets.movielens import read_movielens
from dinctl.errors import DinctlError

pytestmark = pytest.mark.notorch  # torch-free: `make test-py` runs it on 3.10 and 3.13

BASE = {"user": ["a", "a", "b", "b"], "item": ["x", "y", "x", "z"], "category": ["c"] * 4}


def _parquet(tmp_path: Path, **columns: pl.Series) -> Path:
    df = pl.DataFrame({**BASE, "timestamp": [1, 2, 3, 4]})
    df = df.with_columns(s.alias(name) for name, s in columns.items())
    path = tmp_path / "log.parquet"
    df.write_parquet(path)
    return path


def _csv(tmp_path: Path, times: list[str]) -> Path:
    rows = [f"u{i % 2},i{i},c,{t}" for i, t in enumerate(times)]
    path = tmp_path / "log.csv"
    path.write_text("user,item,category,timestamp\n" + "\n".join(rows) + "\n")
    return path


def _error(path: Path) -> str:
    with pytest.raises(DinctlError) as err:
        read_logs(path, LogColumns())
    return err.value.message


# ------------------------------------------------------------------ 10. time columns


@pytest.mark.parametrize(
    ("times", "expected_us"),
    [
        (["2020-01-01T10:00:00+02:00", "2020-01-01T10:00:00Z"], [1577865600, 1577872800]),
        (["2020-01-01T10:00:00Z", "2020-01-02T10:00:00Z"], [1577872800, 1577959200]),
        (["2020-01-01 10:00:00", "2020-01-01T10:00:00.5"], [1577872800, 1577872800.5]),
        (["2020-01-01", "2020-01-02"], [1577836800, 1577923200]),
    ],
)
def test_csv_iso_times_are_accepted(
    tmp_path: Path, times: list[str], expected_us: list[float]
) -> None:
    frame = read_logs(_csv(tmp_path, times), LogColumns()).frame
    assert frame["ts"].to_list() == [int(t * 1_000_000) for t in expected_us]


def test_iso_time_order_matches_instants_across_offsets(tmp_path: Path) -> None:
    times = ["2020-01-01T10:00:00+02:00", "2020-01-01T09:00:00Z", "2020-01-01T07:30:00-01:00"]
    ts = read_logs(_csv(tmp_path, times), LogColumns()).frame["ts"].to_list()
    assert ts[0] < ts[2] < ts[1]  # 08:00Z, 09:00Z, 08:30Z


@pytest.mark.parametrize(
    ("series", "expected"),
    [
        (pl.Series([1, 2, 3, 2**64 - 1], dtype=pl.UInt64),
         "holds 18446744073709551615 in data row 4, out of the 64-bit range"),
        (pl.Series([1.0, 2.0, 3.0, 1e300]), "holds 1e+300, too large for a time in data row 4"),
        (pl.Series([1.5, 2.0, 3.0, 1e15]), "holds 1e+15, too large for a time in data row 4"),
        (pl.Series([1.0, float("inf"), 3.0, 4.0]), "is not a finite number in data row 2"),
        (pl.Series([dt.timedelta(1)] * 4), "is a duration, expected a number or a datetime"),
        (pl.Series([dt.time(1, i) for i in range(4)]),
         "is a time of day, expected a number or a datetime"),
        (pl.Series([[1], [2], [3], [4]]), "is List(Int64), expected a number or a datetime"),
        (pl.Series([True, False, True, False]), "is Boolean, expected a number or a datetime"),
        (pl.Series(["1", "2", "x", "4"]),
         "holds 'x' in data row 3, expected a number like the other rows"),
        (pl.Series(["2020-01-01", "soon", "2020-01-03", "2020-01-04"]),
         "holds 'soon' in data row 2, expected a number or an ISO 8601 date/time"),
    ],
)  # fmt: skip
def test_bad_time_columns_are_one_line(tmp_path: Path, series: pl.Series, expected: str) -> None:
    path = _parquet(tmp_path, timestamp=series)
    assert _error(path) == f"{path}: time column 'timestamp' {expected}"


@pytest.mark.parametrize(
    ("series", "expected"),
    [
        (pl.Series([1, 2, 3, 4], dtype=pl.UInt64), [1, 2, 3, 4]),
        (pl.Series(["1", "2", "3", "4"]), [1, 2, 3, 4]),
        (pl.Series([1, 2, 3, 4]).cast(pl.Decimal(10, 2)), [1, 2, 3, 4]),
        (pl.Series([dt.date(2020, 1, i) for i in range(1, 5)]),
         [1577836800_000000 + 86400_000000 * i for i in range(4)]),
        (pl.Series([dt.datetime(2020, 1, 1, i) for i in range(4)])
         .dt.replace_time_zone("Europe/Paris"),
         [1577833200_000000 + 3600_000000 * i for i in range(4)]),
    ],
)  # fmt: skip
def test_good_time_dtypes(tmp_path: Path, series: pl.Series, expected: list[int]) -> None:
    frame = read_logs(_parquet(tmp_path, timestamp=series), LogColumns()).frame
    assert frame["ts"].to_list() == expected


# ------------------------------------------------------------------ 10. id columns


@pytest.mark.parametrize(
    ("column", "series", "expected"),
    [
        ("user", pl.Series([[1], [2], [3], [4]]),
         "has type List(Int64), expected integers or strings"),
        ("user", pl.Series([{"a": 1}] * 4),
         "has type Struct({'a': Int64}), expected integers or strings"),
        ("item", pl.Series([dt.timedelta(1)] * 4),
         "has type Duration(time_unit='us'), expected integers or strings"),
        ("user", pl.Series([1.0, 2.5, 3.0, 4.0]),
         "holds 2.5 in data row 2, expected whole numbers"),
        ("item", pl.Series([1.0, 2.0, float("nan"), 4.0]),
         "holds nan in data row 3, expected whole numbers"),
    ],
)  # fmt: skip
def test_bad_id_columns_are_one_line(
    tmp_path: Path, column: str, series: pl.Series, expected: str
) -> None:
    path = _parquet(tmp_path, **{column: series})
    assert _error(path) == f"{path}: id column {column!r} {expected}"


def test_unsigned_64_bit_ids_are_kept_exactly(tmp_path: Path) -> None:
    ids = pl.Series([2**64 - 1, 2**64 - 2, 2**64 - 1, 5], dtype=pl.UInt64)
    frame = read_logs(_parquet(tmp_path, user=ids), LogColumns()).frame
    assert frame["user"].to_list() == [str(2**64 - 1), str(2**64 - 2), str(2**64 - 1), "5"]


# ------------------------------------------------------------------ 18. errors that name a line


def test_log_csv_row_with_extra_fields_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("user,item,category,timestamp\n" + "u,i,c,1\n" * 20_000 + "u,i,c,2,9\n")
    assert _error(path) == f"{path}:20002: expected 4 fields, got 5; the line starts 'u,i,c,2,9'"


def test_log_csv_with_non_utf8_bytes_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_bytes(b"user,item,category,timestamp\nu,i,c,1\nu,\xffi,c,2\n")
    assert _error(path) == f"{path}:3: not valid UTF-8 text (byte 3 of the line is b'\\xff')"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b'{"reviewerID": "u", "asin": "b", "unixReviewTime": 99999999999999999999999}',
         "'unixReviewTime' 99999999999999999999999 is out of range (a 64-bit integer of Unix "
         "seconds expected)"),
        (b'{"reviewerID": "u", "asin": "b", "unixReviewTime": 1e400}',
         "'unixReviewTime' must be an integer, got inf"),
        (b'{"reviewerID": "u\xff", "asin": "b", "unixReviewTime": 2}',
         "not valid UTF-8 text (byte 18 of the line is b'\\xff')"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("gz", [False, True])
def test_review_lines_out_of_range_or_not_utf8(
    tmp_path: Path, line: bytes, expected: str, gz: bool
) -> None:
    good = json.dumps({"reviewerID": "u", "asin": "a", "unixReviewTime": 1}).encode()
    body = good + b"\n" + line + b"\n"
    path = tmp_path / ("r.json.gz" if gz else "r.json")
    path.write_bytes(gzip.compress(body) if gz else body)
    with pytest.raises(DinctlError) as err:
        read_amazon_reviews(path)
    assert err.value.message == f"{path}:2: {expected}"


@pytest.mark.parametrize(
    ("ratings", "expected"),
    [
        (b"1,1,4.0,1\n1,1,4.0,2,7\n", "3: expected 4 fields, got 5; the line starts '1,1,4.0,2,7'"),
        (b"1,1,4.0,1\n1,1\xff,4.0,2\n", "3: not valid UTF-8 text (byte 4 of the line is b'\\xff')"),
        (b"1,1,4.0,1\n1,1,4.0,99999999999999999999999\n",
         "3: 'timestamp' must be a 64-bit integer, got '99999999999999999999999'; the line starts "
         "'1,1,4.0,99999999999999999999999'"),
        (b"1,1,4.0,1\n1,1,nan,2\n",
         "3: 'rating' must be a finite number, got 'nan'; the line starts '1,1,nan,2'"),
        (b"1,1,4.0,1\n1,1,1e999,2\n",
         "3: 'rating' must be a finite number, got '1e999'; the line starts '1,1,1e999,2'"),
    ],
)  # fmt: skip
def test_movielens_csv_errors_name_the_line(tmp_path: Path, ratings: bytes, expected: str) -> None:
    (tmp_path / "movies.csv").write_text("movieId,title,genres\n1,A,Drama\n")
    (tmp_path / "ratings.csv").write_bytes(b"userId,movieId,rating,timestamp\n" + ratings)
    with pytest.raises(DinctlError) as err:
        read_movielens(tmp_path)
    assert err.value.message == f"{tmp_path}/ratings.csv:{expected}"


def _bomb(path: Path, size: int) -> Path:
    """A .gz of `size` zero bytes: a few KB that expand ~1000x."""
    with gzip.open(path, "wb", compresslevel=9) as f:
        block = b"\0" * (1 << 20)
        for _ in range(size >> 20):
            f.write(block)
    return path


def test_gzip_bombs_are_refused_before_any_reader_holds_them(tmp_path: Path) -> None:
    from dinctl.data.datasets.amazon import amazon_inputs

    raw = tmp_path / "raw"
    raw.mkdir()
    _bomb(raw / "reviews_Electronics_5.json.gz", 64 << 20)
    (raw / "meta_Electronics.json").write_text("{'asin': 'a'}\n")
    with pytest.raises(DinctlError, match=r"reviews_Electronics_5\.json\.gz expands more than "
                       r"200× .*refusing a likely gzip bomb"):  # fmt: skip
        amazon_inputs(raw)
    log = _bomb(tmp_path / "log.csv.gz", 64 << 20)
    columns = LogColumns(user="u", item="i", category="c", time="t")
    with pytest.raises(DinctlError, match="log.csv.gz expands more than 200×"):
        read_logs(log, columns)


def test_gzip_limits_bytes_and_corruption(tmp_path: Path) -> None:
    from dinctl.data.archives import check_gzip

    real = tmp_path / "real.json.gz"
    with gzip.open(real, "wb") as f:  # text compresses ~5x: accepted
        f.write(b"".join(json.dumps({"k": i}).encode() + b"\n" for i in range(200_000)))
    check_gzip(real)
    with pytest.raises(DinctlError, match="expands to more than 1000 bytes"):
        check_gzip(real, max_bytes=1000)
    broken = tmp_path / "broken.json.gz"
    broken.write_bytes(real.read_bytes()[:500])
    with pytest.raises(DinctlError, match="cannot read .*broken.json.gz"):
        check_gzip(broken)
