"""The model inputs, declared once: name, dtype, axes, side, and where each value comes from.

Batching (`data/batching.py`), the request encoder (`serving/vocab.py`, `serving/fields.py`),
the request scorer's signature (`serving/scorer.py`), export and the bundle's signature are
derived from `INPUTS`. Axes are the serving layout: R requests, T history positions, C
candidates, and the widths F, U, K, M of the extra field groups (`GROUPS`). A training batch is
R = B requests of one candidate each, so its tensor has the same axes less C (`Batch` names
the candidate's `item`/`cate` and holds `hist_mask` instead of `hist_len`).

Sides: `user` inputs are computed once per request (`encode_user`), `candidate` and `context`
inputs once per candidate (`score`); context (the situation of one impression: time, page,
numeric features) is per candidate at serving time because a training row carries its own.

This module imports nothing from dinctl, so every layer may read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldGroup:
    """A group of extra fields: its width axis and where the dataset and model name them."""

    axis: str  # F, U, K or M
    schema: str  # the FeatureSchema attribute listing the group's column names
    config: str  # the ModelConfig attribute listing them (with vocabularies)


GROUPS: dict[str, FieldGroup] = {
    "behaviour": FieldGroup("F", "extra_behaviour", "behaviour_fields"),
    "user": FieldGroup("U", "user", "user_fields"),
    "context": FieldGroup("K", "context", "context_fields"),
    "numeric": FieldGroup("M", "numeric", "numeric_fields"),
}


@dataclass(frozen=True)
class InputField:
    """One model input."""

    name: str  # scorer input, padded request array, Batch attribute (but see `batch`)
    dtype: str  # "int64" | "float32"
    axes: tuple[str, ...]  # serving layout, see the module docstring
    side: str  # "user" (once per request) | "candidate" | "context" (per candidate)
    group: str | None  # the extra field group (GROUPS) it holds; None for item/category
    train: str  # where the value comes from in a training batch
    serve: str  # where it comes from in a request
    batch: str = ""  # the Batch attribute when its name differs

    @property
    def width(self) -> str | None:
        """The axis of the group's fields (None for item/category inputs)."""
        return GROUPS[self.group].axis if self.group else None

    @property
    def batch_name(self) -> str:
        return self.batch or self.name


INPUTS: tuple[InputField, ...] = (
    InputField("hist_item", "int64", ("R", "T"), "user", None,
               "the user's behaviour sequence before the sample (WindowGatherer)",
               "the request's history, else the known user's stored one"),
    InputField("hist_cate", "int64", ("R", "T"), "user", None,
               "the history items' categories", "the items' training categories"),
    InputField("hist_len", "int64", ("R",), "user", None,
               "the window's length (Batch.hist_mask)", "the history's length",
               batch="hist_mask"),
    InputField("cand_item", "int64", ("R", "C"), "candidate", None,
               "the sample's item (Batch.item)", "the request's candidates", batch="item"),
    InputField("cand_cate", "int64", ("R", "C"), "candidate", None,
               "the sample's category (Batch.cate)", "the item's training category, else "
               "the request's item_cates", batch="cate"),
    InputField("hist_fields", "int64", ("R", "T", "F"), "user", "behaviour",
               "the sequence's extra behaviour columns", "each event's own value, else the "
               "item's default"),
    InputField("cand_fields", "int64", ("R", "C", "F"), "candidate", "behaviour",
               "the split's extra behaviour columns", "the candidate's own value, else the "
               "item's default"),
    InputField("user_fields", "int64", ("R", "U"), "user", "user",
               "the user's row of users.parquet", "the request's user_fields, else the known "
               "user's row"),
    InputField("context", "int64", ("R", "C", "K"), "context", "context",
               "the split's context columns", "the candidate's own value, else the "
               "request's context"),
    InputField("numeric", "float32", ("R", "C", "M"), "context", "numeric",
               "the split's numeric columns, standardised", "the candidate's own value, else "
               "the request's numeric, standardised with the training mean and std"),
)  # fmt: skip

BY_NAME: dict[str, InputField] = {f.name: f for f in INPUTS}
BASIC_NAMES = tuple(f.name for f in INPUTS if f.group is None)
EXTRA_NAMES = tuple(f.name for f in INPUTS if f.group is not None)
USER_NAMES = tuple(f.name for f in INPUTS if f.side == "user")
CANDIDATE_NAMES = tuple(f.name for f in INPUTS if f.side != "user")
# the extra inputs a training split holds per row (the user side comes from the user)
ROW_FIELDS = tuple(f for f in INPUTS if f.group is not None and f.side != "user")


def widths(cfg: Any) -> dict[str, int]:
    """The width of each field group, {"F": n, "U": n, "K": n, "M": n}, of a ModelConfig."""
    return {g.axis: len(getattr(cfg, g.config)) for g in GROUPS.values()}


def input_names(sizes: dict[str, int] | None = None) -> tuple[str, ...]:
    """The inputs of a model whose field groups have `sizes` (widths): the basic ones, then
    the extra ones whose group is not empty, in `INPUTS` order."""
    n = sizes or {}
    return tuple(f.name for f in INPUTS if f.width is None or n.get(f.width, 0) > 0)


def schema_columns(schema: Any, field: InputField) -> tuple[str, ...]:
    """The dataset columns (a FeatureSchema's names) that make up an extra input."""
    return tuple(getattr(schema, GROUPS[field.group].schema)) if field.group else ()


def signature_inputs(names: tuple[str, ...], sizes: dict[str, int]) -> list[dict[str, Any]]:
    """bundle.json's / /metadata's input list: widths fixed, R, T and C symbolic."""
    return [
        {
            "name": name,
            "dtype": BY_NAME[name].dtype,
            "shape": [sizes.get(axis, axis) for axis in BY_NAME[name].axes],
        }
        for name in names
    ]
