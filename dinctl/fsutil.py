"""Atomic writes: outputs appear complete or not at all; write failures are one line."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import glob
import hashlib
import json
import os
import shutil
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from dinctl.errors import DinctlError

_WRITE_REASONS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.EFBIG: "file too large (a file-size limit, ulimit -f)",
}


def file_digests(path: Path, *algorithms: str, chunk: int = 1 << 22) -> tuple[int, dict[str, str]]:
    """(size, {algorithm: hex digest}) of a file in one streamed pass, never held whole;
    "blake2b" is the 128-bit one meta.json records."""
    hashes = {a: hashlib.blake2b(digest_size=16) if a == "blake2b" else hashlib.new(a)
              for a in algorithms}  # fmt: skip
    size = 0
    with open(path, "rb") as f:
        while block := f.read(chunk):
            for h in hashes.values():
                h.update(block)
            size += len(block)
    return size, {a: h.hexdigest() for a, h in hashes.items()}


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, streamed."""
    return file_digests(path, "sha256")[1]["sha256"]


def check_zip_crc(path: Path, what: str, hint: str | None = None) -> None:
    """Verify every member of a zip archive (a torch checkpoint) against its CRC-32, streamed:
    torch.load does not, and loads flipped bytes as different weights."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as err:
        raise DinctlError(f"{path} is not a readable {what} ({err})", hint=hint) from None
    if bad is not None:
        raise DinctlError(
            f"{path} is damaged: its member {bad!r} fails its CRC-32 check", hint=hint
        )


def read_json(path: Path, hint: str | None = None) -> Any:
    """Parse a JSON file; malformed JSON is a one-line DinctlError naming the file and line."""
    try:
        return json.loads(Path(path).read_bytes().decode("utf-8"))
    except json.JSONDecodeError as err:
        raise DinctlError(
            f"{path} is not valid JSON ({err.msg} at line {err.lineno})", hint=hint
        ) from None
    except UnicodeDecodeError as err:
        bad = err.object[err.start : err.start + 1]
        raise DinctlError(
            f"{path} is not UTF-8 text (byte {err.start}: {bad!r})",
            hint=hint,
        ) from None
    except RecursionError:
        raise DinctlError(f"{path} nests JSON too deeply", hint=hint) from None


def write_error(path: Path, err: OSError, what: str = "write") -> DinctlError:
    """A one-line DinctlError for an OSError met while writing `path`."""
    reason = _WRITE_REASONS.get(err.errno or 0, err.strerror or type(err).__name__)
    hint = {
        errno.ENOSPC: "free some space and try again",
        errno.EDQUOT: "free some space and try again",
        errno.EFBIG: "raise the file-size limit (ulimit -f) or write elsewhere",
    }.get(err.errno or 0, "choose an --out you can write to")
    return DinctlError(f"cannot {what} {path}: {reason}", hint=hint)


def probe_write(folder: Path, size: int = 1 << 20) -> OSError | None:
    """The OSError writing `size` bytes in `folder` meets now (None when it fits): what a
    library that reports a write failure without its errno (Polars' "Invalid thrift") met."""
    probe = Path(folder) / f".probe-{os.getpid()}"
    try:
        with open(probe, "wb") as f:
            f.write(b"\0" * size)
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:
        return err
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    return None


def check_outside_artefacts(out: Path) -> None:
    """Refuse an output inside a dataset or bundle folder: each has one writer, its own, and a
    file dropped into one would be lost (or replace a verified file) on its next rewrite."""
    target = Path(out).resolve()
    for folder in target.parents:
        if (folder / "bundle.json").is_file():
            kind = "export bundle"
        elif (folder / "meta.json").is_file() and (folder / "items.parquet").is_file():
            kind = "dataset"
        else:
            continue
        raise DinctlError(
            f"{out} lies inside the {kind} folder {folder}: refusing to write into it",
            hint=f"choose an --out outside the {kind}",
        )


def check_output_dir(out: Path, overwrite: bool) -> None:
    """Refuse to replace an existing output folder unless asked to, or anything not a folder."""
    check_output_kind(out, "folder")
    if out.exists() and not overwrite:
        raise DinctlError(f"{out} already exists", hint="pass --overwrite to replace it")


_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFLNK: "a broken symbolic link",
    stat.S_IFDIR: "a folder",
    stat.S_IFREG: "a file",
}


