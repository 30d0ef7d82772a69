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
Nothing here is unpickled when a bundle is opened: JSON, Parquet, ONNX protobuf, and a
torch.export archive loaded with `torch.export.load`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dinctl.data.schema import FeatureSchema
from dinctl.errors import DinctlError
from dinctl.fsutil import atomic_dir, read_json

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
        import polars as pl

        return pl.read_parquet(self.path / ITEMS_FILE)

    def users_frame(self) -> Any:
        import polars as pl

        return pl.read_parquet(self.path / USERS_FILE)

    @property
    def schema(self) -> FeatureSchema:
        """The dataset's feature schema (item/category only for a version-1 bundle)."""
        return FeatureSchema.from_dict(self.manifest.get("schema"), f"{self.path} schema")

    def values_frame(self) -> Any:
        import polars as pl

        return pl.read_parquet(self.path / VALUES_FILE)


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
    """bundle.json; version 2 when the manifest names a feature schema beyond item/category."""
    basic = FeatureSchema.from_dict(manifest.get("schema")).is_basic
    version = FORMAT_VERSION if basic else FIELDS_FORMAT_VERSION
    full = {"format_version": version, **manifest}
    (Path(folder) / MANIFEST_FILE).write_text(json.dumps(full, indent=2) + "\n")


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
    _check_tables(path, bundle.schema)
    return bundle
