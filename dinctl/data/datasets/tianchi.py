"""The Tianchi files of the two public Taobao datasets: their CSV formats, readers, sources and
registration (they sit behind a login: `--from` the files the user has, or a `--mirror`).

One reader per file format.
Each reader returns a Polars LazyFrame with typed, validated columns and never collects the
file itself, so the 700M-row behaviour log can be streamed. A malformed row is one line
naming file:line, the column, the value and what was expected.

UserBehavior.csv (Tianchi 649, no header):  user,item,category,behavior_type,timestamp
raw_sample.csv    (Tianchi 56):  user,time_stamp,adgroup_id,pid,nonclk,clk
ad_feature.csv:   adgroup_id,cate_id,campaign_id,customer,brand,price   (brand may be NULL)
user_profile.csv: userid,cms_segid,cms_group_id,final_gender_code,age_level,pvalue_level,
                  shopping_level,occupation,new_user_class_level  (levels may be empty; the
                  real header ends in a space, which is ignored)
behavior_log.csv: user,time_stamp,btag,cate,brand
"""

from __future__ import annotations

import csv
import re
import shutil
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dinctl.data.archives import LIMIT_HINT, MAX_EXTRACT_BYTES, extract_member, open_zip
from dinctl.data.download import (
    Log,
    RetryPolicy,
    digest_file,
    download,
    manifest_entry,
    not_there,
    place_file,
    registering,
    write_manifest,
)
from dinctl.data.sources import RemoteFile, Source, check_url, join_url
from dinctl.errors import DinctlError
from dinctl.fsutil import atomic_file
from dinctl.reporting import BarFactory, no_bar, no_line

BTAGS = ("pv", "cart", "fav", "buy")  # id 1..4 in this order


@dataclass(frozen=True)
class CsvFormat:
    """One raw file: its name, header (None: headerless) and column kinds."""

    name: str
    header: tuple[str, ...] | None
    columns: tuple[str, ...]  # our names, in file order
    kinds: tuple[str, ...]  # "int", "int?" (empty or NULL allowed), "str", "float", "btag"


USER_BEHAVIOR = CsvFormat(
    "UserBehavior.csv", None, ("user", "item", "cate", "btag", "ts"),
    ("int", "int", "int", "btag", "int"),
)  # fmt: skip
RAW_SAMPLE = CsvFormat(
    "raw_sample.csv", ("user", "time_stamp", "adgroup_id", "pid", "nonclk", "clk"),
    ("user", "ts", "adgroup", "pid", "nonclk", "clk"), ("int", "int", "int", "str", "int", "int"),
)  # fmt: skip
AD_FEATURE = CsvFormat(
    "ad_feature.csv", ("adgroup_id", "cate_id", "campaign_id", "customer", "brand", "price"),
    ("adgroup", "cate", "campaign", "customer", "brand", "price"),
    ("int", "int", "int", "int", "int?", "float"),
)  # fmt: skip
USER_PROFILE = CsvFormat(
    "user_profile.csv",
    ("userid", "cms_segid", "cms_group_id", "final_gender_code", "age_level", "pvalue_level",
     "shopping_level", "occupation", "new_user_class_level"),
    ("user", "cms_segid", "cms_group_id", "gender", "age_level", "pvalue_level",
     "shopping_level", "occupation", "city_level"),
    ("int", "int", "int", "int", "int", "int?", "int", "int", "int?"),
)  # fmt: skip
BEHAVIOR_LOG = CsvFormat(
    "behavior_log.csv", ("user", "time_stamp", "btag", "cate", "brand"),
    ("user", "ts", "btag", "cate", "brand"), ("int", "int", "btag", "int", "int?"),
)  # fmt: skip
AD_FILES = (RAW_SAMPLE, AD_FEATURE, USER_PROFILE, BEHAVIOR_LOG)
FORMATS = {f.name: f for f in (USER_BEHAVIOR, *AD_FILES)}


def _expected(kind: str) -> str:
    return {
        "int": "an integer",
        "int?": "an integer, NULL or nothing",
        "float": "a number",
        "str": "a value",
        "btag": f"one of {', '.join(BTAGS)}",
    }[kind]


def _bad_value(value: str, kind: str) -> bool:
    if kind == "btag":
        return value not in BTAGS
    if kind == "int?" and value in ("", "NULL"):
        return False
    if kind in ("int", "int?"):  # as Polars reads it: no `_`, within 64 bits
        return not (re.fullmatch(r"\s*[+-]?\d+\s*", value) and abs(int(value)) < 2**63)
    try:
        float(value.replace("_", "!"))  # Python's float() takes 1_000; Polars does not
    except ValueError:
        return kind != "str"
    return False


