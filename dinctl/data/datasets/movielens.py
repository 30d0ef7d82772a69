"""MovieLens (GroupLens): ratings.csv + movies.csv of a release (20m, 25m, latest-small, 1m).

Sources: the release zip, checked against the md5 GroupLens publishes beside it. Fetching
extracts ratings.csv + movies.csv (ml-1m's `::`-separated .dat files are converted to the same
CSV). Reader: a folder or the release zip itself; label = rating ≥ 4, the category is the first
genre. Protocol: users split at random (docs/protocols.md).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any

import polars as pl

from dinctl.data.archives import MAX_EXTRACT_BYTES, check_zip, extract_member, open_zip
from dinctl.data.download import (
    Log,
    digest_file,
    fetch_source,
    is_complete,
    manifest_entry,
    place_file,
    write_manifest,
)
from dinctl.data.preprocess import build_dataset
from dinctl.data.readers import Interactions, keep_known_items, read_csv
from dinctl.data.reporting import Status, Warn, no_warnings, quiet
from dinctl.data.sources import RemoteFile, Source, Unpack, check_url, join_url
from dinctl.errors import DinctlError
from dinctl.fsutil import atomic_file, write_error

MOVIELENS_FILES = ("ratings.csv", "movies.csv")
RATINGS_SCHEMA = {
    "userId": pl.Int64,
    "movieId": pl.Int64,
    "rating": pl.Float64,
    "timestamp": pl.Int64,
}
MOVIES_SCHEMA = {"movieId": pl.Int64, "title": pl.Utf8, "genres": pl.Utf8}

MOVIELENS_MIRRORS: tuple[str, ...] = (
    "https://files.grouplens.org/datasets/movielens/",
    "http://files.grouplens.org/datasets/movielens/",
)

# variant -> md5 of the release zip as published by GroupLens in `<zip>.md5` beside it.
# ml-latest-small is rebuilt from time to time, so it has no fixed checksum: it is verified by
# the size and sha256 recorded in MANIFEST.json at first download.
MOVIELENS_MD5: dict[str, str | None] = {
    "20m": "cd245b17a1ae2cc31bb14903e1204af3",
    "25m": "6b51fb2759a8657d3bfcbfc42b592ada",
    "1m": "c4d9eecfca2ab87c1945afe126590906",
    "latest-small": None,
}
MOVIELENS_VARIANTS: tuple[str, ...] = tuple(MOVIELENS_MD5)


def movielens_source(variant: str = "20m", mirrors: tuple[str, ...] = ()) -> Source:
    """The GroupLens release zip of one MovieLens variant."""
    if variant not in MOVIELENS_MD5:
        raise DinctlError(
            f"unknown MovieLens variant {variant!r}: expected one of "
            f"{', '.join(MOVIELENS_VARIANTS)}",
            hint="e.g. --variant 20m",
        )
    for mirror in mirrors:
        check_url(mirror, "--mirror")
    name = f"ml-{variant}.zip"
    bases = mirrors or MOVIELENS_MIRRORS
    remote = RemoteFile(name, tuple(join_url(b, name) for b in bases), md5=MOVIELENS_MD5[variant])
    return Source("movielens", variant, (remote,), is_zip=True, unpack=UNPACK)


def _movielens_files(raw: Path, scratch: Path, max_bytes: int) -> tuple[Path, dict[str, Path]]:
    """ratings.csv and movies.csv of a folder, or of a release zip (streamed into `scratch`)."""
    hint = "run `dinctl download movielens` or pass --raw DIR (or the ml-20m.zip itself)"
    if not raw.exists():
        raise DinctlError(f"raw input {raw} does not exist", hint=hint)
    if raw.is_dir():
        for folder in [raw, *sorted(p for p in raw.iterdir() if p.is_dir())]:
            if (folder / "ratings.csv").is_file():
                if not (folder / "movies.csv").is_file():
                    raise DinctlError(f"{folder / 'movies.csv'} does not exist", hint=hint)
                paths = {n: folder / n for n in ("ratings.csv", "movies.csv")}
                return folder / "ratings.csv", paths
        zips = sorted(raw.glob("*.zip"))
        if not zips:
            raise DinctlError(
                f"{raw / 'ratings.csv'} does not exist (nor a .zip in {raw})", hint=hint
            )
        raw = zips[0]
    files: dict[str, Path] = {}
    with open_zip(raw, str(raw), hint) as zf:
        names = zf.namelist()
        for want in ("ratings.csv", "movies.csv"):
            member = next((n for n in names if n == want or n.endswith("/" + want)), None)
            if member is None:
                raise DinctlError(f"{raw} holds no {want}", hint="is this a MovieLens release zip?")
            files[want] = scratch / want
            extract_member(zf, member, scratch / want, str(raw), max_bytes)
            max_bytes -= (scratch / want).stat().st_size
    return raw, files


def read_movielens(raw: Path, max_extract_bytes: int = MAX_EXTRACT_BYTES) -> Interactions:
    """MovieLens ratings.csv + movies.csv → user, item, cate (first genre), ts, label.

    A release zip's members are streamed to a temporary folder (within `max_extract_bytes`)
    and read from there: a member is never held in memory whole.
    """
    with tempfile.TemporaryDirectory(prefix="dinctl-ml-") as scratch:
        source, files = _movielens_files(Path(raw), Path(scratch), max_extract_bytes)
        where = f"{source}" if source.suffix == ".zip" else str(source.parent)
        ratings = read_csv(f"{where}/ratings.csv", files.pop("ratings.csv"), RATINGS_SCHEMA)
        movies = read_csv(f"{where}/movies.csv", files.pop("movies.csv"), MOVIES_SCHEMA)
    return _movielens_interactions(source, where, ratings, movies)


def _movielens_interactions(
    source: Path, where: str, ratings: pl.DataFrame, movies: pl.DataFrame
) -> Interactions:
    movies = movies.select(
        pl.col("movieId").alias("item"),
        pl.col("genres").fill_null("(no genres listed)").str.split("|").list.first().alias("cate"),
    ).unique("item", keep="first")
    frame = ratings.select(
        pl.col("userId").alias("user"),
        pl.col("movieId").alias("item"),
        pl.col("timestamp").alias("ts"),
        (pl.col("rating") >= 4).cast(pl.Int8).alias("label"),  # label = rating ≥ 4
    )
    frame, missing, n_items = keep_known_items(frame, movies)
    warnings: list[str] = []
    dropped: dict[str, int] = {}
    if missing:
        warnings.append(
            f"{n_items} rated movies are missing from movies.csv: "
            f"dropped them and their {missing} ratings"
        )
        dropped = {"items": n_items, "ratings": missing}
    inputs = (source,) if source.suffix == ".zip" else (source, source.parent / "movies.csv")
    if frame.height == 0:
        raise DinctlError(f"no rated movie of {where}/ratings.csv is in movies.csv")
    return Interactions(
        frame=frame,
        inputs=inputs,
        item_cate=movies,
        warnings=tuple(warnings),
        dropped=dropped,
    )


# ---------------------------------------------------------------- the release zip


def _pick_member(names: list[str], base: str) -> str | None:
    """The shallowest member named `base` (release zips have one top folder)."""
    found = [n for n in names if n.rsplit("/", 1)[-1] == base and n.count("/") <= 1]
    return min(found, key=lambda n: n.count("/")) if found else None


def _convert_ratings_dat(src: IO[bytes], dst: Path, label: str) -> None:
    """ml-1m `UserID::MovieID::Rating::Timestamp` → ratings.csv as in ml-20m."""
    with open(dst, "w", newline="", encoding="utf-8") as out:
        out.write("userId,movieId,rating,timestamp\n")
        for lineno, raw in enumerate(io.TextIOWrapper(src, encoding="latin-1"), start=1):
            line = raw.rstrip("\r\n")
            if not line:
                continue
            fields = line.split("::")
            if len(fields) != 4 or not all(f.strip().lstrip("-").isdigit() for f in fields):
                raise DinctlError(
                    f"{label}:{lineno}: expected UserID::MovieID::Rating::Timestamp, "
                    f"got {line[:60]!r}",
                    hint="pass --force to download the release again",
                )
            user, movie, rating, ts = fields
            out.write(f"{user},{movie},{float(rating):.1f},{ts}\n")


def _convert_movies_dat(src: IO[bytes], dst: Path, label: str) -> None:
    """ml-1m `MovieID::Title::Genres` (latin-1) → movies.csv (utf-8, quoted as in ml-20m)."""
    with open(dst, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["movieId", "title", "genres"])
        for lineno, raw in enumerate(io.TextIOWrapper(src, encoding="latin-1"), start=1):
            line = raw.rstrip("\r\n")
            if not line:
                continue
            fields = line.split("::")
            if len(fields) < 3 or not fields[0].isdigit():
                raise DinctlError(
                    f"{label}:{lineno}: expected MovieID::Title::Genres, got {line[:60]!r}",
                    hint="pass --force to download the release again",
                )
            writer.writerow([fields[0], "::".join(fields[1:-1]), fields[-1]])


def extract_movielens(
    zip_path: Path, out_dir: Path, max_bytes: int = MAX_EXTRACT_BYTES
) -> dict[str, tuple[str, str]]:
    """Extract ratings.csv + movies.csv (converting ml-1m's `::` .dat files) into `out_dir`.

    Goes through a temporary folder, streaming each member within `max_bytes`; returns
    {file name: (zip member, how)}.
    """
    check_zip(zip_path, max_bytes=max_bytes)
    tmp = out_dir / f".extract-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
    except OSError as err:
        raise write_error(out_dir, err) from None
    done: dict[str, tuple[str, str]] = {}
    label = zip_path.name
    hint = "pass --force to download it again"
    try:
        with open_zip(zip_path, label, hint) as zf:
            names = zf.namelist()
            for target in MOVIELENS_FILES:
                stem = target.removesuffix(".csv")
                csv_member = _pick_member(names, target)
                dat_member = _pick_member(names, f"{stem}.dat")
                if csv_member is not None:
                    extract_member(zf, csv_member, tmp / target, label, max_bytes)
                    done[target] = (csv_member, "extracted")
                elif dat_member is not None:
                    convert = _convert_ratings_dat if stem == "ratings" else _convert_movies_dat
                    raw = tmp / f"{stem}.dat"
                    extract_member(zf, dat_member, raw, label, max_bytes)
                    with open(raw, "rb") as src:
                        convert(src, tmp / target, f"{zip_path.name}:{dat_member}")
                    raw.unlink()
                    done[target] = (dat_member, "converted from '::'-separated .dat")
                else:
                    raise DinctlError(
                        f"{zip_path.name} has no {target} or {stem}.dat: "
                        "expected a MovieLens release zip",
                        hint="pass --url with the release zip of the variant you want",
                    )
        for target in MOVIELENS_FILES:
            os.replace(tmp / target, out_dir / target)
    except OSError as err:
        raise write_error(Path(err.filename or out_dir), err) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return done


def _extract_if_needed(
    zip_path: Path,
    out_dir: Path,
    manifest: dict[str, Any],
    variant: str,
    again: bool,
    log: Log,
    max_bytes: int = MAX_EXTRACT_BYTES,
) -> None:
    files = manifest["files"]
    current = all(
        is_complete(out_dir / name, files.get(name))
        and files[name].get("from", "").startswith(f"{zip_path.name}:")
        for name in MOVIELENS_FILES
    )
    if current and not again:
        log(f"{', '.join(MOVIELENS_FILES)}: already extracted from {zip_path.name}, skipped")
        return
    url = files[zip_path.name]["url"]
    for name, (member, how) in extract_movielens(zip_path, out_dir, max_bytes).items():
        digest = digest_file(out_dir / name)
        files[name] = manifest_entry(
            url, digest, how, variant, out_dir / name, member=f"{zip_path.name}:{member}"
        )
        log(f"{name}: {how} from {zip_path.name}:{member}")
    write_manifest(out_dir, manifest)


def _register_extracted(
    root: Path, source: Source, out_dir: Path, manifest: dict[str, Any], log: Log
) -> None:
    """An already extracted MovieLens folder: `root/ml-<v>/` or `root` itself."""
    folder = root / f"ml-{source.variant}"
    folder = folder if folder.is_dir() else root
    if not all((folder / n).is_file() for n in MOVIELENS_FILES):
        if all((folder / n.replace(".csv", ".dat")).is_file() for n in MOVIELENS_FILES):
            for name, convert in zip(
                MOVIELENS_FILES, (_convert_ratings_dat, _convert_movies_dat), strict=True
            ):
                src = folder / name.replace(".csv", ".dat")
                with open(src, "rb") as f, atomic_file(out_dir / name) as tmp:
                    convert(f, tmp, str(src))
                digest = digest_file(out_dir / name)
                how = "converted from '::'-separated .dat"
                manifest["files"][name] = manifest_entry(
                    src.resolve().as_uri(), digest, how, source.variant, out_dir / name
                )
                log(f"{name}: {how} {src}")
            write_manifest(out_dir, manifest)
            return
        raise DinctlError(
            f"--from {root} has no ml-{source.variant}.zip, ratings.csv + movies.csv "
            "or ratings.dat + movies.dat",
            hint="give the release zip or the folder it was extracted to",
        )
    for name in MOVIELENS_FILES:
        src = folder / name
        digest = digest_file(src)
        how = place_file(src, out_dir / name)
        manifest["files"][name] = manifest_entry(
            src.resolve().as_uri(), digest, how, source.variant, out_dir / name
        )
        log(f"{name}: registered from {src} ({how})")
    write_manifest(out_dir, manifest)


UNPACK = Unpack(extract=_extract_if_needed, from_folder=_register_extracted)
fetch = fetch_source  # the zip's files are extracted through `UNPACK`


def preprocess_movielens(
    raw: Path,
    out: Path,
    *,
    seed: int = 1234,
    valid: bool = True,
    overwrite: bool = False,
    status: Status = quiet,
    warn: Warn = no_warnings,
    max_extract_bytes: int = MAX_EXTRACT_BYTES,
) -> dict[str, Any]:
    """MovieLens ratings.csv + movies.csv (folder or release zip) → data folder."""
    return build_dataset(
        lambda _: read_movielens(raw, max_extract_bytes),
        out,
        inputs=[("raw input", raw)],
        dataset="movielens",
        protocol="users",
        seed=seed,
        valid=valid,
        overwrite=overwrite,
        options={},
        status=status,
        warn=warn,
    )
