"""The body of POST /score: its schema, and the fast path that reads most bodies without it.

`ScoreRequest` (pydantic) is the specification: the OpenAPI schema and, for every body the
fast path declines, the validation that words the 4xx. The fast path parses the raw bytes
with orjson and checks the plain shape that most requests have (a JSON object of the known
keys; ids that are strings or integers; field values of the allowed types) without building a
model object per item. It accepts a body only when pydantic would accept it unchanged, and it
gives up (None) on anything else, so a refused body always gets the reference path's error:
the two cannot disagree on what is an error or how it is worded.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, StrictBool, StrictFloat, StrictInt, StrictStr


class ScoreRequest(BaseModel):
    """The body of POST /score."""

    model_config = ConfigDict(extra="forbid")

    user: StrictStr | StrictInt | None = None
    history: list[StrictStr | StrictInt | dict[str, StrictStr | StrictInt]] | None = None
    candidates: list[StrictStr | StrictInt | dict[str, StrictStr | StrictInt | StrictFloat]]
    item_cates: dict[str, StrictStr | StrictInt] | None = None
    user_fields: dict[str, StrictStr | StrictInt] | None = None
    context: dict[str, StrictStr | StrictInt] | None = None
    numeric: dict[str, StrictFloat | StrictInt] | None = None
    attention: StrictBool = False


FIELDS = tuple(ScoreRequest.model_fields)
DEFAULTS: dict[str, Any] = {n: f.default for n, f in ScoreRequest.model_fields.items()}
DEFAULTS.pop("candidates")
ID = frozenset((str, int))  # exact types: a bool is not an id
HISTORY_VALUE = ID
CANDIDATE_VALUE = frozenset((str, int, float))
NUMBER = frozenset((int, float))
BIG = float(2**63)  # orjson reads an integer beyond 64 bits as a float: leave it to pydantic


def _values_ok(values: Any, allowed: frozenset[type]) -> bool:
    """Every value of a list has one of the `allowed` exact types (floats of integer size
    excepted)."""
    kinds = {type(v) for v in values}
    if not kinds <= allowed:
        return False
    return float not in kinds or all(type(v) is not float or abs(v) < BIG for v in values)


def _entries_ok(entries: Any, field_values: frozenset[type]) -> bool:
    """A candidate or history list: raw ids, or objects whose values have `field_values` types."""
    if type(entries) is not list:
        return False
    kinds = {type(e) for e in entries}
    if kinds <= ID:
        return True
    if not kinds <= ID | {dict}:
        return False
    return all(type(e) is not dict or _values_ok(e.values(), field_values) for e in entries)


def _mapping_ok(value: Any, allowed: frozenset[type]) -> bool:
    return value is None or (type(value) is dict and _values_ok(value.values(), allowed))


def plain_request(body: Any) -> bool:
    """Whether `body` (parsed JSON) is one ScoreRequest accepts as it is."""
    if type(body) is not dict or "candidates" not in body:
        return False
    if any(key not in DEFAULTS and key != "candidates" for key in body):
        return False
    user, history = body.get("user"), body.get("history")
    return (
        (user is None or type(user) in ID)
        and _entries_ok(body["candidates"], CANDIDATE_VALUE)
        and (history is None or _entries_ok(history, HISTORY_VALUE))
        and _mapping_ok(body.get("item_cates"), ID)
        and _mapping_ok(body.get("user_fields"), ID)
        and _mapping_ok(body.get("context"), ID)
        and _mapping_ok(body.get("numeric"), NUMBER)
        and type(body.get("attention", False)) is bool
    )


def is_json(content_type: str | None) -> bool:
    """application/json, with or without parameters (what the fast path reads)."""
    return content_type is not None and (
        content_type.partition(";")[0].strip().lower() == "application/json"
    )


def parse_fast(body: bytes, content_type: str | None) -> dict[str, Any] | None:
    """The request's fields ({name: value}, every key of ScoreRequest) when the fast path can
    read the body; None when the reference path must (any doubt, and every error)."""
    if not is_json(content_type):
        return None
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not plain_request(parsed):
        return None
    return {**DEFAULTS, **parsed}


def request_fields(req: ScoreRequest) -> dict[str, Any]:
    """A validated ScoreRequest as the same {name: value} the fast path gives."""
    return {name: getattr(req, name) for name in FIELDS}
