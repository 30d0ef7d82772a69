"""Exclusive folder locks: one writer per dataset, download, run or experiment folder.

    with folder_lock(out, what="dataset"):
        ...  # write or replace `out`

The lock is a file beside the folder, `.<name>.lock` (so it survives the folder being
replaced by a rename), holding the holder's pid, host, command and start time as JSON. It
is held with `flock`, which the kernel drops when the holder dies, so a lock left by a
killed process is stale and simply taken over; where `flock` is not supported, a lock
whose pid is dead on this host is stale. A second writer gets a one-line DinctlError
naming the holder. Locks are re-entrant within a process.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dinctl.errors import DinctlError
from dinctl.fsutil import pid_alive, write_error

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None  # type: ignore[assignment]

_HELD: dict[Path, int] = {}  # lock path -> depth, for re-entry within this process


def lock_path(folder: Path) -> Path:
    """Where the lock of `folder` lives: `.<name>.lock` beside it."""
    folder = Path(folder).resolve()
    return folder.parent / f".{folder.name}.lock"


def read_holder(path: Path) -> dict[str, Any] | None:
    """The holder recorded in a lock file, or None if it cannot be read."""
    try:
        holder = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _describe(holder: dict[str, Any] | None) -> str:
    if holder is None:
        return "another process"
    since = holder.get("started", "?")
    command = holder.get("command") or "?"
    return f"pid {holder.get('pid')} on {holder.get('host')} (`{command}`, since {since})"


def _stale(holder: dict[str, Any] | None) -> bool:
    """A lock whose holder is dead on this host (used only where flock is unsupported)."""
    if holder is None or holder.get("host") != socket.gethostname():
        return False
    pid = holder.get("pid")
    return isinstance(pid, int) and not pid_alive(pid)


def _held_elsewhere(path: Path) -> bool:
    """Without flock: the lock file names a live holder other than this process."""
    holder = read_holder(path)
    return holder is not None and not _stale(holder) and holder.get("pid") != os.getpid()


def _busy(folder: Path, what: str, path: Path) -> DinctlError:
    return DinctlError(
        f"{what} {folder} is in use by {_describe(read_holder(path))}",
        hint=f"wait for it to finish; if that process is gone, delete {path}",
    )


def _acquire(folder: Path, what: str, path: Path, command: str) -> int:
    """Open and lock `path`; returns the descriptor; raises naming the holder if busy."""
    for _ in range(5):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise write_error(path, err, "create the lock file") from None
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            elif _held_elsewhere(path):
                raise BlockingIOError(errno.EWOULDBLOCK, "locked")
        except BlockingIOError:
            os.close(fd)
            raise _busy(folder, what, path) from None
        except OSError as err:  # flock unsupported here (some network file systems)
            if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                os.close(fd)
                raise
            if _held_elsewhere(path):
                os.close(fd)
                raise _busy(folder, what, path) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # the previous holder removed the file while we waited: try again
            os.close(fd)
            continue
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": command,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        try:
            os.ftruncate(fd, 0)
            os.write(fd, (json.dumps(info) + "\n").encode())
            os.fsync(fd)
        except OSError as err:  # a full disk: one line; released as folder_lock releases
            with contextlib.suppress(OSError):
                path.unlink()
            os.close(fd)
            raise write_error(path, err) from None
        return fd
    raise _busy(folder, what, path)


@contextlib.contextmanager
def folder_lock(folder: Path, what: str = "folder", command: str | None = None) -> Iterator[Path]:
    """Hold the exclusive lock of `folder` for the block; yields the lock file's path.

    `what` names the folder in the error ("dataset", "download folder", "run", ...);
    `command` is recorded for the error a second writer sees (default: this process's argv).
    """
    folder = Path(folder)
    path = lock_path(folder)
    if path in _HELD:
        _HELD[path] += 1
        try:
            yield path
        finally:
            _HELD[path] -= 1
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_error(folder, err) from None
    cmd = (
        command if command is not None else " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:])
    )
    fd = _acquire(folder, what, path, cmd)
    _HELD[path] = 1
    try:
        yield path
    finally:
        del _HELD[path]
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)
