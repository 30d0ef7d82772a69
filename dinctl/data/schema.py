"""The feature schema of a dataset: which fields a behaviour, a user and a sample carry.

Stored as `schema` in meta.json (format version 2; docs/formats.md):

  behaviour  id fields of one event, shared by the history and the candidate ad; the first
             two are always `item` and `cate` (one embedding table per field, Fig. 2)
  user       categorical profile fields, one value per user (users.parquet)
  context    categorical fields of the sample itself (e.g. ad slot, hour)
  numeric    float fields of the sample, standardised with the training split's mean/std

Every categorical field has a vocabulary `vocab[name]` = values + 1 (id 0 = padding/missing).
A version-1 folder has the default schema: behaviour (item, cate), nothing else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from dinctl.errors import DinctlError

BASE_BEHAVIOUR = ("item", "cate")
# names the sample files already use for something else
RESERVED = frozenset({"user", "hist_len", "label", "raw_user", "ts", "items", "cates", "freq"})
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
GROUPS = ("behaviour", "user", "context", "numeric")


@dataclass(frozen=True)
class FeatureSchema:
    """Field names per group; `vocab` (name → ids + 1) for every categorical field."""

    behaviour: tuple[str, ...] = BASE_BEHAVIOUR
    user: tuple[str, ...] = ()
    context: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for group in GROUPS:
            object.__setattr__(self, group, tuple(str(n) for n in getattr(self, group)))
        if self.behaviour[:2] != BASE_BEHAVIOUR:
            raise DinctlError(
                f"the behaviour fields must start with item, cate; got {list(self.behaviour)}",
                hint="list the item column first and the category column second",
            )
        seen: set[str] = set()
        for group in GROUPS:
            for name in getattr(self, group):
                if not _NAME.match(name) or name in RESERVED:
                    raise DinctlError(
                        f"feature name {name!r} ({group}) is not allowed: expected lowercase "
                        "letters, digits and _ (at most 40, starting with a letter), not one of "
                        f"{', '.join(sorted(RESERVED))}",
                        hint="rename the field in the schema",
                    )
                if name in seen:
                    raise DinctlError(
                        f"feature name {name!r} is used twice", hint="give each field one name"
                    )
                seen.add(name)

    @property
    def extra_behaviour(self) -> tuple[str, ...]:
        """Behaviour fields beyond item and category (brand, shop, btag, ...)."""
        return self.behaviour[2:]

    @property
    def categorical(self) -> tuple[str, ...]:
        """Every field with a vocabulary, in schema order."""
        return (*self.behaviour, *self.user, *self.context)

    @property
    def is_basic(self) -> bool:
        """Item and category only: the format-1 dataset every part of dinctl supports."""
        return not (self.extra_behaviour or self.user or self.context or self.numeric)

    def sample_columns(self) -> tuple[str, ...]:
        """The extra per-sample columns of the split files: candidate fields, context, numeric."""
        return (*self.extra_behaviour, *self.context, *self.numeric)

    def to_dict(self) -> dict[str, list[str]]:
        return {group: list(getattr(self, group)) for group in GROUPS}

    @classmethod
    def from_dict(cls, data: Any, where: str = "schema") -> FeatureSchema:
        """Inverse of `to_dict`; None (a version-1 folder, an old run) is the default schema."""
        if data is None:
            return cls()
        if not isinstance(data, dict) or set(data) - set(GROUPS):
            raise DinctlError(
                f"{where} must be an object with keys among {', '.join(GROUPS)}, got {data!r:.80}",
                hint="re-run `dinctl preprocess` with --overwrite",
            )
        for group, names in data.items():
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise DinctlError(
                    f"{where}.{group} must be a list of names, got {names!r:.80}",
                    hint="re-run `dinctl preprocess` with --overwrite",
                )
        return cls(**{g: tuple(data[g]) for g in GROUPS if g in data})


def field_vocab(schema: FeatureSchema, vocab: dict[str, Any]) -> dict[str, int]:
    """name → vocabulary size of every categorical field, checked present and positive."""
    out = {}
    for name in schema.categorical:
        value = vocab.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 2**31:
            raise DinctlError(
                f"vocab.{name} is {value!r}, expected a positive integer",
                hint="re-run `dinctl preprocess` with --overwrite",
            )
        out[name] = value
    return out
