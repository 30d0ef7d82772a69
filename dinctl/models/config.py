"""The model boundary: a frozen config in, `ModelOutput` out."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, NamedTuple

import torch

from dinctl.choices import ACTIVATIONS as ACTS
from dinctl.choices import LINEAR_INITS
from dinctl.choices import MLP_ACTIVATIONS as MLP_ACTS  # "same" = the activation unit's `act`
from dinctl.choices import MODELS as MODEL_NAMES
from dinctl.data.schema import FeatureSchema
from dinctl.errors import DinctlError
from dinctl.model_settings import MODEL_DEFAULTS

WIDE_CROSSES = ("auto", "legacy")

# What a config written before a field existed meant: missing keys read as these, so an old
# run folder rebuilds the model it trained (same modules, same arithmetic). These are history,
# not defaults: they stay when a default changes.
LEGACY_DEFAULTS: dict[str, Any] = {
    "mlp_act": "same",
    "dice_alpha_init": 0.25,
    "linear_init": "torch",
    "wide_cross": "legacy",
    "fm_pooling": "sum",
}


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model; saved as JSON in the run folder.

    Tables have n+1 rows (row 0 = padding), so any id in 0..n (e.g. a `filter` bucket) is valid.
    The user id is not a feature: the paper's Amazon features are behaviours + candidate.
    """

    model: str
    n_users: int
    n_items: int
    n_cates: int
    # the settings a training run chooses: what each means is said in dinctl/model_settings.py
    emb_dim: int = MODEL_DEFAULTS["emb_dim"]
    act: str = MODEL_DEFAULTS["act"]
    mlp_act: str = MODEL_DEFAULTS["mlp_act"]
    attn_softmax: bool = MODEL_DEFAULTS["attn_softmax"]
    use_item_ids: bool = MODEL_DEFAULTS["use_item_ids"]
    attn_hidden: tuple[int, ...] = (80, 40)
    mlp_hidden: tuple[int, ...] = (200, 80)
    dice_eps: float = 1e-8
    dice_momentum: float = 0.1  # torch-BN convention: running = (1-m)·running + m·batch
    dice_alpha_init: float = MODEL_DEFAULTS["dice_alpha_init"]
    linear_init: str = MODEL_DEFAULTS["linear_init"]
    wide_buckets: int = 1 << 20  # cross-product rows of Wide&Deep's wide part
    wide_cross: str = "auto"  # auto: exact index when the cross fits, else a universal hash
    fm_pooling: str = "mean"  # DeepFM's history fields in the FM term: mean | sum
    init_std: float = MODEL_DEFAULTS["init_std"]
    # the dataset's feature schema beyond item/cate (dinctl/data/schema.py): (name, vocab) of
    # each extra behaviour field (shared by history and candidate), user and context field,
    # and the numeric fields' names; empty in runs written before the schema existed
    behaviour_fields: tuple[tuple[str, int], ...] = ()
    user_fields: tuple[tuple[str, int], ...] = ()
    context_fields: tuple[tuple[str, int], ...] = ()
    numeric_fields: tuple[str, ...] = ()
    # `--reg filter`: the dataset's item vocabulary, which the model's item map (an ItemMap
    # buffer, filled at training) sends to the n_items ids it keeps; 0 = no filter
    item_filter: int = 0

    def __post_init__(self) -> None:
        for name in ("behaviour_fields", "user_fields", "context_fields"):
            pairs = tuple((str(n), int(v)) for n, v in getattr(self, name))
            if any(v < 1 for _, v in pairs):
                raise DinctlError(f"{name} vocabularies must be positive, got {list(pairs)}")
            object.__setattr__(self, name, pairs)
        object.__setattr__(self, "numeric_fields", tuple(str(n) for n in self.numeric_fields))
        self._check_options()

    def _check_options(self) -> None:
        if self.model not in MODEL_NAMES:
            raise DinctlError(
                f"unknown model {self.model!r}; expected one of {', '.join(MODEL_NAMES)}",
                hint="pick a model with --model",
            )
        if self.act not in ACTS:
            raise DinctlError(
                f"unknown activation {self.act!r}; expected one of {', '.join(ACTS)}",
                hint="pick an activation with --act",
            )
        for name, allowed in (
            ("mlp_act", MLP_ACTS),
            ("linear_init", LINEAR_INITS),
            ("wide_cross", WIDE_CROSSES),
            ("fm_pooling", ("mean", "sum")),
        ):
            if getattr(self, name) not in allowed:
                raise DinctlError(
                    f"unknown {name} {getattr(self, name)!r}; expected one of {', '.join(allowed)}",
                    hint=f"set {name} to one of the listed values",
                )
        for name in ("n_items", "n_cates", "emb_dim", "wide_buckets"):
            if int(getattr(self, name)) < 1:
                raise DinctlError(f"{name} must be at least 1, got {getattr(self, name)} instead")
        if self.n_users < 0:
            raise DinctlError(f"n_users must be at least 0, got {self.n_users} instead")
        for name in ("attn_hidden", "mlp_hidden"):
            sizes = getattr(self, name)
            if any(int(h) < 1 for h in sizes):
                raise DinctlError(f"{name} sizes must be positive, got {list(sizes)} instead")
            object.__setattr__(self, name, tuple(int(h) for h in sizes))

    @property
    def tower_act(self) -> str:
        """The MLP tower's activation: `auto` is ReLU after a Dice unit, else the unit's."""
        if self.mlp_act == "auto":
            return "relu" if self.act == "dice" else self.act
        return self.act if self.mlp_act == "same" else self.mlp_act

    @property
    def behaviour_dim(self) -> int:
        """Width of one behaviour / candidate embedding: its fields' embeddings concatenated."""
        return self.emb_dim * ((2 if self.use_item_ids else 1) + len(self.behaviour_fields))

    @property
    def side_dim(self) -> int:
        """Width of the user, context and numeric inputs the MLP gets besides the behaviours."""
        n_cat = len(self.user_fields) + len(self.context_fields)
        return self.emb_dim * n_cat + len(self.numeric_fields)

    @property
    def is_basic(self) -> bool:
        """Item and category only: no extra behaviour, user, context or numeric field."""
        return not (
            self.behaviour_fields or self.user_fields or self.context_fields or self.numeric_fields
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        out = asdict(self)
        for key in ("attn_hidden", "mlp_hidden", "numeric_fields"):
            out[key] = list(getattr(self, key))
        for key in ("behaviour_fields", "user_fields", "context_fields"):
            out[key] = [list(pair) for pair in getattr(self, key)]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of `to_dict`; unknown keys are an error, missing newer ones read as
        `LEGACY_DEFAULTS` (what the model was before they existed)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DinctlError(
                f"unknown model config keys {unknown}; expected a subset of {sorted(known)}",
                hint="the run was written by another dinctl version",
            )
        return cls(**{**{k: v for k, v in LEGACY_DEFAULTS.items() if k not in data}, **data})


class ModelOutput(NamedTuple):
    """What every model's forward returns."""

    logits: torch.Tensor  # (B,) float
    attention: torch.Tensor | None  # (B, T) float, 0 at padding; None for non-attention models


def schema_fields(schema: FeatureSchema, vocab: dict[str, Any]) -> dict[str, Any]:
    """The ModelConfig keys describing a dataset's fields beyond item and category."""
    return {
        "behaviour_fields": tuple((n, int(vocab[n])) for n in schema.extra_behaviour),
        "user_fields": tuple((n, int(vocab[n])) for n in schema.user),
        "context_fields": tuple((n, int(vocab[n])) for n in schema.context),
        "numeric_fields": schema.numeric,
    }
