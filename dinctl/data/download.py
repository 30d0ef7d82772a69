"""Fetch raw releases into `data/raw/<dataset>/`: streamed, resumable, verified, with MANIFEST.json.

This is the bytes layer, the same for every dataset: HTTP with retries and resume, digests,
the manifest, placing a user's own copy (`--from`). What a dataset does with its files once
they are here (extract and convert a release zip, check a CSV header) is its own module's
business (dinctl/data/datasets/), reached through `Source.unpack` or its `fetch`.

A file is fetched into `<name>.part`, verified (size, published md5, sha256 recorded at first
download) and only then renamed into place and entered in the manifest. A dropped transfer is
resumed only when the result can be verified end to end (a published or recorded checksum)
and only with `If-Range` holding the validator (strong ETag or Last-Modified) of the first
response, kept in `<name>.part.json`; anything else restarts from byte 0, and a spliced file
that fails verification is fetched again whole before it is called corrupt. Zips are checked
(member names, every member's CRC, extraction limits) before they are kept, and extracted
through a temporary folder.
"""

from __future__ import annotations

import errno
import http.client
import json
import os
import re
import shutil
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dinctl import __version__
from dinctl.data.archives import (
    MAX_EXTRACT_BYTES,
    check_zip,
)
from dinctl.data.sources import RemoteFile, Source, check_name
from dinctl.errors import DinctlError
from dinctl.fsutil import atomic_file, check_disjoint, file_digests, sha256_file, write_error
from dinctl.locks import folder_lock
from dinctl.reporting import BarFactory, no_bar, no_line

MANIFEST = "MANIFEST.json"
MANIFEST_FORMAT = 1
CHUNK = 1 << 16
NETWORK_HINT = (
    "pass --mirror BASE_URL to try another copy, or --from FILE_OR_DIR for a file you have"
)

Log = Callable[[str], None]
OnBytes = Callable[[int, "int | None"], None]


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries of transient errors with exponential backoff; `sleep` is injectable."""

    tries: int = 5
    backoff_s: float = 1.0
    max_delay_s: float = 30.0
    timeout_s: float = 30.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        return float(min(self.backoff_s * 2 ** (attempt - 1), self.max_delay_s))


class _Transient(Exception):
    """Worth retrying: connection reset or dropped, 5xx, timeouts."""


class _Permanent(Exception):
    """Not worth retrying this URL: 4xx, DNS failure, no route, connection refused."""


# ---------------------------------------------------------------------------------------------
# HTTP


def _classify(err: BaseException, url: str, timeout_s: float) -> Exception:
    """Turn a socket-level error into a retryable or final one with a short reason."""
    if isinstance(err, urllib.error.URLError) and isinstance(err.reason, BaseException):
        return _classify(err.reason, url, timeout_s)
    if isinstance(err, socket.gaierror):
        host = urllib.parse.urlsplit(url).hostname
        return _Permanent(f"cannot resolve host {host} (no network or DNS failure)")
    if isinstance(err, TimeoutError):
        return _Transient(f"no answer within {timeout_s:g} s")
    if isinstance(err, ConnectionRefusedError):
        return _Permanent("connection refused")
    if isinstance(err, OSError) and err.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return _Permanent("network is unreachable (no network)")
    if isinstance(err, ssl.SSLCertVerificationError):
        return _Permanent(f"TLS certificate not trusted ({getattr(err, 'verify_message', err)})")
    if isinstance(err, (ConnectionError, http.client.HTTPException, ssl.SSLError)):
        return _Transient("connection reset by the server")
    return _Transient(str(err) or type(err).__name__)


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(start, total) of a `Content-Range: bytes START-END/TOTAL` header (total may be `*`)."""
    match = re.match(r"bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)", value or "")
    if not match:
        return None, None
    start = int(match.group(1)) if match.group(1) is not None else None
    total = int(match.group(2)) if match.group(2) != "*" else None
    return start, total


