"""`dinctl preprocess`: the bundled sample data end to end, the readers, and every bad input."""

from __future__ import annotations

import gzip
import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from dinctl.cli.main import app
from dinctl.data.store import load_dataset

runner = CliRunner()
SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"


def _review(user: str, asin: str, ts: int) -> str:
    return json.dumps(
        {
            "reviewerID": user,
            "asin": asin,
            "reviewerName": "K",
            "helpful": [0, 0],
            "reviewText": "fine",
            "overall": 5.0,
            "summary": "ok",
            "unixReviewTime": ts,
            "reviewTime": "01 1, 2014",
        }
    )


def _meta(asin: str, cate: str) -> str:
    return repr({"asin": asin, "title": 'Kid\'s "7" cable', "categories": [["Electronics", cate]]})


def _amazon(tmp: Path, reviews: list[str], meta: list[str], gz: bool = False) -> Path:
    raw = tmp / "raw"
    raw.mkdir(exist_ok=True)
    for name, lines in (("reviews_Electronics_5.json", reviews), ("meta_Electronics.json", meta)):
        text = "".join(line + "\n" for line in lines)
        if gz:
            (raw / f"{name}.gz").write_bytes(gzip.compress(text.encode()))
        else:
            (raw / name).write_text(text)
    return raw


GOOD_REVIEWS = [
    _review("U2", "A1", 3),
    _review("U1", "A1", 1),
    _review("U1", "A2", 2),
    _review("U1", "A3", 3),
    _review("U2", "A2", 1),
    _review("U2", "A4", 2),
]
GOOD_META = [_meta("A1", "Cables"), _meta("A2", "Mice"), _meta("A3", "Cables"), _meta("A4", "TVs")]


def _invoke(args: list[str]) -> object:
    return runner.invoke(app, ["preprocess", *args])


def _leftovers(tmp: Path) -> list[str]:
    return sorted(p.name for p in tmp.iterdir() if p.name not in ("raw", "in.csv", "ml.zip"))


def _error(tmp: Path, args: list[str], expected: str) -> None:
    result = _invoke([*args, "--out", str(tmp / "out")])
    assert result.exit_code == 1, result.output  # type: ignore[attr-defined]
    lines = result.stderr.splitlines()  # type: ignore[attr-defined]
    assert lines[0] == f"error: {expected}"
    assert result.stdout == ""  # type: ignore[attr-defined]
    assert _leftovers(tmp) == []  # no output folder, no temporary folder


# ----------------------------------------------------------------------- the sample data