def check_output_kind(out: Path, kind: str) -> None:
    """Refuse an existing output that is not a regular `kind` ("file" or "folder"): a rename
    would replace a device node, a FIFO or a folder by the output."""
    try:
        mode = os.stat(out).st_mode
    except FileNotFoundError:
        try:
            mode = os.lstat(out).st_mode  # a dangling symbolic link
        except FileNotFoundError:
            return
    except OSError as err:
        raise DinctlError(f"cannot inspect {out}: {err.strerror}") from None
    want = stat.S_IFDIR if kind == "folder" else stat.S_IFREG
    if stat.S_IFMT(mode) != want:
        what = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
        raise DinctlError(
            f"{out} exists and is {what}, not a {'regular file' if kind == 'file' else kind}",
            hint=f"choose an --out that is a new path or an existing {kind}",
        )


def check_disjoint(
    out: Path,
    inputs: Iterable[tuple[str, Path]],
    flag: str = "--out",
    *,
    files_inside: bool = False,
    may_lie_inside: bool = False,
) -> None:
    """Refuse an output (folder or file) that is, contains or lies inside one of the `inputs`.

    `inputs` are (what, path) pairs; with `files_inside`, an input *file* inside `out` is
    allowed (it is only read, never replaced); with `may_lie_inside`, `out` may be a new path
    inside an input folder (a run's default bundle folder).
    """
    target = Path(out).resolve()
    for what, path in inputs:
        src = Path(path).resolve()
        if src == target:
            relation = "is"
        elif src in target.parents and not may_lie_inside:
            relation = "lies inside"
        elif target in src.parents and not (files_inside and src.is_file()):
            relation = "contains"
        else:
            continue
        raise DinctlError(
            f"{flag} {out} {relation} the {what} {path}: refusing to write over an input",
            hint=f"choose an {flag} apart from the inputs",
        )


def _sweep(out: Path) -> None:
    """Remove temporary siblings of `out` (files or folders) left by a process that is gone."""
    for sibling in out.parent.glob(f".{glob.escape(out.name)}.*-*"):
        kind, _, pid = sibling.name.rpartition("-")
        if not (kind.endswith((".tmp", ".old")) and pid.isdigit()):
            continue
        if int(pid) != os.getpid() and pid_alive(int(pid)):
            continue
        if kind.endswith(".old") and not out.exists():
            with contextlib.suppress(OSError):  # kept when it cannot be moved: the only copy
                sibling.rename(out)  # an interrupted swap: put the previous folder back
            continue
        if sibling.is_dir() and not sibling.is_symlink():
            shutil.rmtree(sibling, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                sibling.unlink()


def pid_alive(pid: int) -> bool:
    """True when a process `pid` exists on this host (perhaps another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def atomic_dir(out: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces `out` in one rename.

    A failure (an exception, Ctrl-C, a full disk) leaves `out` as it was and no temporary
    folders behind; a write error is a one-line DinctlError naming the path.
    """
    out = Path(out)
    check_output_dir(out, overwrite)
    check_outside_artefacts(out)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _sweep(out)
        tmp.mkdir()
    except OSError as err:
        raise write_error(out, err) from None
    try:
        yield tmp
        _swap(tmp, out)
    except OSError as err:
        if err.errno not in _WRITE_REASONS:
            raise
        where = Path(err.filename) if err.filename else out
        if where.is_relative_to(tmp):  # name the file the user asked for, not the temporary one
            where = out / where.relative_to(tmp)
        raise write_error(where, err) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _swap(tmp: Path, out: Path) -> None:
    """Put `tmp` in place of `out`; on any failure (even Ctrl-C) the previous `out` stays."""
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    moved = False
    try:
        if out.exists():
            out.rename(old)
            moved = True
        tmp.rename(out)
    except BaseException:
        if moved and not out.exists():
            old.rename(out)
            moved = False
        raise
    finally:
        if moved:
            shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling path; on success it is renamed onto `path`.

    An existing `path` that is not a regular file (a folder, a FIFO, a device) is refused;
    temporary siblings of killed writers are swept first."""
    path = Path(path)
    check_output_kind(path, "file")
    check_outside_artefacts(path)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _sweep(path)
    except OSError as err:
        raise write_error(path, err) from None
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        if err.errno not in _WRITE_REASONS:
            raise
        raise write_error(path, err) from None
    finally:
        tmp.unlink(missing_ok=True)


def json_fields(obj: Any, rename: dict[str, str] | None = None) -> dict[str, Any]:
    """A dataclass's fields ready for json.dumps: paths as str, numpy arrays as lists."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, Path):
            value = str(value)
        elif hasattr(value, "tolist"):
            value = value.tolist()
        out[(rename or {}).get(f.name, f.name)] = value
    return out
