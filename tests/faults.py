"""Fault injection for tests: a loopback HTTP server, a full disk, denied writes, a lock holder.

* `Server` / `Route`: a real HTTP server on 127.0.0.1 that serves bytes and can honour or
  ignore Range and If-Range, send a strong ETag and Last-Modified, change the file between
  requests, drop or reset the connection mid-body, answer error codes, or stall.
* `no_space(monkeypatch, ...)`: writers that fail with ENOSPC (a tiny full file system).
* `deny_writes(monkeypatch, root)`: creating anything under `root` fails with EACCES, as an
  unwritable or read-only folder does (tests run as root, where chmod does not stop writes).
* `LockHolder`: a second Python process holding a folder lock until released or killed.
* `blob`, `zip_of`, `serve_one`, `manifest_files`, `stderr_lines`, `cli`,
  `download_movielens`: what the download tests build their inputs from and read outcomes with.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------ HTTP


@dataclass
class Route:
    """What one path serves. `versions` replace `body` one per request after the first."""

    body: bytes
    fail: list[int] = field(default_factory=list)  # status codes answered first, one per request
    drop_after: int | None = None  # bytes sent before the connection is closed
    drops: int = 0  # how many responses are dropped that way (-1: every one)
    ignore_range: bool = False
    stall: bool = False
    reset: bool = False  # end dropped responses with a TCP reset instead of a clean close
    validators: bool = True  # send a strong ETag and Last-Modified derived from the body
    weak_etag: bool = False  # send W/"..." (not usable in If-Range) and no Last-Modified
    if_range: str = "honour"  # "honour", or "ignore" (206 whatever If-Range says)
    versions: list[bytes] = field(default_factory=list)  # the body after each request, in turn
    fixed_etag: str | None = None  # a lying server: the same ETag whatever the body

    def etag(self) -> str:
        tag = self.fixed_etag or f'"{hashlib.sha256(self.body).hexdigest()[:16]}"'
        return f"W/{tag}" if self.weak_etag else tag

    def last_modified(self) -> str:
        return formatdate(1_600_000_000 + len(self.body) + self.body[:1].count(b"x"), usegmt=True)


class Server:
    """The loopback server; `log` holds (path, Range, If-Range) of every request."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.log: list[tuple[str, str | None, str | None]] = []
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                outer._serve(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        rng, if_range = h.headers.get("Range"), h.headers.get("If-Range")
        self.log.append((h.path, rng, if_range))
        route = self.routes.get(h.path)
        if route is None:
            h.send_error(404, "Not Found")
            return
        if route.fail:
            h.send_error(route.fail.pop(0))
            return
        if route.stall:
            self.release.wait(10)
            return
        body, start = route.body, 0
        etag, modified = route.etag(), route.last_modified()
        if route.versions:  # the next request sees the next version of the file
            route.body = route.versions.pop(0)
        match = re.fullmatch(r"bytes=(\d+)-", rng or "")
        fresh = if_range is None or if_range in (etag, modified) or route.if_range == "ignore"
        if match and not route.ignore_range and fresh:
            start = int(match.group(1))
            if start >= len(body):
                h.send_response(416)
                h.send_header("Content-Range", f"bytes */{len(body)}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            h.send_response(206)
            h.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            h.send_response(200)
        if route.validators or route.weak_etag:
            h.send_header("ETag", etag)
        if route.validators and not route.weak_etag:
            h.send_header("Last-Modified", modified)
        h.send_header("Content-Length", str(len(body) - start))
        h.end_headers()
        self._send(h, route, body[start:])

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, route: Route, payload: bytes) -> None:
        if route.drops and route.drop_after is not None:
            route.drops -= 1 if route.drops > 0 else 0
            h.wfile.write(payload[: route.drop_after])
            h.wfile.flush()
            if route.reset:
                linger = struct.pack("ii", 1, 0)
                h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                h.connection.close()
            else:
                h.connection.shutdown(socket.SHUT_RDWR)
            h.close_connection = True
            return
        h.wfile.write(payload)

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"

    def ranges(self, name: str) -> list[str | None]:
        return [r for p, r, _ in self.log if p == f"/{name}"]

    def if_ranges(self, name: str) -> list[str | None]:
        return [i for p, _, i in self.log if p == f"/{name}"]

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


# ------------------------------------------------------------------------------ download tests


def blob(n: int, seed: int = 0) -> bytes:
    """`n` pseudo-random bytes, the same for the same seed (a hash chain)."""
    out, block = bytearray(), hashlib.sha256(str(seed).encode()).digest()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:n])


def zip_of(files: dict[str, bytes], top: str = "ml-latest-small") -> bytes:
    """A deflated zip holding `files` under the folder `top` (at the root when `top` is empty)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(f"{top}/{name}" if top else name, data)
    return buf.getvalue()


def serve_one(
    server: Server, route: Route, md5_of: bytes | None = None, name: str = "f.bin"
) -> Any:
    """Serve `route` at /NAME; the one-file source for it (publishing the md5 of `md5_of`)."""
    from dinctl.data.sources import RemoteFile, Source

    server.routes[f"/{name}"] = route
    md5 = None if md5_of is None else hashlib.md5(md5_of).hexdigest()
    return Source("amazon", "Test", (RemoteFile(name, (server.url(name),), md5=md5),))


def manifest_files(folder: Path) -> dict:
    """The `files` table of `folder`'s MANIFEST.json, or {} where there is none."""
    path = folder / "MANIFEST.json"
    return json.loads(path.read_text())["files"] if path.exists() else {}


