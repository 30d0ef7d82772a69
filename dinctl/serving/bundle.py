"""The export bundle folder: one writer (atomic), one validating reader.

Layout of a bundle (written by `dinctl export`):
  bundle.json     format_version, format (onnx | torch), model_file, signature (inputs and
                  outputs: name, dtype, shape with symbolic R/T/C), model (the ModelConfig),
                  max_len, dataset (path, checksum, counts), run, parity, versions, created_at
  model.onnx      (format onnx)  the RequestScorer as an ONNX graph, dynamic R, T and C
  model.pt2       (format torch) the RequestScorer as a torch.export ExportedProgram
  items.parquet   item:int32 (1..N), raw_item:str, cate:int32 (1..C), cate_name:str
                  [+ hist_<f>, cand_<f>:int32 per extra behaviour field f: the item's default
                  value in a history event and as a candidate (dinctl/serving/fields.py)]
  users.parquet   raw_user:str, items:list<int32> (the user's last max_len behaviours, oldest
                  first, as of the end of the data) [+ hist_<f>:list<int32> per extra
                  behaviour field, the same behaviours' values; + <u>:int32 per user field]
  values.parquet  field:str, id:int32, raw:str (only with a feature schema): the raw value of
                  every id of the extra categorical fields
A run trained on a feature schema (dinctl/data/schema.py) writes format version 2: bundle.json
adds `schema` (the dataset's field names per group) and `numeric_stats` ({field: {mean, std}},
the training split's, used to standardise request values) and the bracketed columns above.
An item/category run writes version 1, exactly as before.
bundle.json also records `files` ({name: {bytes, sha256}} of every other file); opening a
bundle verifies each file against it, checks max_len and the signature, and reading a table
checks its values (no nulls, ids within the manifest's counts), so a bundle edited, truncated
or damaged after export is one line, never a different score. A bundle without `files`
(written before it existed) is refused: re-export it.
Nothing here is unpickled when a bundle is opened: JSON, Parquet, ONNX protobuf, and a
torch.export archive loaded with `torch.export.load`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dinctl.data.schema import FeatureSchema
from dinctl.errors import DinctlError
from dinctl.fsutil import atomic_dir, file_digests, read_json

FORMAT_VERSION = 1  # item/category runs
FIELDS_FORMAT_VERSION = 2  # runs trained on a feature schema
READABLE_VERSIONS = (FORMAT_VERSION, FIELDS_FORMAT_VERSION)
MANIFEST_FILE = "bundle.json"
ITEMS_FILE = "items.parquet"
USERS_FILE = "users.parquet"
VALUES_FILE = "values.parquet"
MODEL_FILES = {"onnx": "model.onnx", "torch": "model.pt2"}
TEXT_COLUMNS = ("raw_item", "cate_name", "raw_user", "field", "raw")
FORMATS = tuple(MODEL_FILES)
REEXPORT = "re-export the run with `dinctl export RUN --overwrite`"


def is_bundle(path: Path) -> bool:
    return (Path(path) / MANIFEST_FILE).is_file()


@dataclass(frozen=True)
class Bundle:
    """An opened bundle: its manifest and where its files are."""

    path: Path
    manifest: dict[str, Any]

    @property
    def format(self) -> str:
        return str(self.manifest["format"])

    @property
    def model_file(self) -> Path:
        return self.path / MODEL_FILES[self.format]

    def items_frame(self) -> Any:
        """items.parquet, checked: no nulls, item ids 1..n_items once each, categories
        within 0..n_cates, field ids not negative."""
        counts = self.manifest["dataset"]
        items = self._table(ITEMS_FILE)
        _check_ids(self.path / ITEMS_FILE, items, "item", 1, _count(counts, "n_items"))
        _check_ids(self.path / ITEMS_FILE, items, "cate", 0, _count(counts, "n_cates"))
        if items["item"].n_unique() != items.height:
            raise DinctlError(f"{self.path / ITEMS_FILE} lists an item id twice", hint=REEXPORT)
        return items

    def users_frame(self) -> Any:
        """users.parquet, checked: no nulls, history items within 1..n_items."""
        users = self._table(USERS_FILE)
        flat = users.select(users["items"].explode().alias("item")).drop_nulls()
        n_items = _count(self.manifest["dataset"], "n_items")
        _check_ids(self.path / USERS_FILE, flat, "item", 1, n_items)
        return users

    def _table(self, name: str) -> Any:
        """A table file whose values hold no nulls (inside lists too) or negative ids."""
        import polars as pl

        frame = pl.read_parquet(self.path / name)
        for column in frame.columns:
            s = frame[column]
            nested = isinstance(s.dtype, pl.List)
            inner = s.explode().drop_nulls() if nested else s  # an empty list explodes to null
            inside = nested and (s.list.len() != s.list.drop_nulls().list.len()).any()
            if s.null_count() or inside:
                raise DinctlError(f"{self.path / name}: column {column!r} holds a null value",
                                  hint=REEXPORT)  # fmt: skip
            low = inner.min() if inner.dtype.is_integer() and len(inner) else 0
            if low < 0:  # type: ignore[operator]
                raise DinctlError(f"{self.path / name}: column {column!r} holds the negative "
                                  f"id {low!r}", hint=REEXPORT)  # fmt: skip
        return frame

    @property
    def schema(self) -> FeatureSchema:
        """The dataset's feature schema (item/category only for a version-1 bundle)."""
        return FeatureSchema.from_dict(self.manifest.get("schema"), f"{self.path} schema")

    def values_frame(self) -> Any:
        return self._table(VALUES_FILE)