def check_header(path: Path, fmt: CsvFormat) -> None:
    """The first line must be the file's header (headerless files: a plausible first row)."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            first = f.readline()
    except (OSError, UnicodeDecodeError) as err:
        raise DinctlError(f"cannot read {path}: {err}", hint="download it again") from None
    if not first:
        raise DinctlError(f"{path} is empty", hint="download it again")
    cells = [c.strip() for c in next(csv.reader([first]))]
    if fmt.header is not None and tuple(cells) != fmt.header:
        raise DinctlError(
            f"{path}:1: header is {','.join(cells)!r}, expected {','.join(fmt.header)!r}",
            hint=f"is this the dataset's {fmt.name}?",
        )
    if fmt.header is None:
        _check_row(path, fmt, 1, cells)


def _check_row(path: Path, fmt: CsvFormat, line: int, cells: list[str]) -> None:
    if len(cells) != len(fmt.columns):
        raise DinctlError(
            f"{path}:{line}: {len(cells)} fields, expected {len(fmt.columns)} "
            f"({','.join(fmt.header or fmt.columns)})",
            hint=f"is this the dataset's {fmt.name}? a truncated download?",
        )
    for name, kind, value in zip(fmt.columns, fmt.kinds, cells, strict=True):
        if _bad_value(value, kind):
            raise DinctlError(
                f"{path}:{line}: column {name!r} holds {value!r}, expected {_expected(kind)}",
                hint=f"fix or remove that line of {path.name}",
            )


def find_bad_line(path: Path, fmt: CsvFormat) -> None:
    """Scan the file row by row and raise for the first malformed row (the slow error path)."""
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        for i, cells in enumerate(csv.reader(f), start=1):
            if i == 1 and fmt.header is not None:
                continue
            _check_row(path, fmt, i, cells)


def scan(path: Path, fmt: CsvFormat) -> Any:
    """The file as a typed LazyFrame (our column names) plus `line`, its 1-based line number."""
    import polars as pl

    if not path.is_file():
        raise DinctlError(
            f"{path} does not exist ({fmt.name})",
            hint="get the dataset with `dinctl download` (see docs/protocols.md)",
        )
    check_header(path, fmt)
    dtypes = {"int": pl.Int64, "int?": pl.Utf8, "float": pl.Float64, "str": pl.Utf8,
              "btag": pl.Utf8}  # fmt: skip
    lf = pl.scan_csv(
        path,
        has_header=fmt.header is not None,
        new_columns=list(fmt.columns),
        schema_overrides={c: dtypes[k] for c, k in zip(fmt.columns, fmt.kinds, strict=True)},
        row_index_name="line",
        row_index_offset=1 if fmt.header is None else 2,
        truncate_ragged_lines=False,
    )
    exprs, bad = [], pl.lit(False)
    for name, kind in zip(fmt.columns, fmt.kinds, strict=True):
        if kind == "int?":
            raw = pl.col(name).str.strip_chars()
            empty = raw.is_in(["", "NULL"]) | raw.is_null()
            exprs.append(
                pl.when(empty).then(None).otherwise(raw).cast(pl.Int64, strict=False).alias(name)
            )
            bad = bad | (~empty & raw.cast(pl.Int64, strict=False).is_null())
        else:  # a short (ragged) row leaves its last columns null
            bad = bad | pl.col(name).is_null()
        if kind == "btag":
            bad = bad | ~pl.col(name).is_in(list(BTAGS))
            # a when-chain, not replace_strict: that one leaves the streaming engine (5x memory)
            code = pl.lit(0, dtype=pl.Int8)
            for i, b in enumerate(BTAGS, start=1):
                code = pl.when(pl.col(name) == b).then(pl.lit(i, dtype=pl.Int8)).otherwise(code)
            exprs.append(code.alias(name))
    return lf.with_columns(*exprs, bad.alias("_bad"))


def collect(lf: Any, path: Path, fmt: CsvFormat) -> Any:
    """Collect a scan (streaming); a malformed row becomes its line's one-line error."""
    try:
        df = lf.collect(engine="streaming")
    except Exception as err:  # noqa: BLE001 - polars raises its own ComputeError types
        find_bad_line(path, fmt)
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise DinctlError(f"cannot read {path}: {first}", hint="download it again") from None
    if df.height == 0:
        raise DinctlError(f"{path} has a header but no rows ({fmt.name})",
                          hint="download it again")  # fmt: skip
    if "_bad" in df.columns:
        if df["_bad"].any():
            find_bad_line(path, fmt)
        df = df.drop("_bad")
    return df


# ---------------------------------------------------------------- sources and registration

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
    files = tuple(RemoteFile(name, tuple(join_url(b, name) for b in mirrors)) for name in names)
    return Source(dataset, "tianchi", files)


def _check_tianchi(path: Path, name: str) -> None:
    check_header(path, FORMATS[name])


