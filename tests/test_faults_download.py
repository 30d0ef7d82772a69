"""Faults and hostile inputs of `dinctl download` (issue 13: items 1, 2, 3, 4, 6, 7, 8, 14)."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest
from faults import Route, Server, deny_writes, lock_held
from typer.testing import CliRunner

from dinctl.cli.main import app
from dinctl.data import download as dl
from dinctl.data.archives import check_zip
from dinctl.data.sources import RemoteFile, Source, amazon_source, movielens_source, with_urls
from dinctl.errors import DinctlError

runner = CliRunner()
RATINGS = b"userId,movieId,rating,timestamp\n1,1,4.0,1\n2,1,3.0,2\n"
MOVIES = b"movieId,title,genres\n1,A,Drama\n"


def _blob(n: int, seed: int) -> bytes:
    out, block = bytearray(), hashlib.sha256(str(seed).encode()).digest()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:n])


def _policy(tries: int = 3) -> dl.RetryPolicy:
    return dl.RetryPolicy(tries=tries, timeout_s=5.0, sleep=lambda _: None)


def _one(url: str, md5: str | None = None) -> Source:
    return Source("amazon", "Test", (RemoteFile("f.bin", (url,), md5=md5),))


def _manifest(folder: Path) -> dict:
    path = folder / "MANIFEST.json"
    return json.loads(path.read_text())["files"] if path.exists() else {}


def _zip(files: dict[str, bytes], top: str = "ml-latest-small") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(f"{top}/{name}", data)
    return buf.getvalue()


def _corrupt_member(data: bytes, member: str) -> bytes:
    """Flip one byte inside the compressed data of `member` (its CRC no longer matches)."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        info = zf.getinfo(member)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    out = bytearray(data)
    out[start + info.compress_size // 2] ^= 0xFF
    return bytes(out)


def _lines(result: object) -> list[str]:
    return result.stderr.strip().splitlines()  # type: ignore[attr-defined]


# ------------------------------------------------------------------ 3. resumed downloads


def test_changed_file_with_if_range_honoured_is_fetched_whole(
    server: Server, tmp_path: Path
) -> None:
    old, new = _blob(120_000, 1), _blob(120_000, 2)
    server.routes["/f.bin"] = Route(old, drop_after=50_000, drops=1, versions=[new])
    source = _one(server.url("f.bin"), md5=hashlib.md5(new).hexdigest())
    dl.download(source, tmp_path, policy=_policy(), progress=False, log=lambda _: None)
    assert (tmp_path / "f.bin").read_bytes() == new  # not old[:50000] + new[50000:]
    assert server.ranges("f.bin") == [None, "bytes=50000-"]
    assert server.if_ranges("f.bin")[1] == Route(old).etag()
    assert _manifest(tmp_path)["f.bin"]["sha256"] == hashlib.sha256(new).hexdigest()


def test_206_of_a_changed_file_from_a_server_ignoring_if_range_restarts(
    server: Server, tmp_path: Path
) -> None:
    old, new = _blob(120_000, 3), _blob(120_000, 4)
    server.routes["/f.bin"] = Route(
        old, drop_after=50_000, drops=1, versions=[new, new], if_range="ignore"
    )
    source = _one(server.url("f.bin"), md5=hashlib.md5(new).hexdigest())
    dl.download(source, tmp_path, policy=_policy(), progress=False, log=lambda _: None)
    assert (tmp_path / "f.bin").read_bytes() == new
    # the 206 carried another ETag: thrown away, then a whole request from byte 0
    assert server.ranges("f.bin") == [None, "bytes=50000-", None]


def test_a_lying_server_splice_is_caught_by_the_checksum_and_fetched_whole(
    server: Server, tmp_path: Path
) -> None:
    old, new = _blob(120_000, 5), _blob(120_000, 6)
    server.routes["/f.bin"] = Route(
        old, drop_after=50_000, drops=1, versions=[new, new], fixed_etag='"same"'
    )
    source = _one(server.url("f.bin"), md5=hashlib.md5(new).hexdigest())
    dl.download(source, tmp_path, policy=_policy(), progress=False, log=lambda _: None)
    assert (tmp_path / "f.bin").read_bytes() == new
    assert server.ranges("f.bin") == [None, "bytes=50000-", None]
    assert not list(tmp_path.glob("*.corrupt"))


def test_a_206_with_another_total_restarts(server: Server, tmp_path: Path) -> None:
    old, new = _blob(120_000, 7), _blob(150_000, 7)
    server.routes["/f.bin"] = Route(
        old, drop_after=50_000, drops=1, versions=[new, new], fixed_etag='"same"'
    )
    source = _one(server.url("f.bin"), md5=hashlib.md5(new).hexdigest())
    dl.download(source, tmp_path, policy=_policy(), progress=False, log=lambda _: None)
    assert (tmp_path / "f.bin").read_bytes() == new
    assert server.ranges("f.bin") == [None, "bytes=50000-", None]


def test_unverifiable_file_is_never_spliced_and_its_sha256_is_of_one_whole_response(
    server: Server, tmp_path: Path
) -> None:
    old, new = _blob(120_000, 8), _blob(120_000, 9)
    server.routes["/f.bin"] = Route(old, drop_after=50_000, drops=1, versions=[new])
    with pytest.raises(DinctlError) as err:
        dl.download(_one(server.url("f.bin")), tmp_path, policy=_policy(1), progress=False)
    assert err.value.hint is not None and "resume" not in err.value.hint
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing half-done kept
    dl.download(_one(server.url("f.bin")), tmp_path, policy=_policy(), progress=False)
    assert server.ranges("f.bin") == [None, None]
    assert _manifest(tmp_path)["f.bin"]["sha256"] == hashlib.sha256(new).hexdigest()


def test_weak_etag_only_is_not_used_to_resume(server: Server, tmp_path: Path) -> None:
    body = _blob(90_000, 10)
    server.routes["/f.bin"] = Route(body, drop_after=30_000, drops=1, weak_etag=True)
    source = _one(server.url("f.bin"), md5=hashlib.md5(body).hexdigest())
    dl.download(source, tmp_path, policy=_policy(), progress=False, log=lambda _: None)
    assert server.ranges("f.bin") == [None, None]
    assert (tmp_path / "f.bin").read_bytes() == body


def test_last_modified_is_the_if_range_validator_without_an_etag(
    server: Server, tmp_path: Path
) -> None:
    body = _blob(90_000, 11)
    route = Route(body, drop_after=30_000, drops=1)
    server.routes["/f.bin"] = route
    source = _one(server.url("f.bin"), md5=hashlib.md5(body).hexdigest())
    # the validator recorded: strong ETag first; a server without one gets Last-Modified
    with pytest.raises(DinctlError):
        dl.download(source, tmp_path, policy=_policy(1), progress=False)
    state = json.loads((tmp_path / "f.bin.part.json").read_text())
    assert state["etag"] == route.etag() and state["total"] == len(body)
    state = {"url": state["url"], "total": len(body), "last_modified": route.last_modified()}
    (tmp_path / "f.bin.part.json").write_text(json.dumps(state))
    dl.download(source, tmp_path, policy=_policy(), progress=False, log=lambda _: None)
    assert server.if_ranges("f.bin")[1] == route.last_modified()
    assert server.ranges("f.bin")[1] == "bytes=30000-"


# ------------------------------------------------------------------ 4. corrupt zip members


def test_zip_with_a_corrupt_member_goes_aside_and_is_not_recorded(
    server: Server, tmp_path: Path
) -> None:
    good = _zip({"ratings.csv": RATINGS * 50, "movies.csv": MOVIES})
    bad = _corrupt_member(good, "ml-latest-small/ratings.csv")
    server.routes["/ml-latest-small.zip"] = Route(bad)
    result = runner.invoke(
        app,
        ["download", "movielens", "--variant", "latest-small", "--mirror", server.base,
         "--out", str(tmp_path), "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 1
    lines = _lines(result)
    assert len(lines) == 2 and lines[0].startswith(
        "error: ml-latest-small.zip: member 'ml-latest-small/ratings.csv' is corrupt ("
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ml-latest-small.zip.corrupt"]
    assert _manifest(tmp_path) == {}


def test_from_zip_with_a_corrupt_member_is_refused_and_kept_aside(tmp_path: Path) -> None:
    have = tmp_path / "have"
    have.mkdir()
    zpath = have / "ml-latest-small.zip"
    zpath.write_bytes(_corrupt_member(_zip({"ratings.csv": RATINGS * 50, "movies.csv": MOVIES}),
                                      "ml-latest-small/ratings.csv"))  # fmt: skip
    before = zpath.read_bytes()
    out = tmp_path / "raw"
    result = runner.invoke(
        app, ["download", "movielens", "--variant", "latest-small", "--from", str(zpath),
              "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 1
    assert _lines(result)[0].startswith(f"error: {zpath}: member 'ml-latest-small/ratings.csv'")
    assert sorted(p.name for p in out.iterdir()) == ["ml-latest-small.zip.corrupt"]
    assert zpath.read_bytes() == before and _manifest(out) == {}


# ------------------------------------------------------------------ 6. zip bombs and caps


def test_zip_bomb_ratio_is_refused(tmp_path: Path) -> None:
    zpath = tmp_path / "ml-latest-small.zip"
    zpath.write_bytes(_zip({"ratings.csv": b"0" * (4 << 20), "movies.csv": MOVIES}))
    with pytest.raises(DinctlError) as err:
        check_zip(zpath)
    assert "over the limit of 200×: refusing a likely zip bomb" in err.value.message
    assert err.value.hint == "if the archive is genuine, raise the limit with --max-extract-bytes N"


def test_max_extract_bytes_caps_extraction_and_can_be_raised(
    server: Server, tmp_path: Path
) -> None:
    server.routes["/ml-latest-small.zip"] = Route(_zip({"ratings.csv": RATINGS,
                                                         "movies.csv": MOVIES}))  # fmt: skip
    args = ["download", "movielens", "--variant", "latest-small", "--mirror", server.base,
            "--out", str(tmp_path), "--no-progress"]  # fmt: skip
    result = runner.invoke(app, [*args, "--max-extract-bytes", "40"])
    assert result.exit_code == 1
    assert _lines(result)[0] == (
        "error: ml-latest-small.zip expands to more than 40 bytes (member "
        f"'ml-latest-small/ratings.csv' declares {len(RATINGS)}): refusing to extract it"
    )
    assert _manifest(tmp_path) == {}
    result = runner.invoke(app, [*args, "--max-extract-bytes", "1000"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ratings.csv").read_bytes() == RATINGS


def test_member_holding_more_than_it_declares_is_refused(tmp_path: Path) -> None:
    data = bytearray(_zip({"ratings.csv": RATINGS * 100, "movies.csv": MOVIES}))
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
    from dinctl.data.readers import read_movielens

    zpath = tmp_path / "ml-latest-small.zip"
    zpath.write_bytes(_zip({"ratings.csv": b"0" * (4 << 20), "movies.csv": MOVIES}))
    with pytest.raises(DinctlError) as err:
        read_movielens(zpath)
    assert "refusing a likely zip bomb" in err.value.message
    zpath.write_bytes(_zip({"ratings.csv": RATINGS, "movies.csv": MOVIES}))
    with pytest.raises(DinctlError) as err:
        read_movielens(zpath, max_extract_bytes=50)
    assert "expands to more than 50 bytes" in err.value.message
    assert read_movielens(zpath).frame.height == 2


# ------------------------------------------------------------------ 7. names, 14. URLs


@pytest.mark.parametrize("category", ["x/../../../reviews", "..", "a\\b", "", "/etc"])
def test_path_like_category_is_refused(server: Server, tmp_path: Path, category: str) -> None:
    for extra in ([], ["--mirror", server.base]):
        result = runner.invoke(
            app, ["download", "amazon", "--category", category, "--out", str(tmp_path / "o"),
                  *extra],
        )  # fmt: skip
        assert result.exit_code == 1
        assert _lines(result)[0] == (
            f"error: Amazon category {category!r} is not a safe file name: expected letters, "
            "digits and _ . + - only (no path separators, no '..')"
        )
    assert server.log == [] and not (tmp_path / "o").exists()
    assert not list(tmp_path.parent.rglob("reviews_5.json.gz"))


def test_unsafe_remote_file_name_is_refused(tmp_path: Path) -> None:
    source = Source("amazon", "T", (RemoteFile("../f.bin", ("http://127.0.0.1:9/f.bin",)),))
    with pytest.raises(DinctlError) as err:
        dl.download(source, tmp_path / "o", progress=False)
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
    result = runner.invoke(
        app,
        [
            "download",
            "movielens",
            "--variant",
            "latest-small",
            flag,
            url,
            "--out",
            "/nonexistent/x",
        ],
    )
    assert result.exit_code == 1
    assert _lines(result) == [
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
        result = runner.invoke(
            app, ["download", "movielens", "--variant", "latest-small", "--from",
                  str(have / "ml-latest-small"), "--out", str(out)],
        )  # fmt: skip
        assert result.exit_code == 1, out
        assert _lines(result)[0].startswith(f"error: --out {out} ")
        assert "refusing to write over an input" in _lines(result)[0]
    assert sorted(p.name for p in (have / "ml-latest-small").iterdir()) == [
        "movies.csv", "ratings.csv"
    ]  # fmt: skip


def test_from_a_zip_inside_out_is_registered_in_place(tmp_path: Path) -> None:
    out = tmp_path / "raw"
    out.mkdir()
    zpath = out / "ml-latest-small.zip"
    zpath.write_bytes(_zip({"ratings.csv": RATINGS, "movies.csv": MOVIES}))
    manifest = dl.register_local(movielens_source("latest-small"), out, zpath, log=lambda _: None)
    assert manifest["files"]["ml-latest-small.zip"]["how"] == "in place"


# ------------------------------------------------------------------ 2. locks, 8. unwritable


def test_second_downloader_is_refused_naming_the_holder(server: Server, tmp_path: Path) -> None:
    body = _blob(1000, 12)
    server.routes["/f.bin"] = Route(body)
    out = tmp_path / "raw"
    with lock_held(out, "download folder") as holder:
        with pytest.raises(DinctlError) as err:
            dl.download(_one(server.url("f.bin")), out, policy=_policy(), progress=False)
        assert err.value.message.startswith(
            f"download folder {out} is in use by pid {holder.pid} on "
        )
        assert "(`holder test`, since " in err.value.message
    assert server.log == []
    dl.download(_one(server.url("f.bin")), out, policy=_policy(), progress=False,
                log=lambda _: None)  # fmt: skip
    assert (out / "f.bin").read_bytes() == body


def test_a_lock_left_by_a_killed_downloader_is_stale(server: Server, tmp_path: Path) -> None:
    server.routes["/f.bin"] = Route(b"abc")
    out = tmp_path / "raw"
    holder = lock_held(out).__enter__()
    holder.kill()
    dl.download(_one(server.url("f.bin")), out, policy=_policy(), progress=False,
                log=lambda _: None)  # fmt: skip
    assert (out / "f.bin").read_bytes() == b"abc"


def test_unwritable_out_is_one_line(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.routes["/ml-latest-small.zip"] = Route(_zip({"ratings.csv": RATINGS,
                                                         "movies.csv": MOVIES}))  # fmt: skip
    out = tmp_path / "ro"
    out.mkdir()
    deny_writes(monkeypatch, out)
    result = runner.invoke(
        app,
        ["download", "movielens", "--variant", "latest-small", "--mirror", server.base,
         "--out", str(out), "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 1
    assert _lines(result)[0] == f"error: cannot write {out}: permission denied"
    assert server.log == []


def test_disk_full_while_downloading_is_one_line(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = _blob(200_000, 13)
    server.routes["/f.bin"] = Route(body)

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
        dl.download(_one(server.url("f.bin")), tmp_path, policy=_policy(), progress=False)
    assert err.value.message == (
        f"cannot write {tmp_path / 'f.bin.part'}: no space left on the device"
    )
    assert not (tmp_path / "f.bin").exists() and _manifest(tmp_path) == {}


def test_preprocess_refuses_a_path_like_category(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["preprocess", "amazon", "--raw", str(tmp_path / "raw"), "--category", "../../etc/x",
              "--out", str(tmp_path / "o")],
    )  # fmt: skip
    assert result.exit_code == 1
    assert _lines(result)[0].startswith("error: Amazon category '../../etc/x' is not a safe")


def test_preprocess_reuses_the_recorded_sha256_only_for_unchanged_files(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dinctl.data import preprocess as pre

    ratings = b"userId,movieId,rating,timestamp\n" + b"".join(
        f"{u},{m},{(u + m) % 5 + 1}.0,{m}\n".encode() for u in range(1, 9) for m in range(1, 6)
    )
    movies = b"movieId,title,genres\n" + b"".join(
        f"{m},M{m},G{m % 2}\n".encode() for m in range(1, 6)
    )
    server.routes["/ml-latest-small.zip"] = Route(
        _zip({"ratings.csv": ratings, "movies.csv": movies})
    )
    raw = tmp_path / "raw"
    source = movielens_source("latest-small", (server.base,))
    dl.download(source, raw, policy=_policy(), progress=False, log=lambda _: None)
    hashed: list[str] = []
    real = pre.sha256_file

    def counting(path: Path, chunk: int = 1 << 20) -> str:
        hashed.append(Path(path).name)
        return real(path, chunk)

    monkeypatch.setattr(pre, "sha256_file", counting)
    monkeypatch.setattr(pre.mmap, "mmap", lambda *a, **k: (_ for _ in ()).throw(OSError()))
    pre.preprocess_movielens(raw, tmp_path / "d1")
    inputs = json.loads((tmp_path / "d1/meta.json").read_text())["inputs"]
    assert hashed == []  # both inputs reused from MANIFEST.json
    assert {i["name"]: i["sha256"] for i in inputs} == {
        "ratings.csv": hashlib.sha256(ratings).hexdigest(),
        "movies.csv": hashlib.sha256(movies).hexdigest(),
    }
    with open(raw / "movies.csv", "ab") as f:  # edited after the download: hashed again
        f.write(b"6,M6,G0\n")
    pre.preprocess_movielens(raw, tmp_path / "d2")
    assert hashed == ["movies.csv"]
    inputs = json.loads((tmp_path / "d2/meta.json").read_text())["inputs"]
    assert inputs[1]["sha256"] == hashlib.sha256((raw / "movies.csv").read_bytes()).hexdigest()
