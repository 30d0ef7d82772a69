"""Atomic writes: outputs appear complete or not at all."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dinctl.errors import DinctlError


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_json(path: Path, hint: str | None = None) -> Any:
    """Parse a JSON file; malformed JSON is a one-line DinctlError naming the file and line."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise DinctlError(
            f"{path} is not valid JSON ({err.msg} at line {err.lineno})", hint=hint
        ) from None


def check_output_dir(out: Path, overwrite: bool) -> None:
    """Refuse to replace an existing output folder unless asked to."""
    if out.exists() and not overwrite:
        raise DinctlError(f"{out} already exists", hint="pass --overwrite to replace it")
    if out.exists() and not out.is_dir():
        raise DinctlError(f"{out} exists and is not a folder", hint="choose another --out")


@contextlib.contextmanager
def atomic_dir(out: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces `out` in one rename."""
    out = Path(out)
    check_output_dir(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling path; on success it is renamed onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
