"""dinctl.locks: one writer per folder, stale locks taken over, the holder named (issue 13: 2)."""

from __future__ import annotations

import errno
import json
import os
import socket
from pathlib import Path

import pytest
from faults import LockHolder, lock_held

from dinctl import locks
from dinctl.errors import DinctlError
from dinctl.locks import folder_lock, lock_path, read_holder

pytestmark = pytest.mark.notorch  # torch-free: `make test-py` runs it on 3.10 and 3.13


def test_lock_file_records_the_holder_and_is_removed_after(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with folder_lock(run, what="run", command="dinctl train --out run") as path:
        assert path == lock_path(run) == tmp_path / ".run.lock"
        holder = read_holder(path)
        assert holder is not None
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        assert holder["command"] == "dinctl train --out run"
        with folder_lock(run, what="run"):  # re-entrant in one process
            pass
        assert path.exists()
    assert not path.exists()


def test_a_second_process_is_refused_with_the_holder_named(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with lock_held(run, "run") as holder:
        with pytest.raises(DinctlError) as err:
            with folder_lock(run, what="run"):
                pass
        message = err.value.message
        assert message.startswith(f"run {run} is in use by pid {holder.pid} on ")
        assert f"on {socket.gethostname()} (`holder test`, since " in message
        assert err.value.hint == (
            f"wait for it to finish; if that process is gone, delete {tmp_path / '.run.lock'}"
        )
    with folder_lock(run, what="run"):
        pass


def test_the_lock_is_released_when_the_holder_dies(tmp_path: Path) -> None:
    run = tmp_path / "run"
    holder = LockHolder(run, "run")
    holder.kill()
    assert read_holder(lock_path(run))["pid"] == holder.pid  # type: ignore[index]
    with folder_lock(run, what="run"):  # stale: taken over
        assert read_holder(lock_path(run))["pid"] == os.getpid()  # type: ignore[index]


def test_an_exception_inside_releases_the_lock(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        with folder_lock(tmp_path / "d"):
            raise ValueError
    with lock_held(tmp_path / "d"):  # another process can take it now
        pass


def _no_flock(monkeypatch: pytest.MonkeyPatch) -> None:
    def unsupported(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(locks.fcntl, "flock", unsupported)


def test_without_flock_a_live_pid_holds_and_a_dead_one_is_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    path = lock_path(run)
    with lock_held(run) as holder:
        _no_flock(monkeypatch)
        with pytest.raises(DinctlError) as err:
            with folder_lock(run):
                pass
        assert f"is in use by pid {holder.pid}" in err.value.message
        monkeypatch.undo()
    info = {"pid": _dead_pid(), "host": socket.gethostname(), "command": "x", "started": "t"}
    path.write_text(json.dumps(info))
    _no_flock(monkeypatch)
    with folder_lock(run):
        assert read_holder(path)["pid"] == os.getpid()  # type: ignore[index]


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_unwritable_lock_folder_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from faults import deny_writes

    deny_writes(monkeypatch, tmp_path)
    with pytest.raises(DinctlError) as err:
        with folder_lock(tmp_path / "run"):
            pass
    assert err.value.message == (
        f"cannot create the lock file {tmp_path / '.run.lock'}: permission denied"
    )
