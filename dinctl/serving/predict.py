"""`dinctl predict`: stream a file of requests through a ServingModel into a Parquet of scores.

Input: Parquet, CSV or JSONL, one request per row, columns
  request     optional key (default: the row number, from 1)
  user        raw user id: its history is the stored one, as of the end of the data
  history     raw item ids, most recent last (wins over `user`); CSV: `|`-separated
  candidates  one raw item id or a list of them; CSV: `|`-separated
  item_cates  optional {raw item: category name} for items the training data never saw
  user_fields, context, numeric  optional {field: value} for a run trained on a feature schema
              (JSONL/Parquet; candidates and history events may then be objects
              {"item": id, field: value}; see dinctl/serving/fields.py)
Output Parquet, one row per (request, candidate): request, candidate, score (click
probability), unknown_item (candidate unknown to the model), attention (list, with --attention).
Memory is bounded by --batch-rows: input is read, scored and written batch by batch, and a
request's candidates are scored CANDIDATES_PER_FORWARD at a time (serve's default cap), so a
row of 30,000 candidates costs what 30 rows of 1,000 do, with the same scores.
The output may not be the input file, lie inside the RUN|BUNDLE or the run's dataset, or be
anything but a regular file (a folder, a FIFO, a device).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dinctl.errors import DinctlError
from dinctl.fsutil import atomic_file, check_disjoint, check_output_kind
from dinctl.serving.runtime import ServingModel
from dinctl.serving.vocab import EncodedRequest, RequestError

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl"}
PAIRS_PER_FORWARD = 1 << 16  # (request, candidate, behaviour) cells per forward pass
CANDIDATES_PER_FORWARD = 1000  # of one request; = serve's default --max-candidates


@dataclass(frozen=True)
class PredictSummary:
    input: str
    output: str
    source: str
    format: str
    requests: int
    scored: int  # output rows (request, candidate)
    unknown_items: int  # rows whose candidate the model does not know
    seconds: float

    def to_json(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["rows_per_s"] = self.requests / self.seconds if self.seconds > 0 else None
        return out


def input_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DinctlError(
            f"cannot tell the format of {path} from its suffix {path.suffix!r}",
            hint=f"name it with one of {', '.join(FORMATS)}",
        )
    if not path.is_file():
        raise DinctlError(f"input file {path} does not exist")
    return fmt


def read_batches(path: Path, rows: int) -> Iterator[list[dict[str, Any]]]:
    """Rows of the input as dicts, `rows` (or one CSV block) at a time."""
    fmt = input_format(path)
    if fmt == "jsonl":
        yield from _jsonl_batches(path, rows)
        return
    import pyarrow as pa

    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            batches: Iterator[Any] = pq.ParquetFile(path).iter_batches(batch_size=rows)
        else:
            import pyarrow.csv as pcsv

            types = {c: pa.string() for c in ("request", "user", "history", "candidates")}
            batches = iter(
                pcsv.open_csv(
                    path,
                    convert_options=pcsv.ConvertOptions(
                        column_types=types, strings_can_be_null=True
                    ),
                )
            )
        for batch in batches:
            yield batch.to_pylist()
    except (pa.ArrowException, OSError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise DinctlError(f"{path} is not a readable {fmt} file ({first})") from None


def _jsonl_batches(path: Path, rows: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    with open(path, "rb") as f:
        for lineno, data in enumerate(f, start=1):
            try:
                line = data.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DinctlError(
                    f"{path}:{lineno} is not UTF-8 text (byte {err.start}: "
                    f"{data[err.start : err.start + 1]!r})",
                    hint="write the requests as UTF-8 JSON lines",
                ) from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DinctlError(f"{path}:{lineno} is not valid JSON ({err.msg})") from None
            except RecursionError:
                raise DinctlError(f"{path}:{lineno} nests JSON too deeply") from None
            if not isinstance(row, dict):
                raise DinctlError(f"{path}:{lineno} is not a JSON object")
            chunk.append(row)
            if len(chunk) == rows:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def _ids(value: Any, csv: bool) -> list[Any] | None:
    """A list of raw ids from a cell: a list, one id, or (CSV) a `|`-separated string."""
    if value is None:
        return None
    if isinstance(value, str):
        if csv:
            return [v for v in value.split("|") if v != ""]
        return [value]
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return [int(value)]
    if isinstance(value, dict):  # one candidate given as an object
        return [value]
    raise RequestError(f"expected an id or a list of ids, got {value!r} instead")


def encode_row(
    model: ServingModel, row: dict[str, Any], csv: bool
) -> Iterator[tuple[list[Any], EncodedRequest]]:
    """One input row's candidates and request, CANDIDATES_PER_FORWARD candidates at a time
    (RequestError for a bad row)."""
    candidates = _ids(row.get("candidates", row.get("candidate")), csv)
    if candidates is None:
        raise RequestError("no candidates: expected a `candidates` column with item ids")
    if not candidates:
        model.vocab.encode(candidates, user=row.get("user"))  # the encoder's own one line
    for start in range(0, len(candidates), CANDIDATES_PER_FORWARD):
        part = candidates[start : start + CANDIDATES_PER_FORWARD]
        yield part, _encode(model, row, part, csv)


def _encode(model: ServingModel, row: dict[str, Any], candidates: list[Any],
            csv: bool) -> EncodedRequest:  # fmt: skip
    cates = _mapping(row, "item_cates")
    return model.vocab.encode(
        candidates,
        user=row.get("user"),
        history=_ids(row.get("history"), csv),
        item_cates={str(k): v for k, v in (cates or {}).items()},
        user_fields=_mapping(row, "user_fields"),
        context=_mapping(row, "context"),
        numeric=_mapping(row, "numeric"),
    )


def _mapping(row: dict[str, Any], key: str) -> dict[str, Any] | None:
    """An optional {name: value} cell (Parquet maps read as [(key, value), ...])."""
    value = row.get(key)
    if value is None:
        return None
    if isinstance(value, list):  # a Parquet map: (key, value) pairs
        pairs = all(isinstance(p, (list, tuple)) and len(p) == 2 for p in value)
        value = dict(value) if pairs else value
    if not isinstance(value, dict):
        raise RequestError(f"{key} must be an object of names to values, got {value!r}")
    return {str(k): v for k, v in value.items()}


def candidate_key(candidate: Any) -> str:
    """The output's `candidate`: the raw item id (of an object candidate, its `item`)."""
    return str(candidate.get("item") if isinstance(candidate, dict) else candidate)


