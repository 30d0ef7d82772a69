"""Zip archives read safely: member names, CRCs and sizes checked, members streamed.

A zip is accepted only when every member has a relative name without `..`, passes its
CRC check, and stays within the extraction limits: what its members expand to in all
(`max_bytes`, default `MAX_EXTRACT_BYTES`, raised with `--max-extract-bytes`) and the
compression ratio of any member over 1 MiB (`MAX_RATIO`; a zip bomb expands ~1000×, real
CSV ~5×). Sizes are counted while streaming, so a member that declares less than it holds
is caught too, and no member is ever held in memory whole. A `.gz` input (Amazon files, a
log) is checked the same way before anything reads it: streamed once, counted, never kept.
"""

from __future__ import annotations

import gzip
import re
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from dinctl.errors import DinctlError

MAX_EXTRACT_BYTES = 8 << 30  # 8 GiB: ml-25m expands to 1.2 GB
MAX_RATIO = 200
RATIO_FLOOR = 1 << 20  # members smaller than this are not ratio-checked
CHUNK = 1 << 16
LIMIT_HINT = "if the archive is genuine, raise the limit with --max-extract-bytes N"


def _unsafe(name: str) -> str | None:
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        return "an absolute path"
    if ".." in re.split(r"[\\/]", name):
        return "a '..' path"
    return None


def _open(path: Path, label: str, hint: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError):
        raise DinctlError(f"{label} is not a readable zip archive", hint=hint) from None


def _check_declared(label: str, info: zipfile.ZipInfo, total: int, max_bytes: int) -> None:
    if total > max_bytes:
        raise DinctlError(
            f"{label} expands to more than {max_bytes} bytes (member {info.filename!r} "
            f"declares {info.file_size}): refusing to extract it",
            hint=LIMIT_HINT,
        )
    packed = max(info.compress_size, 1)
    if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * packed:
        raise DinctlError(
            f"{label}: member {info.filename!r} expands {info.file_size // packed}"
            f"× ({info.compress_size} → {info.file_size} bytes), over the limit of {MAX_RATIO}×: "
            "refusing a likely zip bomb",
            hint=LIMIT_HINT,
        )


def stream_member(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, label: str, budget: int
) -> Iterator[bytes]:
    """The bytes of one member in chunks; raises past `budget` bytes or on a bad CRC."""
    seen = 0
    try:
        with zf.open(info) as src:
            while block := src.read(CHUNK):
                seen += len(block)
                if seen > budget or seen > info.file_size:
                    raise DinctlError(
                        f"{label}: member {info.filename!r} holds more than "
                        f"{min(budget, info.file_size)} bytes (declares {info.file_size}): "
                        "refusing to extract it",
                        hint=LIMIT_HINT,
                    )
                yield block
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as err:
        raise DinctlError(
            f"{label}: member {info.filename!r} is corrupt ({_reason(err)})",
            hint="download the archive again (pass --force)",
        ) from None


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:100]


def check_zip(
    path: Path, label: str | None = None, max_bytes: int = MAX_EXTRACT_BYTES, hint: str = ""
) -> None:
    """Refuse a zip that is not one, has an unsafe member name, a bad CRC or is too big.

    Reads every member once (streamed, nothing kept): the CRC of each is tested.
    """
    label = label or path.name
    hint = hint or "pass --force to download it again, or --mirror BASE_URL for another copy"
    with _open(path, label, hint) as zf:
        infos = zf.infolist()
        for info in infos:
            kind = _unsafe(info.filename)
            if kind is not None:
                raise DinctlError(
                    f"{label} has an unsafe member {info.filename!r} ({kind}): refusing to "
                    "extract it",
                    hint="this is not a GroupLens release; pass --mirror BASE_URL for a genuine "
                    "copy",
                )
        total = 0
        for info in infos:
            total += info.file_size
            _check_declared(label, info, total, max_bytes)
        left = max_bytes
        for info in infos:
            for block in stream_member(zf, info, label, left):
                left -= len(block)


@contextmanager
def open_zip(path: Path, label: str, hint: str) -> Iterator[zipfile.ZipFile]:
    """A ZipFile, or a one-line error when it is not a readable zip."""
    zf = _open(path, label, hint)
    try:
        yield zf
    finally:
        zf.close()


def extract_member(
    zf: zipfile.ZipFile, name: str, dst: Path | IO[bytes], label: str, max_bytes: int
) -> int:
    """Stream member `name` into `dst` (a path or an open binary file); returns its size."""
    info = zf.getinfo(name)
    _check_declared(label, info, info.file_size, max_bytes)
    written = 0
    if isinstance(dst, Path):
        with open(dst, "wb") as out:
            return extract_member(zf, name, out, label, max_bytes)
    for block in stream_member(zf, info, label, max_bytes):
        dst.write(block)
        written += len(block)
    return written


def check_gzip(path: Path, max_bytes: int = MAX_EXTRACT_BYTES) -> None:
    """Refuse a .gz file that is corrupt, expands to more than `max_bytes`, or expands more than
    MAX_RATIO times once over RATIO_FLOOR (a gzip bomb): one streamed pass, nothing kept."""
    packed = max(path.stat().st_size, 1)
    hint = f"if {path.name} is genuine, decompress it yourself (gunzip) and pass the plain file"
    written = 0
    try:
        with gzip.open(path, "rb") as f:
            while block := f.read(CHUNK * 16):
                written += len(block)
                if written > max_bytes:
                    raise DinctlError(
                        f"{path} expands to more than {max_bytes} bytes: refusing to read it",
                        hint=hint,
                    )
                if written > RATIO_FLOOR and written > MAX_RATIO * packed:
                    raise DinctlError(
                        f"{path} expands more than {MAX_RATIO}× ({packed} bytes → over "
                        f"{written}): refusing a likely gzip bomb",
                        hint=hint,
                    )
    except (OSError, EOFError, zlib.error) as err:
        raise DinctlError(f"cannot read {path}: {err}", hint="download it again") from None
