"""Faults and hostile inputs of `dinctl download` (issue 13: items 1, 2, 3, 4, 6, 7, 8, 14)."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from faults import (
    Route,
    Server,
    blob,
    cli,
    deny_writes,
    download_movielens,
    lock_held,
    manifest_files,
    serve_one,
    stderr_lines,
    zip_of,
)

from dinctl.data import download as dl
from dinctl.data.archives import check_zip
from dinctl.data.datasets.amazon import amazon_source
from dinctl.data.datasets.movielens import movielens_source, read_movielens
from dinctl.data.sources import RemoteFile, Source, with_urls
from dinctl.errors import DinctlError

pytestmark = pytest.mark.notorch  # torch-free: `make test-py` runs it on 3.10 and 3.13

RATINGS = b"userId,movieId,rating,timestamp\n1,1,4.0,1\n2,1,3.0,2\n"
MOVIES = b"movieId,title,genres\n1,A,Drama\n"


def _policy(tries: int = 3) -> dl.RetryPolicy:
    return dl.RetryPolicy(tries=tries, timeout_s=5.0, sleep=lambda _: None)


def _fetch(source: Source, out: Path, tries: int = 3) -> dict:
    return dl.download(source, out, policy=_policy(tries), log=lambda _: None)


def _release(ratings: bytes = RATINGS) -> bytes:
    """An ml-latest-small.zip holding `ratings` and MOVIES."""
    return zip_of({"ratings.csv": ratings, "movies.csv": MOVIES})


def _corrupt_member(data: bytes, member: str = "ml-latest-small/ratings.csv") -> bytes:
    """Flip one byte inside the compressed data of `member` (its CRC no longer matches)."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        info = zf.getinfo(member)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    out = bytearray(data)
    out[start + info.compress_size // 2] ^= 0xFF
    return bytes(out)


# ------------------------------------------------------------------ 3. resumed downloads


@pytest.mark.parametrize(
    ("old", "new", "quirks", "ranges"),
    [
        # If-Range names the old ETag: the server answers 200 with the whole new file
        pytest.param(
            blob(120_000, 1), blob(120_000, 2), {}, [None, "bytes=50000-"],
            id="if-range-honoured-fetched-whole",
        ),
        # the 206 carried another ETag: thrown away, then a whole request from byte 0
        pytest.param(
            blob(120_000, 3), blob(120_000, 4), {"if_range": "ignore"},
            [None, "bytes=50000-", None], id="206-ignoring-if-range-restarts",
        ),
        # the same ETag for both bodies: the spliced file fails the md5, then a whole request
        pytest.param(
            blob(120_000, 5), blob(120_000, 6), {"fixed_etag": '"same"'},
            [None, "bytes=50000-", None], id="lying-etag-splice-caught-by-checksum",
        ),
        # the same ETag and the same first bytes, but a 206 whose total is not the recorded one
        pytest.param(
            blob(120_000, 7), blob(150_000, 7), {"fixed_etag": '"same"'},
            [None, "bytes=50000-", None], id="206-with-another-total-restarts",
        ),
    ],
)  # fmt: skip
def test_a_file_changed_between_drop_and_resume_ends_whole_and_new(
    server: Server, tmp_path: Path, old: bytes, new: bytes, quirks: dict, ranges: list
) -> None:
    route = Route(old, drop_after=50_000, drops=1, versions=[new, new], **quirks)
    old_etag = route.etag()  # what the resume names in If-Range
    _fetch(serve_one(server, route, md5_of=new), tmp_path)
    assert (tmp_path / "f.bin").read_bytes() == new  # not old[:50000] + new[50000:]
    assert server.ranges("f.bin") == ranges
    assert server.if_ranges("f.bin")[1] == old_etag
    assert manifest_files(tmp_path)["f.bin"]["sha256"] == hashlib.sha256(new).hexdigest()
    assert not list(tmp_path.glob("*.corrupt"))


def test_unverifiable_file_is_never_spliced_and_its_sha256_is_of_one_whole_response(
    server: Server, tmp_path: Path
) -> None:
    old, new = blob(120_000, 8), blob(120_000, 9)
    source = serve_one(server, Route(old, drop_after=50_000, drops=1, versions=[new]))
    with pytest.raises(DinctlError) as err:
        _fetch(source, tmp_path, tries=1)
    assert err.value.hint is not None and "resume" not in err.value.hint
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing half-done kept
    _fetch(source, tmp_path)
    assert server.ranges("f.bin") == [None, None]
    assert manifest_files(tmp_path)["f.bin"]["sha256"] == hashlib.sha256(new).hexdigest()


def test_weak_etag_only_is_not_used_to_resume(server: Server, tmp_path: Path) -> None:
    body = blob(90_000, 10)
    route = Route(body, drop_after=30_000, drops=1, weak_etag=True)
    _fetch(serve_one(server, route, md5_of=body), tmp_path)
    assert server.ranges("f.bin") == [None, None]
    assert (tmp_path / "f.bin").read_bytes() == body


def test_last_modified_is_the_if_range_validator_without_an_etag(
    server: Server, tmp_path: Path
) -> None:
    body = blob(90_000, 11)
    route = Route(body, drop_after=30_000, drops=1)
    source = serve_one(server, route, md5_of=body)
    # the validator recorded: strong ETag first; a server without one gets Last-Modified
    with pytest.raises(DinctlError):
        _fetch(source, tmp_path, tries=1)
    state = json.loads((tmp_path / "f.bin.part.json").read_text())
    assert state["etag"] == route.etag() and state["total"] == len(body)
    state = {"url": state["url"], "total": len(body), "last_modified": route.last_modified()}
    (tmp_path / "f.bin.part.json").write_text(json.dumps(state))
    _fetch(source, tmp_path)
    assert server.if_ranges("f.bin")[1] == route.last_modified()
    assert server.ranges("f.bin")[1] == "bytes=30000-"


# ------------------------------------------------------------------ 4. corrupt zip members


def test_zip_with_a_corrupt_member_goes_aside_and_is_not_recorded(
    server: Server, tmp_path: Path
) -> None:
    server.routes["/ml-latest-small.zip"] = Route(_corrupt_member(_release(RATINGS * 50)))
    result = download_movielens(server.base, tmp_path)
    assert result.exit_code == 1
    lines = stderr_lines(result)
    assert len(lines) == 2 and lines[0].startswith(
        "error: ml-latest-small.zip: member 'ml-latest-small/ratings.csv' is corrupt ("
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ml-latest-small.zip.corrupt"]
    assert manifest_files(tmp_path) == {}


def test_from_zip_with_a_corrupt_member_is_refused_and_kept_aside(tmp_path: Path) -> None:
    have = tmp_path / "have"
    have.mkdir()
    zpath = have / "ml-latest-small.zip"
    zpath.write_bytes(_corrupt_member(_release(RATINGS * 50)))
    before = zpath.read_bytes()
    out = tmp_path / "raw"
    result = cli(
        "download",
        "movielens",
        "--variant",
        "latest-small",
        "--from",
        str(zpath),
        "--out",
        str(out),
    )
    assert result.exit_code == 1
    assert stderr_lines(result)[0].startswith(
        f"error: {zpath}: member 'ml-latest-small/ratings.csv'"
    )
    assert sorted(p.name for p in out.iterdir()) == ["ml-latest-small.zip.corrupt"]
    assert zpath.read_bytes() == before and manifest_files(out) == {}


# ------------------------------------------------------------------ 6. zip bombs and caps


@pytest.mark.parametrize("reader", [check_zip, read_movielens], ids=["check_zip", "readers"])
def test_zip_bomb_ratio_is_refused(tmp_path: Path, reader: Callable[[Path], object]) -> None:
    zpath = tmp_path / "ml-latest-small.zip"
    zpath.write_bytes(_release(b"0" * (4 << 20)))
    with pytest.raises(DinctlError) as err:
        reader(zpath)  # the readers stream zip members within the same cap
    assert "over the limit of 200×: refusing a likely zip bomb" in err.value.message
    assert err.value.hint == "if the archive is genuine, raise the limit with --max-extract-bytes N"


def test_max_extract_bytes_caps_extraction_and_can_be_raised(
    server: Server, tmp_path: Path
) -> None:
    server.routes["/ml-latest-small.zip"] = Route(_release())
    result = download_movielens(server.base, tmp_path, "--max-extract-bytes", "40")
    assert result.exit_code == 1
    assert stderr_lines(result)[0] == (
        "error: ml-latest-small.zip expands to more than 40 bytes (member "
        f"'ml-latest-small/ratings.csv' declares {len(RATINGS)}): refusing to extract it"
    )
    assert manifest_files(tmp_path) == {}
    result = download_movielens(server.base, tmp_path, "--max-extract-bytes", "1000")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ratings.csv").read_bytes() == RATINGS


def test_member_holding_more_than_it_declares_is_refused(tmp_path: Path) -> None:
    data = bytearray(_release(RATINGS * 100))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        info = zf.infolist()[0]
    # patch the declared size (local header and central directory) down to 10 bytes
    real = (len(RATINGS) * 100).to_bytes(4, "little")
    data = bytearray(bytes(data).replace(real, (10).to_bytes(4, "little")))
    zpath = tmp_path / "x.zip"
    zpath.write_bytes(bytes(data))
    with pytest.raises(DinctlError) as err:
        check_zip(zpath)
    assert info.filename in err.value.message
    assert "holds more than 10 bytes" in err.value.message or "is corrupt" in err.value.message


def test_readers_stream_zip_members_within_the_cap(tmp_path: Path) -> None:
    zpath = tmp_path / "ml-latest-small.zip"
    zpath.write_bytes(_release())
    with pytest.raises(DinctlError) as err:
        read_movielens(zpath, max_extract_bytes=50)
    assert "expands to more than 50 bytes" in err.value.message
    assert read_movielens(zpath).frame.height == 2


# ------------------------------------------------------------------ 7. names, 14. URLs


@pytest.mark.parametrize("category", ["x/../../../reviews", "..", "a\\b", "", "/etc"])
def test_path_like_category_is_refused(server: Server, tmp_path: Path, category: str) -> None:
    for extra in ([], ["--mirror", server.base]):
        result = cli(
            "download", "amazon", "--category", category, "--out", str(tmp_path / "o"), *extra
        )
        assert result.exit_code == 1
        assert stderr_lines(result)[0] == (
            f"error: Amazon category {category!r} is not a safe file name: expected letters, "
            "digits and _ . + - only (no path separators, no '..')"
        )
    assert server.log == [] and not (tmp_path / "o").exists()
    assert not list(tmp_path.parent.rglob("reviews_5.json.gz"))


def test_unsafe_remote_file_name_is_refused(tmp_path: Path) -> None:
    source = Source("amazon", "T", (RemoteFile("../f.bin", ("http://127.0.0.1:9/f.bin",)),))
    with pytest.raises(DinctlError) as err:
        dl.download(source, tmp_path / "o")
    assert err.value.message.startswith("file name '../f.bin' is not a safe file name")


@pytest.mark.parametrize(
    ("flag", "url", "problem"),
    [
        ("--url", "http://h:99999/ml-latest-small.zip", "Port out of range 0-65535"),
        (
            "--url",
            "http://h:x/ml-latest-small.zip",
            "Port could not be cast to integer value as 'x'",
        ),
        ("--url", "not a url", "it is empty or holds spaces or control characters"),
        ("--url", "ftp://h/ml-latest-small.zip", "expected http:// or https://, got ftp scheme"),
        ("--mirror", "http:///nohost/", "it has no host"),
        ("--mirror", "files.grouplens.org/x", "expected http:// or https://, got no scheme"),
        ("--url", "http://[::1/ml-latest-small.zip", "Invalid IPv6 URL"),
    ],
)
def test_malformed_urls_are_one_line(flag: str, url: str, problem: str) -> None:
    result = cli(
        "download", "movielens", "--variant", "latest-small", flag, url, "--out", "/nonexistent/x"
    )
    assert result.exit_code == 1
    assert stderr_lines(result) == [
        f"error: {flag} {url!r} is not a valid URL: {problem}",
        f"hint: e.g. {flag} https://host/path/",
    ]


def test_url_checks_in_the_library() -> None:
    with pytest.raises(DinctlError):
        with_urls(amazon_source("Beauty"), ("http://h:99999/meta_Beauty.json.gz",))
    with pytest.raises(DinctlError):
        movielens_source("20m", ("javascript:alert(1)",))


# ------------------------------------------------------------------ 1. --out vs --from


def test_from_and_out_the_same_folder_is_refused(tmp_path: Path) -> None:
    have = tmp_path / "have"
    (have / "ml-latest-small").mkdir(parents=True)
    (have / "ml-latest-small/ratings.csv").write_bytes(RATINGS)
    (have / "ml-latest-small/movies.csv").write_bytes(MOVIES)
    for out in (have, have / "ml-latest-small", have / "ml-latest-small/sub"):
        result = cli(
            "download", "movielens", "--variant", "latest-small", "--from",
            str(have / "ml-latest-small"), "--out", str(out),
        )  # fmt: skip
        assert result.exit_code == 1, out
        assert stderr_lines(result)[0].startswith(f"error: --out {out} ")
        assert "refusing to write over an input" in stderr_lines(result)[0]
    assert sorted(p.name for p in (have / "ml-latest-small").iterdir()) == [
        "movies.csv", "ratings.csv"
    ]  # fmt: skip


def test_from_a_zip_inside_out_is_registered_in_place(tmp_path: Path) -> None:
    out = tmp_path / "raw"
    out.mkdir()
    zpath = out / "ml-latest-small.zip"
    zpath.write_bytes(_release())
    manifest = dl.register_local(movielens_source("latest-small"), out, zpath, log=lambda _: None)
    assert manifest["files"]["ml-latest-small.zip"]["how"] == "in place"


# ------------------------------------------------------------------ 2. locks, 8. unwritable


def test_second_downloader_is_refused_naming_the_holder(server: Server, tmp_path: Path) -> None:
    body = blob(1000, 12)
    source = serve_one(server, Route(body))
    out = tmp_path / "raw"
    with lock_held(out, "download folder") as holder:
        with pytest.raises(DinctlError) as err:
            _fetch(source, out)
        assert err.value.message.startswith(
            f"download folder {out} is in use by pid {holder.pid} on "
        )
        assert "(`holder test`, since " in err.value.message
    assert server.log == []
    _fetch(source, out)
    assert (out / "f.bin").read_bytes() == body


def test_a_lock_left_by_a_killed_downloader_is_stale(server: Server, tmp_path: Path) -> None:
    source = serve_one(server, Route(b"abc"))
    out = tmp_path / "raw"
    holder = lock_held(out).__enter__()
    holder.kill()
    _fetch(source, out)
    assert (out / "f.bin").read_bytes() == b"abc"


def test_unwritable_out_is_one_line(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.routes["/ml-latest-small.zip"] = Route(_release())
    out = tmp_path / "ro"
    out.mkdir()
    deny_writes(monkeypatch, out)
    result = download_movielens(server.base, out)
    assert result.exit_code == 1
    assert stderr_lines(result)[0] == f"error: cannot write {out}: permission denied"
    assert server.log == []


def test_disk_full_while_downloading_is_one_line(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = serve_one(server, Route(blob(200_000, 13)))

    class Full(io.BytesIO):
        def write(self, data: object) -> int:
            raise OSError(28, "No space left on device")

    real_open = open

    def full_open(path: object, mode: str = "r", *args: object, **kwargs: object) -> object:
        if str(path).endswith(".part") and mode in ("wb", "ab"):
            return Full()
        return real_open(path, mode, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(dl, "open", full_open, raising=False)
    with pytest.raises(DinctlError) as err:
        _fetch(source, tmp_path)
    assert err.value.message == (
        f"cannot write {tmp_path / 'f.bin.part'}: no space left on the device"
    )
    assert not (tmp_path / "f.bin").exists() and manifest_files(tmp_path) == {}


def test_preprocess_refuses_a_path_like_category(tmp_path: Path) -> None:
    result = cli(
        "preprocess", "amazon", "--raw", str(tmp_path / "raw"), "--category", "../../etc/x",
        "--out", str(tmp_path / "o"),
    )  # fmt: skip
    assert result.exit_code == 1
    assert stderr_lines(result)[0].startswith("error: Amazon category '../../etc/x' is not a safe")


def test_preprocess_reuses_the_recorded_sha256_only_for_unchanged_files(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dinctl.data import preprocess as pre
    from dinctl.data.datasets.movielens import preprocess_movielens

    ratings = b"userId,movieId,rating,timestamp\n" + b"".join(
        f"{u},{m},{(u + m) % 5 + 1}.0,{m}\n".encode() for u in range(1, 9) for m in range(1, 6)
    )
    movies = b"movieId,title,genres\n" + b"".join(
        f"{m},M{m},G{m % 2}\n".encode() for m in range(1, 6)
    )
    server.routes["/ml-latest-small.zip"] = Route(
        zip_of({"ratings.csv": ratings, "movies.csv": movies})
    )
    raw = tmp_path / "raw"
    source = movielens_source("latest-small", (server.base,))
    _fetch(source, raw)
    hashed: list[str] = []
    real = pre.sha256_file

    def counting(path: Path) -> str:
        hashed.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(pre, "sha256_file", counting)
    preprocess_movielens(raw, tmp_path / "d1")
    inputs = json.loads((tmp_path / "d1/meta.json").read_text())["inputs"]
    assert hashed == []  # both inputs reused from MANIFEST.json
    assert {i["name"]: i["sha256"] for i in inputs} == {
        "ratings.csv": hashlib.sha256(ratings).hexdigest(),
        "movies.csv": hashlib.sha256(movies).hexdigest(),
    }
    with open(raw / "movies.csv", "ab") as f:  # edited after the download: hashed again
        f.write(b"6,M6,G0\n")
    preprocess_movielens(raw, tmp_path / "d2")
    assert hashed == ["movies.csv"]
    inputs = json.loads((tmp_path / "d2/meta.json").read_text())["inputs"]
    assert inputs[1]["sha256"] == hashlib.sha256((raw / "movies.csv").read_bytes()).hexdigest()