def _extract_packed(src: Path, name: str, out_dir: Path, max_bytes: int) -> str | None:
    """`name` out of the zip or .tar.gz `src` into `out_dir` (streamed); returns the member."""
    dest = out_dir / name
    if zipfile.is_zipfile(src):
        with open_zip(src, str(src), "get a good copy of the archive") as zf:
            members = [i.filename for i in zf.infolist() if i.filename.rsplit("/", 1)[-1] == name]
            if not members:
                return None
            with atomic_file(dest) as tmp:
                extract_member(zf, members[0], tmp, str(src), max_bytes)
            return members[0]
    try:
        with tarfile.open(src, "r:*") as tf:
            for info in tf:
                if info.isfile() and info.name.rsplit("/", 1)[-1] == name:
                    if info.size > max_bytes:
                        raise DinctlError(f"{src}: member {info.name!r} holds {info.size} bytes",
                                          hint=LIMIT_HINT)  # fmt: skip
                    reader = tf.extractfile(info)
                    if reader is None:
                        continue
                    with atomic_file(dest) as tmp, open(tmp, "wb") as out:
                        shutil.copyfileobj(reader, out, 1 << 20)
                    return info.name
    except (tarfile.TarError, EOFError, OSError) as err:
        raise DinctlError(f"{src} is not a readable .tar.gz ({err})",
                          hint="get a good copy of the archive") from None  # fmt: skip
    return None


def _tianchi_local(root: Path, name: str) -> Path | None:
    """The user's copy of `name`: the file, or an archive of it (name.zip, name.tar.gz)."""
    if root.is_file():
        return root
    for candidate in (name, f"{name}.zip", f"{name}.tar.gz"):
        if (root / candidate).is_file():
            return root / candidate
    return None


def taobao_source(mirrors: tuple[str, ...] = ()) -> Source:
    """UserBehavior.csv (Tianchi 649), fetched from `mirrors`."""
    return tianchi_source("taobao", mirrors)


def taobao_ad_source(mirrors: tuple[str, ...] = ()) -> Source:
    """The four Alimama CSV files (Tianchi 56), fetched from `mirrors`."""
    return tianchi_source("taobao-ad", mirrors)


def register_tianchi(
    source: Source,
    out_dir: Path,
    from_path: Path,
    *,
    log: Log = no_line,
    max_extract_bytes: int = MAX_EXTRACT_BYTES,
) -> dict[str, Any]:
    """Files, archives or a folder of them the user downloaded from Tianchi, checked and placed."""
    with registering(source, out_dir, from_path) as (from_path, out_dir, manifest):
        for remote in source.files:
            local = _tianchi_local(from_path, remote.name)
            if local is None:
                packed = f"{remote.name} (nor {remote.name}.zip or .tar.gz)"
                raise not_there(from_path, source, packed)
            _register_tianchi_one(remote.name, local, out_dir, manifest, source, log,
                                  max_extract_bytes)  # fmt: skip
    return manifest


def _register_tianchi_one(name: str, local: Path, out_dir: Path, manifest: dict[str, Any],
                          source: Source, log: Log, max_bytes: int) -> None:  # fmt: skip
    member = None
    if local.name == name:
        _check_tianchi(local, name)
        how = place_file(local, out_dir / name)
    else:
        member = _extract_packed(local, name, out_dir, max_bytes)
        if member is None:
            raise DinctlError(f"{local} holds no {name}",
                              hint=f"give the archive of {name} from the Tianchi page")  # fmt: skip
        how = "extracted"
        try:
            _check_tianchi(out_dir / name, name)
        except DinctlError:
            (out_dir / name).unlink()
            raise
    digest = digest_file(out_dir / name)
    packed = f"{local.name}:{member}" if member else None
    manifest["files"][name] = manifest_entry(local.resolve().as_uri(), digest, how, source.variant,
                                     out_dir / name, member=packed)  # fmt: skip
    write_manifest(out_dir, manifest)
    log(f"{name}: registered from {local} ({how}), header checked, sha256 recorded")


def download_tianchi(source: Source, out_dir: Path, **options: Any) -> dict[str, Any]:
    """Fetch the files from the --mirror URLs, then check each one's CSV header."""
    if not source.files[0].urls:
        raise DinctlError(
            f"{source.dataset} sits behind a Tianchi login: there is no built-in mirror",
            hint=f"download it from {TIANCHI_PAGES[source.dataset]}, then `dinctl download "
            f"{source.dataset} --from FOLDER` (or pass --mirror BASE_URL)",
        )
    manifest = download(source, out_dir, **options)
    for remote in source.files:
        _check_tianchi(Path(out_dir) / remote.name, remote.name)
    return manifest


def fetch(
    source: Source,
    out_dir: Path,
    *,
    from_path: Path | None = None,
    force: bool = False,
    policy: RetryPolicy | None = None,
    bar: BarFactory = no_bar,
    log: Log = no_line,
    max_extract_bytes: int = MAX_EXTRACT_BYTES,
) -> dict[str, Any]:
    """Register the user's Tianchi files (`from_path`) or fetch them from the --mirror URLs."""
    if from_path is not None:
        return register_tianchi(
            source, out_dir, from_path, log=log, max_extract_bytes=max_extract_bytes
        )
    return download_tianchi(source, out_dir, force=force, policy=policy, bar=bar, log=log)