def stderr_lines(result: Any) -> list[str]:
    """The lines a CliRunner result wrote to stderr."""
    return result.stderr.strip().splitlines()


def cli(*args: str) -> Any:
    """Run `dinctl ARGS` in this process (typer's CliRunner; stdout and stderr kept apart)."""
    from typer.testing import CliRunner

    from dinctl.cli.main import app

    return CliRunner().invoke(app, list(args))


def download_movielens(
    mirror: str, out: Path, *extra: str, variant: str = "latest-small", progress: bool = False
) -> Any:
    """`dinctl download movielens --variant V --mirror M --out OUT [--no-progress] EXTRA...`."""
    args = ["download", "movielens", "--variant", variant, "--mirror", mirror, "--out", str(out)]
    return cli(*args, *([] if progress else ["--no-progress"]), *extra)


# ------------------------------------------------------------------------------ file systems


def enospc(path: object = None) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path) if path else None)


def no_space(
    monkeypatch: pytest.MonkeyPatch, *, after_bytes: int = 100, parquet: bool = True
) -> list[str]:
    """Make Parquet writes (and `Path.write_text`/`write_bytes`) fail with ENOSPC.

    A Parquet writer first writes `after_bytes` bytes of its file (a partial file, as on a full
    disk), then really writes to /dev/full, so the error is the one Polars raises for a full
    disk. Returns the list of paths that failed.
    """
    import polars as pl

    failed: list[str] = []
    real = pl.DataFrame.write_parquet

    def full_parquet(self: Any, file: Any, *args: Any, **kwargs: Any) -> None:
        with open(file, "wb") as f:
            f.write(b"PAR1" + b"\0" * after_bytes)
        failed.append(str(file))
        real(self, "/dev/full", *args, **kwargs)
        raise enospc(file)  # /dev/full always fails; this is not reached

    def full_text(self: Path, *args: Any, **kwargs: Any) -> int:
        failed.append(str(self))
        raise enospc(self)

    if parquet:
        monkeypatch.setattr(pl.DataFrame, "write_parquet", full_parquet)
    else:
        monkeypatch.setattr(Path, "write_text", full_text)
        monkeypatch.setattr(Path, "write_bytes", full_text)
    return failed


def deny_writes(monkeypatch: pytest.MonkeyPatch, root: Path, *, code: int = errno.EACCES) -> None:
    """Creating folders or files under `root` fails (permission denied / read-only)."""
    root = Path(root).resolve()
    real_mkdir, real_open = Path.mkdir, os.open

    def inside(path: object) -> bool:
        p = Path(os.fspath(path)).resolve()  # type: ignore[arg-type]
        return p == root or root in p.parents

    def mkdir(self: Path, *args: Any, **kwargs: Any) -> None:
        if inside(self) and not (self.is_dir() and kwargs.get("exist_ok")):
            raise OSError(code, os.strerror(code), str(self))
        real_mkdir(self, *args, **kwargs)

    def open_(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and inside(path):
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, flags, *args, **kwargs)

    def access(path: Any, mode: int, *args: Any, **kwargs: Any) -> bool:
        return not (mode & os.W_OK and inside(path))

    monkeypatch.setattr(Path, "mkdir", mkdir)
    monkeypatch.setattr(os, "open", open_)
    monkeypatch.setattr(os, "access", access)


# ------------------------------------------------------------------------------ processes

_HOLDER = """
import sys, time
from pathlib import Path
from dinctl.locks import folder_lock
with folder_lock(Path(sys.argv[1]), what=sys.argv[2], command="holder test"):
    print("locked", flush=True)
    sys.stdin.readline()
"""


class LockHolder:
    """A second process that holds `folder`'s lock until `release()` (or `kill()`)."""

    def __init__(self, folder: Path, what: str = "folder") -> None:
        env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, str(folder), what],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.strip() == "locked", line
        self.pid = self.proc.pid

    def release(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        self.proc.wait(30)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(30)


@contextmanager
def lock_held(folder: Path, what: str = "folder") -> Iterator[LockHolder]:
    holder = LockHolder(folder, what)
    try:
        yield holder
    finally:
        if holder.proc.poll() is None:
            holder.release()


@contextmanager
def small_disk(folder: Path, size: str = "4m") -> Iterator[Path]:
    """A real tmpfs of `size` mounted on `folder` (root only; skips the test where mounting is
    not allowed), unmounted afterwards: a full disk that C++ writers (torch, Polars) meet too."""
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()[:80]}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill_disk(folder: Path, leave: int = 0) -> None:
    """Fill the file system of `folder` until `leave` bytes (about) are free."""
    free = os.statvfs(folder)
    room = free.f_bavail * free.f_frsize - leave
    with open(folder / "filler", "wb") as f:
        with contextlib.suppress(OSError):
            f.write(b"\0" * max(room, 0))