def _state_path(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _read_state(part: Path) -> dict[str, Any]:
    try:
        state = json.loads(_state_path(part).read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _write_state(part: Path, state: dict[str, Any]) -> None:
    _state_path(part).write_text(json.dumps(state) + "\n")


def discard_part(part: Path) -> None:
    """Remove a partial download and its resume state."""
    part.unlink(missing_ok=True)
    _state_path(part).unlink(missing_ok=True)


def _validator(headers: Any) -> dict[str, Any]:
    """What `If-Range` may carry later: a strong ETag, else Last-Modified (else nothing)."""
    etag = headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return {"etag": etag}
    if headers.get("Last-Modified"):
        return {"last_modified": headers.get("Last-Modified")}
    return {}


def _resume_headers(url: str, part: Path, resumable: bool) -> tuple[int, dict[str, str]]:
    """(offset, extra headers): a Range + If-Range when this part can be resumed, else 0."""
    state = _read_state(part)
    offset = part.stat().st_size if part.exists() else 0
    validator = state.get("etag") or state.get("last_modified")
    if not (resumable and offset and state.get("url") == url and isinstance(validator, str)):
        discard_part(part)
        return 0, {}
    return offset, {"Range": f"bytes={offset}-", "If-Range": validator}


def _check_206(response: Any, part: Path, offset: int) -> int | None:
    """The total of a 206 that continues `part` exactly; restarts (raises) on any mismatch."""
    state = _read_state(part)
    start, total = _content_range(response.headers.get("Content-Range"))
    etag = response.headers.get("ETag")
    problem = None
    if start != offset:
        problem = f"the server resumed at byte {start}, not {offset}"
    elif state.get("total") is not None and total is not None and total != state["total"]:
        problem = f"the file is now {total} bytes, was {state['total']}"
    elif state.get("etag") and etag and etag != state["etag"]:
        problem = f"the file changed upstream (ETag {etag}, was {state['etag']})"
    if problem is not None:
        discard_part(part)
        raise _Transient(f"{problem}; restarting from byte 0")
    return total


def _attempt(
    url: str, part: Path, policy: RetryPolicy, on_bytes: OnBytes, resumable: bool = True
) -> None:
    """One HTTP request that appends to (206) or rewrites (200) `part`; raises on failure."""
    offset, extra = _resume_headers(url, part, resumable)
    headers = {"User-Agent": f"dinctl/{__version__}", "Accept-Encoding": "identity", **extra}
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=policy.timeout_s)
    except urllib.error.HTTPError as err:
        err.close()
        if err.code == 416 and offset:
            if _content_range(err.headers.get("Content-Range"))[1] == offset:
                return  # the part file already holds every byte
            discard_part(part)
            raise _Transient("HTTP 416 for the resumed range; restarting from byte 0") from None
        reason = f"HTTP {err.code} {err.reason}"
        if err.code >= 500 or err.code in (408, 429):
            raise _Transient(reason) from None
        raise _Permanent(reason) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as err:
        raise _classify(err, url, policy.timeout_s) from None

    with response:
        total: int | None
        if response.status == 206 and offset:
            total = _check_206(response, part, offset)
            _write_state(part, {**_read_state(part), "spliced": True})
            mode = "ab"
        else:  # 200: a first request, or the server ignored Range / If-Range: start over
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            offset, mode = 0, "wb"
            state = {"url": url, "total": total, **_validator(response.headers)}
            _write_state(part, state)
        received = offset
        on_bytes(received, total)
        try:
            out = open(part, mode)
        except OSError as err:
            raise write_error(part, err) from None
        with out:
            while True:
                try:
                    chunk = response.read(CHUNK)
                except (OSError, http.client.HTTPException) as err:
                    raise _classify(err, url, policy.timeout_s) from None
                if not chunk:
                    break
                try:
                    out.write(chunk)
                except OSError as err:
                    raise write_error(part, err) from None
                received += len(chunk)
                on_bytes(received, total)
    if total is not None and received < total:
        raise _Transient(f"connection dropped after {received} of {total} bytes")
    if total is not None and received > total:
        discard_part(part)
        raise _Transient(f"the server sent {received} bytes, announced {total}")


def _fetch_url(
    url: str, part: Path, policy: RetryPolicy, on_bytes: OnBytes, resumable: bool
) -> None:
    """Up to `policy.tries` attempts at one URL; raises _Permanent with the last reason."""
    for attempt in range(1, policy.tries + 1):
        try:
            _attempt(url, part, policy, on_bytes, resumable)
            return
        except _Transient as err:
            if attempt == policy.tries:
                tries = "1 try" if attempt == 1 else f"{attempt} tries"
                raise _Permanent(f"{err} ({tries})") from None
            policy.sleep(policy.delay(attempt))


# ---------------------------------------------------------------------------------------------
# Verification


@dataclass(frozen=True)
class Digest:
    """Size and checksums of one file (md5 only where one is published)."""

    bytes: int
    sha256: str
    md5: str | None


def digest_file(path: Path, with_md5: bool = False) -> Digest:
    """Size, sha256 and (optionally) md5 in one streamed pass."""
    size, digests = file_digests(path, "sha256", *(["md5"] if with_md5 else []))
    return Digest(size, digests["sha256"], digests.get("md5"))


def _mismatch(remote: RemoteFile, digest: Digest, recorded: str | None) -> str | None:
    """What does not match, as a clause, or None."""
    if remote.size is not None and digest.bytes != remote.size:
        return f"expected {remote.size} bytes, got {digest.bytes}"
    if remote.md5 is not None and digest.md5 != remote.md5:  # digest has md5 when published
        return f"its published md5 is {remote.md5}, got {digest.md5}"
    if remote.sha256 is not None and digest.sha256 != remote.sha256:
        return f"its published sha256 is {remote.sha256}, got {digest.sha256}"
    if recorded is not None and digest.sha256 != recorded:
        return f"the sha256 recorded at first download is {recorded}, got {digest.sha256}"
    return None


def _quarantine(part: Path, dest: Path) -> Path:
    corrupt = dest.with_name(dest.name + ".corrupt")
    os.replace(part, corrupt)
    return corrupt


# ---------------------------------------------------------------------------------------------
# Manifest


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_manifest(out_dir: Path, dataset: str) -> dict[str, Any]:
    """The folder's MANIFEST.json, or an empty one."""
    path = out_dir / MANIFEST
    if not path.exists():
        return {"format": MANIFEST_FORMAT, "dataset": dataset, "files": {}}
    try:
        manifest = json.loads(path.read_text())
        if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
            raise ValueError("no `files` object")
    except ValueError as err:
        raise DinctlError(
            f"{path} is not a dinctl manifest ({err})",
            hint="delete it and pass --force to download again",
        ) from None
    return manifest


def recorded_sha256(path: Path) -> str | None:
    """The sha256 MANIFEST.json beside `path` records for it, if the file is unchanged since
    (same size and mtime); None otherwise (no manifest, no entry, or the file changed)."""
    try:
        entry = json.loads((path.parent / MANIFEST).read_text())["files"][path.name]
        stat = path.stat()
        same = entry["bytes"] == stat.st_size and entry["mtime_ns"] == stat.st_mtime_ns
        sha = entry["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if same and isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha):
        return sha
    return None


def write_manifest(out_dir: Path, manifest: dict[str, Any]) -> None:
    """Write MANIFEST.json atomically (sorted, indented)."""
    with atomic_file(out_dir / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def is_complete(path: Path, entry: dict[str, Any] | None) -> bool:
    if entry is None or not path.is_file() or path.stat().st_size != entry.get("bytes"):
        return False
    return sha256_file(path) == entry.get("sha256")


def manifest_entry(
    url: str, digest: Digest, how: str, variant: str, placed: Path, member: str | None = None
) -> dict[str, Any]:
    """A manifest entry for the verified file `placed` (its mtime lets readers reuse the hash)."""
    entry: dict[str, Any] = {
        "url": url,
        "bytes": digest.bytes,
        "sha256": digest.sha256,
        "date": _now(),
        "how": how,
        "mtime_ns": placed.stat().st_mtime_ns,
    }
    if digest.md5 is not None:
        entry["md5"] = digest.md5
    entry["variant"] = variant
    if member is not None:
        entry["from"] = member
    return entry


# ---------------------------------------------------------------------------------------------
# Progress


@contextmanager
def _progress_bar(name: str, bar: BarFactory) -> Iterator[OnBytes]:
    """The bytes bar of one file (dinctl/reporting.py), closed when its transfer ends."""
    shown = bar(name, "bytes")
    try:
        yield shown.update
    finally:
        shown.close()


# ---------------------------------------------------------------------------------------------
# Fetch one file


def fetch_file(
    remote: RemoteFile,
    dest: Path,
    policy: RetryPolicy,
    *,
    recorded_sha256: str | None = None,
    bar: BarFactory = no_bar,
    check: Callable[[Path, str], None] | None = None,
) -> tuple[str, Digest]:
    """Download `remote` to `dest` (trying its URLs in order); returns (url, digest).

    `check(part, name)` inspects the verified bytes before they are renamed into place.
    A transfer is resumed only when its result can be verified (published md5/sha256 or
    `recorded_sha256`); otherwise it restarts from byte 0, so the sha256 recorded for it is
    that of one whole, uninterrupted response.
    """
    part = dest.with_name(dest.name + ".part")
    verifiable = bool(remote.md5 or remote.sha256 or recorded_sha256)
    failures: list[tuple[str, str]] = []
    for url in remote.urls:
        try:
            with _progress_bar(remote.name, bar) as on_bytes:
                _fetch_url(url, part, policy, on_bytes, resumable=verifiable)
                digest = digest_file(part, with_md5=remote.md5 is not None)
                problem = _mismatch(remote, digest, recorded_sha256)
                if problem is not None and _read_state(part).get("spliced"):
                    # the resumed pieces may come from two versions: fetch it whole once
                    discard_part(part)
                    _fetch_url(url, part, policy, on_bytes, resumable=False)
                    digest = digest_file(part, with_md5=remote.md5 is not None)
                    problem = _mismatch(remote, digest, recorded_sha256)
        except _Permanent as err:
            failures.append((url, str(err)))
            continue
        _state_path(part).unlink(missing_ok=True)
        if problem is not None:
            corrupt = _quarantine(part, dest)
            raise DinctlError(
                f"{remote.name} from {url} failed verification: {problem}",
                hint=f"the bytes are kept in {corrupt}; pass --mirror BASE_URL for another copy "
                "or --force to accept a new upstream file",
            )
        if check is not None:
            try:
                check(part, remote.name)
            except DinctlError:
                _quarantine(part, dest)
                raise
        os.replace(part, dest)
        return url, digest
    reasons = {reason for _, reason in failures}
    if len(failures) == 1:
        message = f"cannot download {failures[0][0]}: {failures[0][1]}"
    elif len(reasons) == 1:
        tried = ", ".join(url for url, _ in failures)
        message = f"cannot download {remote.name}: {reasons.pop()}; tried {tried}"
    else:
        tried = "; ".join(f"{url}: {reason}" for url, reason in failures)
        message = f"cannot download {remote.name} from any of {len(failures)} URLs: {tried}"
    hint = NETWORK_HINT
    if part.exists() and part.stat().st_size and verifiable and _read_state(part):
        hint = f"rerun to resume from the {part.stat().st_size} bytes in {part}, or {hint}"
    elif part.exists() and not verifiable:
        discard_part(part)  # cannot be resumed safely: nothing half-done stays behind
    raise DinctlError(message, hint=hint)


# ---------------------------------------------------------------------------------------------
# The command's library entry points


def _open_out(out_dir: Path, source: Source) -> dict[str, Any]:
    """Create `out_dir` (one line if it cannot be) and read its manifest."""
    for remote in source.files:
        check_name(remote.name, "file name")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        if not os.access(out_dir, os.W_OK):
            raise PermissionError(errno.EACCES, "Permission denied", str(out_dir))
    except OSError as err:
        raise write_error(out_dir, err) from None
    return read_manifest(out_dir, source.dataset)


def download(
    source: Source,
    out_dir: Path,
    *,
    force: bool = False,
    policy: RetryPolicy | None = None,
    bar: BarFactory = no_bar,
    log: Log = no_line,
    max_extract_bytes: int = MAX_EXTRACT_BYTES,
) -> dict[str, Any]:
    """Fetch every file of `source` into `out_dir`, skipping complete ones; returns the manifest.

    Holds the folder's lock throughout: a second `download` into it gets a one-line error.
    """
    out_dir = Path(out_dir)
    with folder_lock(out_dir, what="download folder"):
        manifest = _open_out(out_dir, source)
        for remote in source.files:
            _download_one(
                source, remote, out_dir, manifest, force, policy or RetryPolicy(), bar, log,
                max_extract_bytes,
            )  # fmt: skip
    return manifest


def _download_one(
    source: Source,
    remote: RemoteFile,
    out_dir: Path,
    manifest: dict[str, Any],
    force: bool,
    policy: RetryPolicy,
    bar: BarFactory,
    log: Log,
    max_bytes: int,
) -> None:
    files: dict[str, Any] = manifest["files"]
    dest = out_dir / remote.name
    entry = files.get(remote.name)
    fresh = False
    if not force and is_complete(dest, entry):
        log(f"{remote.name}: complete (size and sha256 match {MANIFEST}), skipped")
    else:
        if force:
            discard_part(dest.with_name(dest.name + ".part"))
        recorded = None if force or entry is None else entry.get("sha256")

        def check(path: Path, name: str) -> None:
            check_zip(path, name, max_bytes=max_bytes)

        url, digest = fetch_file(
            remote,
            dest,
            policy,
            recorded_sha256=recorded,
            bar=bar,
            check=check if source.is_zip else None,
        )
        files[remote.name] = manifest_entry(url, digest, "download", source.variant, dest)
        write_manifest(out_dir, manifest)
        checked = checked_against(remote, recorded, True)
        log(f"{remote.name}: {digest.bytes} bytes from {url}, {checked}")
        fresh = True
    if source.unpack is not None:
        source.unpack.extract(
            dest, out_dir, manifest, source.variant, force or fresh, log, max_bytes
        )


def place_file(src: Path, dest: Path) -> str:
    """Hard-link `src` to `dest` (same file system), else copy it; returns which."""
    if src.resolve() == dest.resolve():
        return "in place"
    with atomic_file(dest) as tmp:
        try:
            os.link(src, tmp)
            how = "hard link"
        except OSError:
            shutil.copyfile(src, tmp)
            how = "copy"
    return how


def _find_local(root: Path, remote: RemoteFile, one_file: bool) -> Path | None:
    """The user's copy of `remote` under `root`: the same name, or the gunzipped .json."""
    names = [remote.name]
    if remote.name.endswith(".json.gz"):
        names.append(remote.name.removesuffix(".gz"))
    if root.is_file():
        return root if root.name in names or one_file else None
    for name in names:
        if (root / name).is_file():
            return root / name
    return None


@contextmanager
def registering(
    source: Source, out_dir: Path, from_path: Path
) -> Iterator[tuple[Path, Path, dict[str, Any]]]:
    """The shared start of a `--from` registration: `from_path` must exist and lie apart from
    `out_dir`; yields both as Paths and the opened manifest, under the download folder's lock."""
    from_path = Path(from_path)
    if not from_path.exists():
        raise DinctlError(f"--from {from_path} does not exist", hint="give a file or a folder")
    out_dir = Path(out_dir)
    check_disjoint(out_dir, [("--from", from_path)], files_inside=True)
    with folder_lock(out_dir, what="download folder"):
        yield from_path, out_dir, _open_out(out_dir, source)


def not_there(from_path: Path, source: Source, missing: str) -> DinctlError:
    """`--from` lacks one of `source`'s files (`missing` names it)."""
    return DinctlError(
        f"--from {from_path} has no {missing}",
        hint=f"give the folder holding {', '.join(f.name for f in source.files)}",
    )


def register_local(
    source: Source,
    out_dir: Path,
    from_path: Path,
    *,
    force: bool = False,
    log: Log = no_line,
    max_extract_bytes: int = MAX_EXTRACT_BYTES,
) -> dict[str, Any]:
    """Verify files the user already has and hard-link (or copy) them into `out_dir`."""
    with registering(source, out_dir, from_path) as (from_path, out_dir, manifest):
        for remote in source.files:
            local = _find_local(from_path, remote, len(source.files) == 1)
            if local is None and source.unpack is not None and from_path.is_dir():
                source.unpack.from_folder(from_path, source, out_dir, manifest, log)
                continue
            if local is None:
                alt = " (or the gunzipped .json)" if remote.name.endswith(".gz") else ""
                raise not_there(from_path, source, f"{remote.name}{alt}")
            _register_one(source, remote, local, out_dir, manifest, force, log, max_extract_bytes)
    return manifest


def _register_one(
    source: Source,
    remote: RemoteFile,
    local: Path,
    out_dir: Path,
    manifest: dict[str, Any],
    force: bool,
    log: Log,
    max_bytes: int,
) -> None:
    files: dict[str, Any] = manifest["files"]
    # A release zip keeps its release name; a gunzipped Amazon .json keeps its own.
    name = remote.name if source.is_zip else local.name
    if source.is_zip:
        try:
            check_zip(local, str(local), max_bytes=max_bytes, hint="get a good copy of the zip")
        except DinctlError:
            corrupt = out_dir / f"{name}.corrupt"
            place_file(local, corrupt)  # a hard link (or copy): the user's file stays as it is
            raise
    digest = digest_file(local, with_md5=remote.md5 is not None)
    entry = files.get(name)
    recorded = None if force or entry is None else entry.get("sha256")
    checkable = name == remote.name
    problem = _mismatch(remote, digest, recorded) if checkable else None
    if problem is not None:
        raise DinctlError(
            f"{local} is not the expected {remote.name}: {problem}",
            hint="download it again with `dinctl download` (without --from)",
        )
    how = place_file(local, out_dir / name)
    files[name] = manifest_entry(
        local.resolve().as_uri(), digest, how, source.variant, out_dir / name
    )
    write_manifest(out_dir, manifest)
    log(f"{name}: registered from {local} ({how}), {checked_against(remote, recorded, checkable)}")
    if source.unpack is not None:
        source.unpack.extract(
            out_dir / name, out_dir, manifest, source.variant, True, log, max_bytes
        )


def checked_against(remote: RemoteFile, recorded: str | None, checkable: bool) -> str:
    """What a registered file was verified against, for the log line."""
    if checkable and remote.md5:
        return "matches the published md5"
    if checkable and recorded:
        return "matches the recorded sha256"
    return "no published checksum: sha256 recorded"


def fetch_source(
    source: Source,
    out_dir: Path,
    *,
    from_path: Path | None = None,
    force: bool = False,
    policy: RetryPolicy | None = None,
    bar: BarFactory = no_bar,
    log: Log = no_line,
    max_extract_bytes: int = MAX_EXTRACT_BYTES,
) -> dict[str, Any]:
    """`register_local` the user's copy (`from_path`) or `download` it: a dataset's `fetch`
    when its files need no more than `Source.unpack`."""
    if from_path is not None:
        return register_local(
            source, out_dir, from_path, force=force, log=log, max_extract_bytes=max_extract_bytes
        )
    return download(source, out_dir, force=force, policy=policy, bar=bar, log=log,
                    max_extract_bytes=max_extract_bytes)  # fmt: skip
