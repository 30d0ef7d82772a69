"""MovieLens 100K end to end: download (or --from) converts u.data/u.item, preprocess builds it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from faults import Route, Server, cli, manifest_files, stderr_lines, zip_of

GENRE_COUNT = 19
# movie → (title, flags of u.genre's Action=1, Comedy=5, Drama=8); movie 4 has no genre
MOVIES = {
    1: ("Toy Story (1995)", (5,)),
    2: ("GoldenEye (1995)", (1,)),
    3: ("Richard III (1995)", (8, 17)),
    4: ("Unknown (1995)", ()),
}


def _u_item() -> bytes:
    lines = []
    for movie, (title, genres) in MOVIES.items():
        flags = ["1" if g in genres else "0" for g in range(GENRE_COUNT)]
        lines.append("|".join([str(movie), title, "01-Jan-1995", "", "http://x", *flags]))
    return ("\n".join(lines) + "\n").encode("latin-1")


def _ratings() -> list[tuple[int, int, int, int]]:
    """(user, movie, rating, time): 12 users, each rating every movie once, in shuffled order."""
    rows = []
    for user in range(1, 13):
        for movie in MOVIES:
            rows.append((user, movie, (user * movie) % 5 + 1, 880_000_000 + user * 10 + movie))
    return rows[::-1]  # u.data is not sorted by user or time


def _u_data(rows: list[tuple[int, int, int, int]]) -> bytes:
    return "".join(f"{u}\t{m}\t{r}\t{t}\n" for u, m, r, t in rows).encode()


def _download(server: Server, out: Path, *extra: str) -> Any:
    return cli(
        "download",
        "movielens-100k",
        "--mirror",
        server.base,
        "--out",
        str(out),
        "--no-progress",
        *extra,
    )


def test_download_converts_u_data_and_u_item_to_the_later_releases_csv(
    server: Server, tmp_path: Path
) -> None:
    zipped = zip_of({"u.data": _u_data(_ratings()), "u.item": _u_item(), "u.user": b""}, "ml-100k")
    server.routes["/ml-100k.zip"] = Route(zipped)
    raw = tmp_path / "raw"
    result = _download(server, raw)
    assert result.exit_code == 0, result.output
    ratings = (raw / "ratings.csv").read_text().splitlines()
    assert ratings[0] == "userId,movieId,rating,timestamp"
    assert ratings[1] == "12,4,4.0,880000124"  # u.data's first line: 12, 4, (48 % 5) + 1
    assert len(ratings) == 1 + 12 * len(MOVIES)
    assert (raw / "movies.csv").read_text() == (
        "movieId,title,genres\n"
        "1,Toy Story (1995),Comedy\n"
        "2,GoldenEye (1995),Action\n"
        "3,Richard III (1995),Drama|War\n"
        "4,Unknown (1995),(no genres listed)\n"
    )
    files = manifest_files(raw)
    assert files["ratings.csv"]["from"] == "ml-100k.zip:ml-100k/u.data"
    assert files["movies.csv"]["how"] == "converted from the 100K release's u.item"
    again = _download(server, raw)
    assert stderr_lines(again)[-1] == (
        "ratings.csv, movies.csv: already converted from ml-100k.zip, skipped"
    )


def test_preprocess_builds_the_same_samples_as_the_same_ratings_in_csv(
    server: Server, tmp_path: Path
) -> None:
    """The oracle: the same ratings written by hand as ml-20m CSV, through `preprocess
    movielens`, give byte-identical sample files."""
    rows = _ratings()
    server.routes["/ml-100k.zip"] = Route(
        zip_of({"u.data": _u_data(rows), "u.item": _u_item()}, "ml-100k")
    )
    raw = tmp_path / "raw"
    assert _download(server, raw).exit_code == 0
    by_hand = tmp_path / "csv"
    by_hand.mkdir()
    (by_hand / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n" + "".join(f"{u},{m},{r}.0,{t}\n" for u, m, r, t in rows)
    )
    genres = {1: "Comedy", 2: "Action", 3: "Drama|War", 4: "(no genres listed)"}
    (by_hand / "movies.csv").write_text(
        "movieId,title,genres\n"
        + "".join(f"{m},{title},{genres[m]}\n" for m, (title, _) in MOVIES.items())
    )

    result = cli(
        "preprocess", "movielens-100k", "--raw", str(raw), "--out", str(tmp_path / "ds"), "--json"
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["users"], summary["items"], summary["behaviours"]) == (12, 4, 48)
    assert summary["protocol"] == "movielens-user-split"
    assert json.loads((tmp_path / "ds" / "meta.json").read_text())["dataset"] == "movielens-100k"
    peer = cli("preprocess", "movielens", "--raw", str(by_hand), "--out", str(tmp_path / "peer"))
    assert peer.exit_code == 0, peer.output
    samples = sorted(p.name for p in (tmp_path / "ds").glob("*.parquet"))
    assert "train.parquet" in samples and "test.parquet" in samples
    for name in samples:
        assert (tmp_path / "ds" / name).read_bytes() == (tmp_path / "peer" / name).read_bytes()


def test_from_the_unpacked_folder_converts_the_same_files(server: Server, tmp_path: Path) -> None:
    server.routes["/ml-100k.zip"] = Route(
        zip_of({"u.data": _u_data(_ratings()), "u.item": _u_item()}, "ml-100k")
    )
    assert _download(server, tmp_path / "fetched").exit_code == 0
    unpacked = tmp_path / "home" / "ml-100k"
    unpacked.mkdir(parents=True)
    (unpacked / "u.data").write_bytes(_u_data(_ratings()))
    (unpacked / "u.item").write_bytes(_u_item())
    result = _download(server, tmp_path / "local", "--from", str(tmp_path / "home"))
    assert result.exit_code == 0, result.output
    for name in ("ratings.csv", "movies.csv"):
        local = (tmp_path / "local" / name).read_bytes()
        assert local == (tmp_path / "fetched" / name).read_bytes()


def test_a_bad_u_data_line_is_one_line_naming_the_member_and_line(
    server: Server, tmp_path: Path
) -> None:
    data = b"1\t1\t5\t880000000\n1;2;5;880000001\n"
    server.routes["/ml-100k.zip"] = Route(zip_of({"u.data": data, "u.item": _u_item()}, "ml-100k"))
    result = _download(server, tmp_path / "raw")
    assert result.exit_code == 1
    assert stderr_lines(result)[1:] == [
        "error: ml-100k.zip:ml-100k/u.data:2: expected user, item, rating and time separated by "
        "tabs, got '1;2;5;880000001'",
        "hint: pass --force to download the release again",
    ]
    assert not (tmp_path / "raw" / "ratings.csv").exists()
    missing = cli(
        "preprocess",
        "movielens-100k",
        "--raw",
        str(tmp_path / "raw"),
        "--out",
        str(tmp_path / "ds"),
    )
    assert stderr_lines(missing)[0] == f"error: {tmp_path / 'raw' / 'ratings.csv'} does not exist"
