"""What a release is made of: its files, the URLs to try and their published checksums.

Each dataset module (dinctl/data/datasets/) builds its `Source`; dinctl/data/download.py
fetches one.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dinctl.errors import DinctlError

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,199}")


@dataclass(frozen=True)
class RemoteFile:
    """One file of a release: its name on disk and the URLs to try, in order."""

    name: str
    urls: tuple[str, ...]
    md5: str | None = None
    sha256: str | None = None
    size: int | None = None


Manifest = dict[str, Any]
Log = Callable[[str], None]


@dataclass(frozen=True)
class Unpack:
    """How a dataset turns its release archive into the files its reader wants."""

    # (archive, out_dir, manifest, variant, again, log, max_bytes): extract (and convert) the
    # archive's files into out_dir, entering them in the manifest; `again` even if current
    extract: Callable[[Path, Path, Manifest, str, bool, Log, int], None]
    # (root, source, out_dir, manifest, log): `--from` a folder the archive was unpacked to
    from_folder: Callable[[Path, Source, Path, Manifest, Log], None]


@dataclass(frozen=True)
class Source:
    """A dataset release: the files to fetch into `data/raw/<dataset>/`."""

    dataset: str
    variant: str
    files: tuple[RemoteFile, ...]
    is_zip: bool = False
    unpack: Unpack | None = None  # what the dataset does with its archive once it is here


def check_name(name: str, what: str) -> str:
    """A name that becomes part of a path: letters, digits, `_.+-`, no `..`, no separators."""
    if not _SAFE_NAME.fullmatch(name) or ".." in name:
        raise DinctlError(
            f"{what} {name!r} is not a safe file name: expected letters, digits and _ . + - only "
            "(no path separators, no '..')",
            hint="e.g. --category Electronics",
        )
    return name


def check_url(url: str, flag: str) -> str:
    """An http(s) URL with a host (and a valid port), or a one-line error naming `flag`."""
    problem = None
    if not url or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        problem = "it is empty or holds spaces or control characters"
    else:
        try:
            parts = urllib.parse.urlsplit(url)
            _ = parts.port  # raises on a port that is not a number in 0..65535
        except ValueError as err:
            problem = str(err)
        else:
            if parts.scheme.lower() not in ("http", "https"):
                problem = f"expected http:// or https://, got {parts.scheme or 'no'} scheme"
            elif not parts.hostname:
                problem = "it has no host"
    if problem is not None:
        raise DinctlError(
            f"{flag} {url!r} is not a valid URL: {problem}",
            hint=f"e.g. {flag} https://host/path/",
        )
    return url


def with_urls(source: Source, urls: tuple[str, ...]) -> Source:
    """Pin files to explicit URLs: matched by file name, or the only file of a one-file source."""
    if not urls:
        return source
    by_name = {f.name: f for f in source.files}
    chosen: dict[str, str] = {}
    for url in urls:
        check_url(url, "--url")
        base = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        if base in by_name:
            chosen[base] = url
        elif len(source.files) == 1:
            chosen[source.files[0].name] = url
        else:
            raise DinctlError(
                f"--url {url} does not end in one of {', '.join(by_name)}",
                hint="give one --url per file, each ending in the file's name, or use --mirror",
            )
    files = tuple(
        RemoteFile(f.name, (chosen[f.name],), f.md5, f.sha256, f.size) if f.name in chosen else f
        for f in source.files
    )
    return replace(source, files=files)


def join_url(base: str, name: str) -> str:
    return base if base.endswith(name) else base.rstrip("/") + "/" + name
