"""MovieLens 100K (GroupLens, 1998): u.data + u.item of ml-100k.zip.

Sources: the release zip from GroupLens, verified by the size and sha256 recorded in
MANIFEST.json at first download (no md5 is kept here). Fetching converts u.data
(tab-separated user, item, rating, time) and u.item ('|'-separated, latin-1, 19 genre flags)
into the ratings.csv + movies.csv of the later releases, so the reader and the protocol are
MovieLens' (label = rating ≥ 4, the first genre, users split at random).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from dinctl.data.archives import check_zip, open_zip
from dinctl.data.datasets.movielens import MOVIELENS_MIRRORS, read_movielens
from dinctl.data.download import (
    Log,
    digest_file,
    fetch_source,
    is_complete,
    manifest_entry,
    write_manifest,
)
from dinctl.data.preprocess import build_dataset
from dinctl.data.reporting import Status, Warn, no_warnings, quiet
from dinctl.data.sources import RemoteFile, Source, Unpack, check_url, join_url
from dinctl.errors import DinctlError
from dinctl.fsutil import atomic_file, write_error

ZIP = "ml-100k.zip"
# u.genre, in the order of u.item's flags
GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
HOW = "converted from the 100K release's"
AGAIN = "pass --force to download the release again"


def movielens_100k_source(mirrors: tuple[str, ...] = ()) -> Source:
    """The GroupLens release zip of MovieLens 100K."""
    for mirror in mirrors:
        check_url(mirror, "--mirror")
    remote = RemoteFile(ZIP, tuple(join_url(b, ZIP) for b in mirrors or MOVIELENS_MIRRORS))
    return Source("movielens-100k", "100k", (remote,), is_zip=True, unpack=UNPACK)


def _convert_ratings(src: IO[bytes], dst: Path, label: str) -> None:
    """u.data `user<TAB>item<TAB>rating<TAB>time` → ratings.csv as in ml-20m."""
    with open(dst, "w", newline="", encoding="utf-8") as out:
        out.write("userId,movieId,rating,timestamp\n")
        for lineno, raw in enumerate(io.TextIOWrapper(src, encoding="latin-1"), start=1):
            line = raw.rstrip("\r\n")
            if not line:
                continue
            fields = [f.strip() for f in line.split("\t")]
            if len(fields) != 4 or not all(f.isdigit() for f in fields):
                raise DinctlError(
                    f"{label}:{lineno}: expected user, item, rating and time separated by tabs, "
                    f"got {line[:60]!r}",
                    hint=AGAIN,
                )
            user, item, rating, ts = fields
            out.write(f"{user},{item},{float(rating):.1f},{ts}\n")


def _convert_movies(src: IO[bytes], dst: Path, label: str) -> None:
    """u.item `id|title|release|video release|IMDb URL|19 genre flags` (latin-1) → movies.csv
    (utf-8, genres joined by '|' as in ml-20m)."""
    with open(dst, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["movieId", "title", "genres"])
        for lineno, raw in enumerate(io.TextIOWrapper(src, encoding="latin-1"), start=1):
            line = raw.rstrip("\r\n")
            if not line:
                continue
            fields = line.split("|")
            flags = fields[5:]
            if len(flags) != len(GENRES) or not fields[0].isdigit() or set(flags) - {"0", "1"}:
                raise DinctlError(
                    f"{label}:{lineno}: expected id|title|release|video release|IMDb URL and "
                    f"{len(GENRES)} 0/1 genre flags, got {line[:60]!r}",
                    hint=AGAIN,
                )
            genres = "|".join(g for g, flag in zip(GENRES, flags, strict=True) if flag == "1")
            writer.writerow([fields[0], fields[1], genres or "(no genres listed)"])


# the file each reader wants ← the release's file and its converter
CONVERT: dict[str, tuple[str, Callable[[IO[bytes], Path, str], None]]] = {
    "ratings.csv": ("u.data", _convert_ratings),
    "movies.csv": ("u.item", _convert_movies),
}


def _convert_all(
    open_member: Callable[[str], Any], out_dir: Path, label: Callable[[str], str]
) -> None:
    """Write every CONVERT target into `out_dir` from `open_member(release file name)`; an
    error names the file as `label(release file name)`."""
    try:
        for name, (member, convert) in CONVERT.items():
            with open_member(member) as src, atomic_file(out_dir / name) as tmp:
                convert(src, tmp, label(member))
    except OSError as err:
        raise write_error(Path(err.filename or out_dir), err) from None


def _extract(
    zip_path: Path,
    out_dir: Path,
    manifest: dict[str, Any],
    variant: str,
    again: bool,
    log: Log,
    max_bytes: int,
) -> None:
    """ratings.csv + movies.csv from the release zip (checked whole first), unless current."""
    files = manifest["files"]
    current = all(
        is_complete(out_dir / name, files.get(name))
        and files[name].get("from", "").startswith(f"{zip_path.name}:")
        for name in CONVERT
    )
    if current and not again:
        log(f"{', '.join(CONVERT)}: already converted from {zip_path.name}, skipped")
        return
    check_zip(zip_path, max_bytes=max_bytes)  # names, sizes and every CRC, before any use
    with open_zip(zip_path, zip_path.name, AGAIN) as zf:
        where: dict[str, str] = {}  # release file name → its shallowest member
        for name in sorted(zf.namelist(), key=lambda n: n.count("/")):
            where.setdefault(name.rsplit("/", 1)[-1], name)
        for member, _ in CONVERT.values():
            if member not in where:
                raise DinctlError(
                    f"{zip_path.name} has no {member}: expected {ZIP}",
                    hint=f"pass --url with the {ZIP} release",
                )
        _convert_all(
            lambda member: zf.open(where[member]),
            out_dir,
            lambda member: f"{zip_path.name}:{where[member]}",
        )
        url = files[zip_path.name]["url"]
        for name, (member, _) in CONVERT.items():
            files[name] = manifest_entry(
                url,
                digest_file(out_dir / name),
                f"{HOW} {member}",
                variant,
                out_dir / name,
                member=f"{zip_path.name}:{where[member]}",
            )
            log(f"{name}: {HOW} {member} in {zip_path.name}")
    write_manifest(out_dir, manifest)


def _from_folder(
    root: Path, source: Source, out_dir: Path, manifest: dict[str, Any], log: Log
) -> None:
    """`--from` the folder the zip was unpacked to: `root/ml-100k/` or `root` itself."""
    folder = root / "ml-100k" if (root / "ml-100k").is_dir() else root
    if not all((folder / member).is_file() for member, _ in CONVERT.values()):
        raise DinctlError(
            f"--from {root} has no {ZIP} or u.data + u.item",
            hint="give the release zip or the folder it was extracted to",
        )
    _convert_all(
        lambda member: open(folder / member, "rb"), out_dir, lambda member: str(folder / member)
    )
    for name, (member, _) in CONVERT.items():
        src = folder / member
        manifest["files"][name] = manifest_entry(
            src.resolve().as_uri(),
            digest_file(out_dir / name),
            f"{HOW} {member}",
            source.variant,
            out_dir / name,
        )
        log(f"{name}: {HOW} {src}")
    write_manifest(out_dir, manifest)


UNPACK = Unpack(extract=_extract, from_folder=_from_folder)
fetch = fetch_source  # the zip's files are converted through `UNPACK`


def preprocess_movielens_100k(
    raw: Path,
    out: Path,
    *,
    seed: int = 1234,
    valid: bool = True,
    overwrite: bool = False,
    status: Status = quiet,
    warn: Warn = no_warnings,
) -> dict[str, Any]:
    """The ratings.csv + movies.csv that `dinctl download movielens-100k` wrote → data folder."""
    if Path(raw).is_dir() and not (Path(raw) / "ratings.csv").is_file():
        raise DinctlError(
            f"{Path(raw) / 'ratings.csv'} does not exist",
            hint="run `dinctl download movielens-100k` (--from the unpacked "
            "ml-100k folder or its zip) and pass its --out as --raw",
        )
    return build_dataset(
        lambda _: read_movielens(raw),
        out,
        inputs=[("raw input", raw)],
        dataset="movielens-100k",
        protocol="users",
        seed=seed,
        valid=valid,
        overwrite=overwrite,
        options={},
        status=status,
        warn=warn,
    )
