"""Where the paper's raw datasets live: one table of files, mirrors and published checksums."""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass

from dinctl.errors import DinctlError

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,199}")

# The 2014 Amazon release (McAuley et al.), per-category 5-core reviews + metadata: the paper's
# source (the authors' `utils/0_download_raw.sh` fetches these two Electronics files from SNAP).
# Tried in order. SNAP publishes no checksums for these files, so they are verified by the size
# and sha256 recorded in MANIFEST.json at first download.
AMAZON_MIRRORS: tuple[str, ...] = (
    "https://snap.stanford.edu/data/amazon/productGraph/categoryFiles/",
    "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/",
    "https://jmcauley.ucsd.edu/data/amazon/productGraph/categoryFiles/",
    "http://jmcauley.ucsd.edu/data/amazon/productGraph/categoryFiles/",
)

# The 24 categories with a 5-core file in the 2014 release.
AMAZON_CATEGORIES: tuple[str, ...] = (
    "Amazon_Instant_Video",
    "Apps_for_Android",
    "Automotive",
    "Baby",
    "Beauty",
    "Books",
    "CDs_and_Vinyl",
    "Cell_Phones_and_Accessories",
    "Clothing_Shoes_and_Jewelry",
    "Digital_Music",
    "Electronics",
    "Grocery_and_Gourmet_Food",
    "Health_and_Personal_Care",
    "Home_and_Kitchen",
    "Kindle_Store",
    "Movies_and_TV",
    "Musical_Instruments",
    "Office_Products",
    "Patio_Lawn_and_Garden",
    "Pet_Supplies",
    "Sports_and_Outdoors",
    "Tools_and_Home_Improvement",
    "Toys_and_Games",
    "Video_Games",
)

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


@dataclass(frozen=True)
class RemoteFile:
    """One file of a release: its name on disk and the URLs to try, in order."""

    name: str
    urls: tuple[str, ...]
    md5: str | None = None
    sha256: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class Source:
    """A dataset release: the files to fetch into `data/raw/<dataset>/`."""

    dataset: str
    variant: str
    files: tuple[RemoteFile, ...]
    is_zip: bool = False


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


def amazon_source(category: str = "Electronics", mirrors: tuple[str, ...] = ()) -> Source:
    """The 5-core review file and the metadata file of one 2014 Amazon category."""
    check_name(category, "Amazon category")
    for mirror in mirrors:
        check_url(mirror, "--mirror")
    if category not in AMAZON_CATEGORIES and not mirrors:
        raise DinctlError(
            f"unknown Amazon category {category!r}: expected one of the 2014 release's "
            f"{len(AMAZON_CATEGORIES)} 5-core categories",
            hint="e.g. --category Electronics (see `dinctl download amazon --help`)",
        )
    bases = mirrors or AMAZON_MIRRORS
    names = (f"reviews_{category}_5.json.gz", f"meta_{category}.json.gz")
    files = tuple(RemoteFile(name, tuple(_join(b, name) for b in bases)) for name in names)
    return Source("amazon", category, files)


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
    remote = RemoteFile(name, tuple(_join(b, name) for b in bases), md5=MOVIELENS_MD5[variant])
    return Source("movielens", variant, (remote,), is_zip=True)


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
    return Source(source.dataset, source.variant, files, source.is_zip)


def _join(base: str, name: str) -> str:
    return base if base.endswith(name) else base.rstrip("/") + "/" + name


# The public Alibaba/Taobao datasets sit behind a Tianchi login: no built-in mirror. The release
# ships UserBehavior.csv in UserBehavior.csv.zip and each display-ad file as <name>.tar.gz;
# no checksums are published, so a file is verified by name, CSV header (first row for the
# headerless UserBehavior.csv) and the size and sha256 recorded in MANIFEST.json.
TIANCHI_FILES: dict[str, tuple[str, ...]] = {
    "taobao": ("UserBehavior.csv",),  # Tianchi 649: 100,150,807 rows, ~3.7 GB
    # Tianchi 56: 26,557,961 impressions; 846,811 ads; 1,061,768 users; 723,268,134 behaviours
    "taobao-ad": ("raw_sample.csv", "ad_feature.csv", "user_profile.csv", "behavior_log.csv"),
}
TIANCHI_PAGES = {
    "taobao": "https://tianchi.aliyun.com/dataset/649",
    "taobao-ad": "https://tianchi.aliyun.com/dataset/56",
}


def tianchi_source(dataset: str, mirrors: tuple[str, ...] = ()) -> Source:
    """The CSV files of a Tianchi dataset (`taobao` or `taobao-ad`), fetched from `mirrors`."""
    for mirror in mirrors:
        check_url(mirror, "--mirror")
    names = TIANCHI_FILES[dataset]
    files = tuple(RemoteFile(name, tuple(_join(b, name) for b in mirrors)) for name in names)
    return Source(dataset, "tianchi", files)