def test_sample_amazon_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "amazon"
    result = _invoke(["amazon", "--raw", str(SAMPLE / "amazon"), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["users"] == 250 and summary["items"] == 308 and summary["categories"] == 22
    assert summary["behaviours"] == 2098
    # rows: 2 per behaviour after each user's first; test = 2 per user
    assert summary["samples"]["test"] == 500
    assert summary["samples"]["train"] + summary["samples"]["valid"] == 2 * (2098 - 2 * 250)
    assert "users" in result.stderr and "history length" in result.stderr
    ds = load_dataset(out)
    assert ds.n_users == 250 and ds.meta["protocol"] == "amazon-windows"
    assert ds.meta["inputs"][0]["name"] == "reviews_Electronics_5.json"
    assert len(ds.meta["inputs"][0]["sha256"]) == 64
    items = pl.read_parquet(out / "items.parquet")
    assert "Kids' Tablets" in items["cate_name"].to_list()  # a double-quoted literal
    # planted structure: positives share the history's categories far more than negatives
    train = ds.split("train")
    share = []
    for label in (1, 0):
        rows = train.label == label
        hit = [
            int(c in set(ds.seq_cates[ds.seq_offsets[u] : ds.seq_offsets[u] + h].tolist()))
            for u, h, c in zip(
                train.user[rows], train.hist_len[rows], train.cate[rows], strict=True
            )
        ]
        share.append(sum(hit) / len(hit))
    assert share[0] > 0.6 > 0.3 > share[1]


def test_sample_movielens_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "ml"
    result = _invoke(["movielens", "--raw", str(SAMPLE / "movielens"), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["users"] == 300 and summary["behaviours"] == 7001
    assert sum(summary["samples"].values()) == 7001
    ratings = pl.read_csv(SAMPLE / "movielens" / "ratings.csv")
    positives = int((ratings["rating"] >= 4).sum())
    ds = load_dataset(out)
    total = sum(int(ds.split(s).label.sum()) for s in ("train", "valid", "test"))
    assert total == positives  # label = rating ≥ 4


def test_overwrite_and_existing_out(tmp_path: Path) -> None:
    raw = _amazon(tmp_path, GOOD_REVIEWS, GOOD_META)
    out = tmp_path / "out"
    assert _invoke(["amazon", "--raw", str(raw), "--out", str(out)]).exit_code == 0
    result = _invoke(["amazon", "--raw", str(raw), "--out", str(out)])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"error: {out} already exists",
        "hint: pass --overwrite to replace it",
    ]
    result = _invoke(["amazon", "--raw", str(raw), "--out", str(out), "--overwrite", "--seed", "9"])
    assert result.exit_code == 0
    assert load_dataset(out).meta["seed"] == 9
    assert _leftovers(tmp_path) == ["out"]


def test_tiny_amazon_by_hand_and_gzip(tmp_path: Path) -> None:
    raw = _amazon(tmp_path, GOOD_REVIEWS, GOOD_META, gz=True)
    out = tmp_path / "out"
    result = _invoke(["amazon", "--raw", str(raw), "--out", str(out), "--no-valid"])
    assert result.exit_code == 0, result.output
    ds = load_dataset(out)
    seq = dict(pl.read_parquet(out / "sequences.parquet").select("raw_user", "items").rows())
    assert seq == {"U1": [1, 2, 3], "U2": [2, 4, 1]}  # asins A1..A4 → 1..4; by time
    cates = pl.read_parquet(out / "items.parquet")["cate_name"].to_list()
    assert cates == ["Cables", "Mice", "Cables", "TVs"]
    assert len(ds.split("train")) == 4 and len(ds.split("test")) == 4
    assert not ds.has_split("valid")


# ----------------------------------------------------------------------- bad input


def test_missing_raw_files(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    raw = tmp_path / "raw"
    _error(
        tmp_path,
        ["amazon", "--raw", str(raw)],
        f"{raw}/reviews_Electronics_5.json does not exist (reviews)",
    )
    _error(
        tmp_path,
        ["amazon", "--raw", str(tmp_path / "nope")],
        f"raw folder {tmp_path}/nope does not exist",
    )
    (raw / "reviews_Books_5.json").write_text(GOOD_REVIEWS[0] + "\n")
    _error(
        tmp_path,
        ["amazon", "--raw", str(raw), "--category", "Books"],
        f"{raw}/meta_Books.json does not exist (meta)",
    )


def _meta_with_line_3(line: str) -> list[str]:
    return [*GOOD_META[:2], line, GOOD_META[3]]


# each case: the reviews and meta lines written, then the one-line error ("<raw>": the raw folder)
BAD_AMAZON_INPUT = [
    pytest.param(
        [
            GOOD_REVIEWS[0],
            '{"reviewerID": "U1", "asin": "A2" "unixReviewTime": 2}',
            *GOOD_REVIEWS[1:],
        ],
        GOOD_META,
        "<raw>/reviews_Electronics_5.json:2: not valid JSON (Expecting ',' delimiter); "
        'the line starts \'{"reviewerID": "U1", "asin": "A2" "unixReviewTime": 2}\'',
        id="malformed-review-line",
    ),
    pytest.param(
        [*GOOD_REVIEWS, json.dumps({"reviewerID": "U1", "asin": "A2"})],
        GOOD_META,
        "<raw>/reviews_Electronics_5.json:7: missing key 'unixReviewTime'; "
        'the line starts \'{"reviewerID": "U1", "asin": "A2"}\'',
        id="review-missing-key",
    ),
    pytest.param(
        [
            json.dumps({"reviewerID": "U1", "asin": "A2", "unixReviewTime": "yesterday"}),
            *GOOD_REVIEWS,
        ],
        GOOD_META,
        "<raw>/reviews_Electronics_5.json:1: 'unixReviewTime' must be an integer, got 'yesterday'",
        id="review-time-of-wrong-type",
    ),
    pytest.param(
        [], GOOD_META, "<raw>/reviews_Electronics_5.json is empty: no reviews", id="empty-reviews"
    ),
    pytest.param(
        GOOD_REVIEWS, [], "<raw>/meta_Electronics.json is empty: no products", id="empty-meta"
    ),
    pytest.param(
        GOOD_REVIEWS,
        _meta_with_line_3("{'asin': 'A3', 'categories': [['Electronics', 'Cables']"),
        "<raw>/meta_Electronics.json:3: not a Python literal (SyntaxError); "
        "the line starts \"{'asin': 'A3', 'categories': [['Electronics', 'Cables']\"",
        id="malformed-meta-line",
    ),
    # a line cut after a well-formed categories field must not slip through the fast path
    pytest.param(
        GOOD_REVIEWS,
        _meta_with_line_3(
            "{'asin': 'A3', 'categories': [['Electronics', 'Cables']], 'title': 'USB cab"
        ),
        "<raw>/meta_Electronics.json:3: not a Python literal (SyntaxError); "
        "the line starts \"{'asin': 'A3', 'categories': [['Electronics', 'Cables']], 't…\"",
        id="meta-line-truncated-after-its-categories",
    ),
    # never evaluated: the test below checks that no file 'pwned' appears
    pytest.param(
        GOOD_REVIEWS,
        _meta_with_line_3(
            "{'asin': 'A3', 'categories': [[__import__('os').system('touch pwned')]]}"
        ),
        "<raw>/meta_Electronics.json:3: not a Python literal (ValueError); "
        "the line starts \"{'asin': 'A3', 'categories': [[__import__('os').system('touc…\"",
        id="meta-is-never-evaluated",
    ),
    pytest.param(
        GOOD_REVIEWS,
        [_meta("Z9", "Cables")],
        "no review of reviews_Electronics_5.json has a product with categories in "
        "meta_Electronics.json",
        id="no-reviewed-item-in-meta",
    ),
]


@pytest.mark.parametrize(("reviews", "meta", "expected"), BAD_AMAZON_INPUT)
def test_bad_amazon_input_is_a_one_line_error(
    tmp_path: Path, reviews: list[str], meta: list[str], expected: str
) -> None:
    raw = _amazon(tmp_path, reviews, meta)
    _error(tmp_path, ["amazon", "--raw", str(raw)], expected.replace("<raw>", str(raw)))
    assert not Path("pwned").exists()  # no input line is ever run as code


def test_reviewed_items_missing_from_meta_or_without_categories(tmp_path: Path) -> None:
    no_cats = repr({"asin": "A4", "title": "x", "categories": []})
    reviews = [*GOOD_REVIEWS, _review("U3", "A5", 1), _review("U3", "A6", 2)]
    meta = [GOOD_META[0], GOOD_META[2], no_cats, _meta("A5", "TVs"), _meta("A6", "TVs")]
    raw = _amazon(tmp_path, reviews, meta)  # A2 is missing, A4 has no categories
    out = tmp_path / "out"
    result = _invoke(["amazon", "--raw", str(raw), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[0] == (
        "warning: 1 reviewed items are missing from meta_Electronics.json and 1 reviewed items "
        "have no categories in meta_Electronics.json: dropped them and their 3 reviews"
    )
    summary = json.loads(result.stdout)
    assert summary["dropped"] == {"items": 2, "reviews": 3}
    assert summary["items"] == 4 and summary["behaviours"] == 5
    assert load_dataset(out).meta["warnings"][0].startswith("1 reviewed items are missing")


# ----------------------------------------------------------------------- MovieLens input


def _ml_files(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,10,4.0,5\n1,20,3.5,6\n2,10,5.0,1\n2,30,1.0,2\n"
    )
    (folder / "movies.csv").write_text(
        'movieId,title,genres\n10,"Heat, The (1995)",Crime|Drama\n20,Up (2009)'
        ",Animation\n30,X (2000),(no genres listed)\n"
    )


def test_movielens_from_release_zip_subfolder(tmp_path: Path) -> None:
    _ml_files(tmp_path / "src" / "ml-20m")
    archive = tmp_path / "ml.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name in ("ratings.csv", "movies.csv"):
            zf.write(tmp_path / "src" / "ml-20m" / name, f"ml-20m/{name}")
    shutil.rmtree(tmp_path / "src")
    out = tmp_path / "out"
    result = _invoke(["movielens", "--raw", str(archive), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    items = pl.read_parquet(out / "items.parquet")
    assert items["cate_name"].to_list() == ["Crime", "Animation", "(no genres listed)"]
    ds = load_dataset(out)
    labels = {
        (int(u), int(i)): int(y)
        for s in ("train", "valid", "test")
        for u, i, y in zip(ds.split(s).user, ds.split(s).item, ds.split(s).label, strict=True)
    }
    assert labels == {(1, 1): 1, (1, 2): 0, (2, 1): 1, (2, 3): 0}  # rating ≥ 4


def test_movielens_folder_with_subfolder(tmp_path: Path) -> None:
    _ml_files(tmp_path / "raw" / "ml-latest-small")
    out = tmp_path / "out"
    result = _invoke(["movielens", "--raw", str(tmp_path / "raw"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)


# ----------------------------------------------------------------------- your own logs


def test_logs_csv_with_named_columns(tmp_path: Path) -> None:
    log = tmp_path / "in.csv"
    log.write_text(
        "uid,pid,kind,when\nb,x,k1,3\nb,y,k2,1\nb,z,k1,2\na,x,k1,1\na,w,k2,5\na,z,k1,9\n"
    )
    out = tmp_path / "out"
    args = ["logs", str(log), "--out", str(out), "--json", "--user-col", "uid"]
    args += ["--item-col", "pid", "--category-col", "kind", "--time-col", "when"]
    result = _invoke(args)
    assert result.exit_code == 0, result.output
    seq = dict(pl.read_parquet(out / "sequences.parquet").select("raw_user", "items").rows())
    assert seq == {"a": [2, 1, 4], "b": [3, 4, 2]}  # w, x, y, z → 1..4, by time
    summary = json.loads(result.stdout)
    assert summary["samples"] == {"train": 0, "valid": 4, "test": 4}


def test_logs_with_label_column_and_parquet(tmp_path: Path) -> None:
    log = tmp_path / "in.parquet"
    pl.DataFrame(
        {
            "user": [1, 1, 2],
            "item": [5, 6, 5],
            "category": ["a", "b", "a"],
            "timestamp": [1, 2, 3],
            "click": [1, 0, 1],
        }
    ).write_parquet(log)
    out = tmp_path / "out"
    result = _invoke(["logs", str(log), "--out", str(out), "--label-col", "click", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["protocol"] == "movielens-user-split"
    (tmp_path / "in.parquet").unlink()


def test_logs_fractional_and_subsecond_times_keep_their_order(tmp_path: Path) -> None:
    """x at 0.9 s and y at 0.1 s: y comes first, so y's sample never sees x in its history."""
    import datetime as dt

    base = dt.datetime(2020, 1, 1)
    for ts in (
        [0.9, 0.1, 2.0],
        [base + dt.timedelta(milliseconds=900), base, base.replace(second=2)],
    ):
        log = tmp_path / "in.parquet"
        pl.DataFrame(
            {
                "user": ["u"] * 3 + ["v"] * 3 + ["w"] * 3 + ["t"] * 3,
                "item": ["x", "y", "z", "p", "q", "r", "s", "o", "n", "m", "l", "k"],
                "category": ["c"] * 12,
                "timestamp": ts * 4,
            }
        ).write_parquet(log)
        out = tmp_path / "out"
        result = _invoke(["logs", str(log), "--out", str(out), "--overwrite"])
        assert result.exit_code == 0, result.output
        items = pl.read_parquet(out / "items.parquet").select("item", "raw_item").rows()
        raw = dict(items)
        seqs = pl.read_parquet(out / "sequences.parquet").select("raw_user", "items").rows()
        assert [raw[i] for i in dict(seqs)["u"]] == ["y", "x", "z"]


def test_logs_nan_time_and_fractional_labels_are_refused(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    log = tmp_path / "raw" / "in.parquet"
    frame = {"user": [1, 1, 1], "item": [1, 2, 3], "category": ["a"] * 3}
    pl.DataFrame({**frame, "timestamp": [1.0, float("nan"), 3.0]}).write_parquet(log)
    _error(
        tmp_path,
        ["logs", str(log)],
        f"{log}: time column 'timestamp' is not a finite number in data row 2",
    )
    pl.DataFrame({**frame, "timestamp": [1, 2, 3], "click": [0.7, 0.2, 1.0]}).write_parquet(log)
    _error(
        tmp_path,
        ["logs", str(log), "--label-col", "click"],
        f"{log}: label column 'click' must hold 0/1, got values [0.2, 0.7, 1.0]",
    )


def test_logs_missing_column(tmp_path: Path) -> None:
    log = tmp_path / "in.csv"
    log.write_text("user,item,timestamp\n1,2,3\n")
    _error(
        tmp_path,
        ["logs", str(log)],
        f"{log} has no column(s) 'category'; it has user, item, timestamp",
    )


@pytest.mark.parametrize("content", ["", "user,item,category,timestamp\n"])
def test_logs_empty(tmp_path: Path, content: str) -> None:
    log = tmp_path / "in.csv"
    log.write_text(content)
    expected = f"{log} is empty" if not content else f"{log} has no rows"
    _error(tmp_path, ["logs", str(log)], expected)


def test_meta_layouts_the_fast_parser_must_not_misread(tmp_path: Path) -> None:
    reviews = [*GOOD_REVIEWS, _review("U3", "A5", 1), _review("U3", "A6", 2)]
    meta = [
        repr({"title": "asin first? no", "asin": "A1", "categories": [["E", "Cables"]]}),
        repr({"asin": "A2", "categories": [["E", "x"], ["E", "Mice"]], "price": 3.0}),
        repr({"asin": "A3", "categories": [["E", 'It\'s "quoted"']]}) + "\r",
        repr({"asin": "A4", "categories": [["E", "back\\slash"]]}),
        "",
        repr({"asin": "A5", "title": "unit\x1fsep", "categories": [["E", "TVs]]"]]}),
        repr({"asin": "A6", "categories": [["E", "TVs"]], "title": "]], 'x"}),
    ]
    raw = _amazon(tmp_path, reviews, meta)
    out = tmp_path / "out"
    result = _invoke(["amazon", "--raw", str(raw), "--out", str(out)])
    assert result.exit_code == 0, result.output
    names = pl.read_parquet(out / "items.parquet")["cate_name"].to_list()
    assert names == ["Cables", "Mice", 'It\'s "quoted"', "back\\slash", "TVs]]", "TVs"]


# ----------------------------------------------------------------------- damaged raw files
# each builder writes a raw input under tmp and returns what `--raw` is given


def _zip_that_is_not_one(tmp: Path) -> Path:
    archive = tmp / "ml.zip"
    archive.write_bytes(b"PK\x03\x04 this is not really a zip")
    return archive


def _ratings_with_a_word_for_a_rating(tmp: Path) -> Path:
    _ml_files(tmp / "raw")
    with open(tmp / "raw" / "ratings.csv", "a") as f:
        f.write("3,10,four,7\n")
    return tmp / "raw"


def _empty_ratings(tmp: Path) -> Path:
    _ml_files(tmp / "raw")
    (tmp / "raw" / "ratings.csv").write_text("")
    return tmp / "raw"


def _meta_line_not_utf8(tmp: Path) -> Path:
    raw = _amazon(tmp, GOOD_REVIEWS, GOOD_META)
    with open(raw / "meta_Electronics.json", "ab") as f:
        f.write(b"{'asin': 'A9', 'title': '\xff\xfe'}\n")
    return raw


def _truncated_gzip_reviews(tmp: Path) -> Path:
    raw = _amazon(tmp, GOOD_REVIEWS, GOOD_META, gz=True)
    data = (raw / "reviews_Electronics_5.json.gz").read_bytes()
    (raw / "reviews_Electronics_5.json.gz").write_bytes(data[: len(data) // 2])
    return raw


@pytest.mark.parametrize(
    ("dataset", "damaged", "expected"),
    [
        pytest.param(
            "movielens",
            _zip_that_is_not_one,
            "<raw> is not a readable zip archive",
            id="corrupt-zip",
        ),
        pytest.param(
            "movielens",
            _ratings_with_a_word_for_a_rating,
            "<raw>/ratings.csv:6: 'rating' must be a finite number, got 'four'; "
            "the line starts '3,10,four,7'",
            id="malformed-ratings-line",
        ),
        pytest.param(
            "movielens",
            _empty_ratings,
            "<raw>/ratings.csv is empty",
            id="empty-ratings",
        ),
        pytest.param(
            "amazon",
            _meta_line_not_utf8,
            "<raw>/meta_Electronics.json:5: not valid UTF-8 text",
            id="meta-line-not-utf8",
        ),
        pytest.param(
            "amazon",
            _truncated_gzip_reviews,
            "cannot read <raw>/reviews_Electronics_5.json.gz: "
            "Compressed file ended before the end-of-stream marker was reached",
            id="truncated-gzip-reviews",
        ),
    ],
)
def test_damaged_raw_file_is_a_one_line_error(
    tmp_path: Path, dataset: str, damaged: Callable[[Path], Path], expected: str
) -> None:
    raw = damaged(tmp_path)
    _error(tmp_path, [dataset, "--raw", str(raw)], expected.replace("<raw>", str(raw)))
