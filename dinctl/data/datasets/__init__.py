"""The registry of datasets: one entry each, read by `dinctl download` and `dinctl preprocess`.

A dataset is one module of this package (its sources, fetching, reader and protocol); its entry
here names the module's functions (`module:function`, imported only when the command runs) and
declares its settings, from which the CLI builds the dataset's commands. The protocol:

  preprocess(raw, out, *, seed, valid, overwrite, status, warn, **options) -> summary
  source(mirrors, **options) -> Source                  (only for a downloadable dataset)
  fetch(source, out, *, from_path, force, policy, bar, log, max_extract_bytes) -> manifest

`dinctl preprocess logs` (your own log, its columns named by flags) is the one hand-written
command: dinctl/data/datasets/logs.py.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dinctl.errors import DinctlError


@dataclass(frozen=True)
class Setting:
    """One dataset-specific option: `--<name>` on the command line, `name=` in the library."""

    name: str
    kind: type  # str or int
    default: Any
    help: str
    min: int | None = None
    optional: bool = False  # None allowed (the library picks)


@dataclass(frozen=True)
class Download:
    """How `dinctl download <name>` gets the raw files."""

    help: str
    source: str  # module:function (mirrors, **settings) -> Source
    fetch: str  # module:function, see the protocol above
    settings: tuple[Setting, ...] = ()
    urls: bool = True  # --url takes exact file URLs
    max_extract: bool = False  # --max-extract-bytes bounds what an archive may expand to


@dataclass(frozen=True)
class Dataset:
    """One dataset: its commands' help and settings, and where its functions live."""

    name: str
    help: str  # of `dinctl preprocess <name>`
    preprocess: str  # module:function, see the protocol above
    settings: tuple[Setting, ...] = ()
    raw_help: str | None = None  # --raw: None for a plain folder
    max_extract: bool = False
    download: Download | None = None


def resolve(ref: str) -> Callable[..., Any]:
    """The function `module:function` names (modules are imported on first use)."""
    module, _, name = ref.partition(":")
    function: Callable[..., Any] = getattr(importlib.import_module(module), name)
    return function


def get(name: str) -> Dataset:
    """The registered dataset `name`, or a one-line error listing them."""
    for dataset in DATASETS:
        if dataset.name == name:
            return dataset
    raise DinctlError(
        f"unknown dataset {name!r}: expected one of {', '.join(d.name for d in DATASETS)}",
        hint="see docs/extending.md to add one",
    )


_HERE = "dinctl.data.datasets"
_MAX_LEN = "Keep at most this many behaviours per history."
_TIANCHI = f"{_HERE}.tianchi"

DATASETS: tuple[Dataset, ...] = (
    Dataset(
        name="amazon",
        help="Amazon 2014 5-core reviews + meta: sliding windows, one negative per positive.",
        preprocess=f"{_HERE}.amazon:preprocess_amazon",
        settings=(
            Setting(
                "category",
                str,
                "Electronics",
                "Category of the 2014 release: reads reviews_<C>_5.json, meta_<C>.json.",
            ),
        ),  # fmt: skip
        download=Download(
            help="Amazon 2014 release: reviews_<Category>_5.json.gz and meta_<Category>.json.gz.",
            source=f"{_HERE}.amazon:amazon_source",
            fetch=f"{_HERE}.amazon:fetch",
            settings=(
                Setting("category", str, "Electronics", "A 2014 5-core category, e.g. Books."),
            ),
        ),
    ),
    Dataset(
        name="movielens",
        help="MovieLens (20M, 25M, latest-small): label = rating ≥ 4, users split at random.",
        preprocess=f"{_HERE}.movielens:preprocess_movielens",
        raw_help="Folder or release .zip with ratings.csv, movies.csv.",
        max_extract=True,
        download=Download(
            help="GroupLens MovieLens zip → ratings.csv + movies.csv (ml-1m's .dat files are "
            "converted).",
            source=f"{_HERE}.movielens:movielens_source",
            fetch=f"{_HERE}.movielens:fetch",
            settings=(Setting("variant", str, "20m", "20m, 25m, latest-small or 1m."),),
            max_extract=True,
        ),
    ),
    Dataset(
        name="movielens-100k",
        help="MovieLens 100K (1998): label = rating ≥ 4, users split at random.",
        preprocess=f"{_HERE}.movielens_100k:preprocess_movielens_100k",
        raw_help="Folder with the ratings.csv, movies.csv that `dinctl download` converted.",
        download=Download(
            help="GroupLens ml-100k.zip → ratings.csv + movies.csv (u.data, u.item converted).",
            source=f"{_HERE}.movielens_100k:movielens_100k_source",
            fetch=f"{_HERE}.movielens_100k:fetch",
            max_extract=True,
        ),
    ),
    Dataset(
        name="taobao",
        help="Taobao UserBehavior: last behaviour vs a drawn negative, test = latest 30% of users.",
        preprocess=f"{_HERE}.taobao:preprocess_taobao",
        settings=(Setting("max_len", int, 200, _MAX_LEN, min=1),),
        raw_help="UserBehavior.csv or its folder.",
        download=Download(
            help="Taobao UserBehavior (Tianchi 649, behind a login): --from the file, its zip or "
            "folder.",
            source=f"{_TIANCHI}:taobao_source",
            fetch=f"{_TIANCHI}:fetch",
            urls=False,
            max_extract=True,
        ),
    ),
    Dataset(
        name="taobao-ad",
        help="Alimama display ads: days 1-7 train (day 7 validation), day 8 test; history = the "
        "user's behaviours strictly before each impression.",
        preprocess=f"{_HERE}.taobao:preprocess_taobao_ad",
        settings=(
            Setting("max_len", int, 50, _MAX_LEN, min=1),
            Setting(
                "shards",
                int,
                None,
                "User shards of the behaviour join (default: by file size, ~20M behaviours each).",
                min=1,
                optional=True,
            ),
        ),  # fmt: skip
        raw_help="Folder with raw_sample, ad_feature, user_profile, behavior_log .csv.",
        download=Download(
            help="Alimama display ads (Tianchi 56, behind a login): --from the 4 CSVs, .tar.gz or "
            "a folder.",
            source=f"{_TIANCHI}:taobao_ad_source",
            fetch=f"{_TIANCHI}:fetch",
            urls=False,
            max_extract=True,
        ),
    ),
)