def _count(counts: Any, key: str) -> int:
    value = counts.get(key) if isinstance(counts, dict) else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DinctlError(f"bundle.json dataset.{key} is {value!r}, expected a count",
                          hint=REEXPORT)  # fmt: skip
    return value


def _check_ids(path: Path, frame: Any, column: str, lo: int, hi: int) -> None:
    """Every id of `column` within lo..hi, or one line naming the first one outside."""
    s = frame[column]
    bad = ((s < lo) | (s > hi)).arg_true()
    if len(bad):
        raise DinctlError(f"{path}: {column} id {s[int(bad[0])]} is outside {lo}..{hi}",
                          hint=REEXPORT)  # fmt: skip


@contextmanager
def write_bundle(out: Path, fmt: str, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder to fill (model file, then `write_tables`, `write_manifest`);
    it replaces `out` in one rename when the block succeeds and is removed when it fails."""
    if fmt not in FORMATS:
        raise DinctlError(f"unknown bundle format {fmt!r}; expected one of {', '.join(FORMATS)}")
    with atomic_dir(Path(out), overwrite=overwrite) as tmp:
        yield tmp


def write_tables(
    folder: Path,
    items: Any,
    users: Any,
    schema: FeatureSchema | None = None,
    values: Any = None,
) -> None:
    """items.parquet, users.parquet (and values.parquet with a feature schema) from polars
    frames holding the columns `table_columns` names, cast to the layout's types."""
    import polars as pl

    frames = {ITEMS_FILE: items, USERS_FILE: users, VALUES_FILE: values}
    for name, columns in table_columns(schema or FeatureSchema()).items():
        lists = name == USERS_FILE  # a user's items and behaviour fields are lists
        frames[name].select(
            pl.col(c).cast(
                pl.Utf8 if c in TEXT_COLUMNS
                else pl.List(pl.Int32) if lists and (c == "items" or c.startswith("hist_"))
                else pl.Int32
            )
            for c in columns
        ).write_parquet(folder / name)  # fmt: skip


def table_columns(schema: FeatureSchema) -> dict[str, tuple[str, ...]]:
    """The columns each table file of a bundle holds, as `write_tables` writes them."""
    beh = schema.extra_behaviour
    out = {
        ITEMS_FILE: ("item", "raw_item", "cate", "cate_name",
                     *(f"{p}_{n}" for p in ("hist", "cand") for n in beh)),
        USERS_FILE: ("raw_user", "items", *(f"hist_{n}" for n in beh), *schema.user),
    }  # fmt: skip
    if not schema.is_basic:
        out[VALUES_FILE] = ("field", "id", "raw")
    return out


def _check_tables(path: Path, schema: FeatureSchema) -> None:
    """Every table file is Parquet with the columns of the layout, or a one-line error."""
    import polars as pl

    for name, columns in table_columns(schema).items():
        file = path / name
        if not file.is_file():
            raise DinctlError(f"{file} does not exist", hint="re-export the run")
        try:
            have = set(pl.read_parquet_schema(file))
        except Exception:  # noqa: BLE001 - polars raises several types for a non-Parquet file
            raise DinctlError(f"{file} is not a Parquet file", hint="re-export the run") from None
        missing = [c for c in columns if c not in have]
        if missing:
            raise DinctlError(f"{file} lacks the column(s) {', '.join(missing)}",
                              hint="re-export the run with this dinctl version")  # fmt: skip


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """bundle.json, with the size and sha256 of every other file of `folder`; version 2 when
    the manifest names a feature schema beyond item/category."""
    basic = FeatureSchema.from_dict(manifest.get("schema")).is_basic
    version = FORMAT_VERSION if basic else FIELDS_FORMAT_VERSION
    files = {}
    for file in sorted(Path(folder).iterdir()):
        if file.name != MANIFEST_FILE:
            size, digests = file_digests(file, "sha256")
            files[file.name] = {"bytes": size, "sha256": digests["sha256"]}
    full = {"format_version": version, **manifest, "files": files}
    (Path(folder) / MANIFEST_FILE).write_text(json.dumps(full, indent=2) + "\n")


def _verify_files(path: Path, manifest: dict[str, Any], needed: list[str]) -> None:
    """Every needed file is listed in `files`, and every listed file has its recorded size and
    sha256 (streamed), or one line naming the first that does not."""
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise DinctlError(f"{path / MANIFEST_FILE} records no file checksums", hint=REEXPORT)
    for name in needed:
        if name not in files:
            raise DinctlError(f"{path / MANIFEST_FILE} records no checksum of {name}",
                              hint=REEXPORT)  # fmt: skip
    for name, entry in files.items():
        file = path / str(name)
        if "/" in str(name) or not isinstance(entry, dict):
            raise DinctlError(f"{path / MANIFEST_FILE} lists the file {name!r} wrongly",
                              hint=REEXPORT)  # fmt: skip
        if not file.is_file():
            raise DinctlError(f"{file} does not exist", hint=REEXPORT)
        size, digests = file_digests(file, "sha256")
        if size != entry.get("bytes") or digests["sha256"] != entry.get("sha256"):
            raise DinctlError(
                f"{file} was changed after export ({size} bytes, sha256 {digests['sha256'][:12]}; "
                f"bundle.json records {entry.get('bytes')} bytes, {str(entry.get('sha256'))[:12]})",
                hint=REEXPORT,
            )


def _check_manifest(manifest_path: Path, manifest: dict[str, Any]) -> None:
    """max_len a positive integer; a signature with named inputs and a `logits` output."""
    max_len = manifest["max_len"]
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
        raise DinctlError(f"{manifest_path} has max_len {max_len!r}, expected an integer >= 1",
                          hint=REEXPORT)  # fmt: skip
    stats = manifest.get("numeric_stats") or {}
    if not isinstance(stats, dict):
        raise DinctlError(f"{manifest_path} numeric_stats is not an object", hint=REEXPORT)
    for name, stat in stats.items():
        values = [stat.get(k) if isinstance(stat, dict) else None for k in ("mean", "std")]
        finite = all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
        if not finite or values[1] <= 0:  # type: ignore[operator]
            raise DinctlError(f"{manifest_path} numeric_stats.{name} is {stat!r}, expected a "
                              "finite mean and a std > 0", hint=REEXPORT)  # fmt: skip
    sig = manifest["signature"]
    inputs = sig.get("inputs") if isinstance(sig, dict) else None
    outputs = sig.get("outputs") if isinstance(sig, dict) else None
    named = lambda xs: [x.get("name") for x in xs if isinstance(x, dict)]  # noqa: E731
    ok = (
        isinstance(inputs, list) and inputs and isinstance(outputs, list) and outputs
        and all(isinstance(n, str) for n in named(inputs)) and len(named(inputs)) == len(inputs)
        and len(set(named(inputs))) == len(inputs) and named(outputs)[:1] == ["logits"]
    )  # fmt: skip
    if not ok:
        raise DinctlError(
            f"{manifest_path} has a malformed signature (expected named inputs and the outputs "
            f"logits[, attention]), got {json.dumps(sig)[:80]}",
            hint=REEXPORT,
        )


def read_bundle(path: Path | str) -> Bundle:
    """Open a bundle folder, checking its version and that every file is there."""
    path = Path(path)
    manifest_path = path / MANIFEST_FILE
    if not manifest_path.is_file():
        raise DinctlError(
            f"{manifest_path} does not exist: {path} is not a dinctl bundle",
            hint="write one with `dinctl export RUN`",
        )
    manifest = read_json(manifest_path)
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if version not in READABLE_VERSIONS:
        raise DinctlError(
            f"{manifest_path} has format version {version!r}, expected one of "
            f"{', '.join(map(str, READABLE_VERSIONS))}",
            hint="re-export the run with this dinctl version",
        )
    for key in ("format", "signature", "model", "max_len", "dataset"):
        if key not in manifest:
            raise DinctlError(f"{manifest_path} lacks the key {key!r}", hint="re-export the run")
    if manifest["format"] not in FORMATS:
        raise DinctlError(
            f"{manifest_path} names the unknown format {manifest['format']!r}",
            hint=f"expected one of {', '.join(FORMATS)}",
        )
    bundle = Bundle(path=path, manifest=manifest)
    if not bundle.schema.is_basic and "numeric_stats" not in manifest:
        raise DinctlError(f"{manifest_path} lacks the key 'numeric_stats'",
                          hint="re-export the run")  # fmt: skip
    if not bundle.model_file.is_file():
        raise DinctlError(f"{bundle.model_file} does not exist", hint="re-export the run")
    _check_manifest(manifest_path, manifest)
    _check_tables(path, bundle.schema)
    tables = list(table_columns(bundle.schema))
    _verify_files(path, manifest, [MODEL_FILES[bundle.format], *tables])
    return bundle