class _Writer:
    """Buffers scored requests into forward passes and Parquet row groups."""

    def __init__(self, model: ServingModel, sink: Any, attention: bool) -> None:
        self.model, self.sink, self.attention = model, sink, attention
        self.pending: list[tuple[str, list[str], EncodedRequest]] = []
        self.width = 0  # the most candidates of a pending request
        self.depth = 1  # the longest pending history
        self.scored = 0
        self.oov = 0

    def add(self, key: str, candidates: list[str], request: EncodedRequest) -> None:
        width = max(self.width, len(request.cand_item))
        depth = max(self.depth, len(request.hist_item))
        if self.pending and (len(self.pending) + 1) * width * depth > PAIRS_PER_FORWARD:
            self.flush()
        self.pending.append((key, candidates, request))
        self.width = max(self.width, len(request.cand_item))
        self.depth = max(self.depth, len(request.hist_item))

    def flush(self) -> None:
        if not self.pending:
            return
        import pyarrow as pa

        scored = self.model.score([q for _, _, q in self.pending], attention=self.attention)
        keys, cands, scores, oov, att = [], [], [], [], []
        for (key, candidates, q), s in zip(self.pending, scored, strict=True):
            keys += [key] * len(candidates)
            cands += candidates
            scores.append(s.scores.astype(np.float32))
            oov.append(q.cand_item == 0)
            if self.attention:
                att += (
                    [w.tolist() for w in s.attention]
                    if s.attention is not None
                    else [None] * len(candidates)
                )
        columns = {
            "request": pa.array(keys, pa.string()),
            "candidate": pa.array(cands, pa.string()),
            "score": pa.array(np.concatenate(scores)),
            "unknown_item": pa.array(np.concatenate(oov)),
        }
        if self.attention:
            columns["attention"] = pa.array(att, pa.list_(pa.float32()))
        self.sink(pa.table(columns))
        self.scored += len(keys)
        self.oov += int(columns["unknown_item"].true_count)
        self.pending = []
        self.width, self.depth = 0, 1


def predict_file(
    model: ServingModel,
    input_path: Path,
    out: Path,
    *,
    attention: bool = False,
    batch_rows: int = 4096,
    on_rows: Callable[[int], None] | None = None,
) -> PredictSummary:
    """Score every request of `input_path` into the Parquet file `out` (written atomically)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    input_path, out = Path(input_path), Path(out)
    csv = input_format(input_path) == "csv"
    check_predict_out(out, input_path, model)
    schema = [("request", pa.string()), ("candidate", pa.string()), ("score", pa.float32())]
    schema.append(("unknown_item", pa.bool_()))
    if attention:
        schema.append(("attention", pa.list_(pa.float32())))
    started = time.perf_counter()
    n = 0
    with atomic_file(out) as tmp, pq.ParquetWriter(tmp, pa.schema(schema)) as writer:
        buf = _Writer(model, writer.write_table, attention)
        for rows in read_batches(input_path, batch_rows):
            for row in rows:
                n += 1
                key = row.get("request")
                if isinstance(key, (bool, float, list, dict)):
                    raise DinctlError(f"{input_path} row {n}: request must be a string or an "
                                      f"integer key, got {key!r}")  # fmt: skip
                key = str(n) if key is None else str(key)
                try:
                    for cands, request in encode_row(model, row, csv):
                        buf.add(key, [candidate_key(c) for c in cands], request)
                except RequestError as err:
                    msg = f"{input_path} row {n}: {err.message}"
                    raise DinctlError(msg, hint=err.hint) from None
            if on_rows is not None:
                on_rows(len(rows))
        buf.flush()
    return PredictSummary(
        input=str(input_path),
        output=str(out),
        source=str(model.info.get("source")),
        format=str(model.info.get("format")),
        requests=n,
        scored=buf.scored,
        unknown_items=buf.oov,
        seconds=time.perf_counter() - started,
    )


def check_predict_out(out: Path, input_path: Path, model: ServingModel) -> None:
    """Refuse an output that is not a regular file, or that is or lies inside an input: the
    requests, the RUN|BUNDLE, or (for a run) its dataset."""
    check_output_kind(out, "file")
    inputs = [("input file", Path(input_path)), ("model folder", Path(str(model.info["source"])))]
    if str(model.info.get("format", "")).startswith("eager"):
        inputs.append(("dataset folder", Path(str(model.info["dataset"]["path"]))))
    check_disjoint(out, inputs)


def count_rows(path: Path) -> int | None:
    """Rows of a Parquet input from its footer (for the progress bar); None for text inputs."""
    if input_format(Path(path)) != "parquet":
        return None
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return int(pq.ParquetFile(path).metadata.num_rows)
    except (OSError, pa.ArrowException):  # read_batches names the problem
        return None
