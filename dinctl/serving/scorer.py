"""The serving-time forward: R requests, each one history scored against its C candidates.

The training forward scores (history, candidate) rows, so a request with C candidates repeats
its history C times. Here the user side is computed once per request and broadcast:

* the history embeddings k (R, T, E), looked up once, not once per candidate;
* the history-only term of the activation unit's first layer. That layer sees
  [k, q, k − q, k ⊙ q] (Fig. 2) and is split algebraically,
  W·[k, q, k−q, k⊙q] + b = k·(W1+W3)ᵀ + k·diag(q)·W4ᵀ + (q·(W2−W3)ᵀ + b),
  so the candidate-only term q·(W2−W3)ᵀ + b is (R, C, H), and the history terms become one
  matmul of the shared k with a per-candidate weight (W1+W3)ᵀ + diag(q)·W4ᵀ (E, H): no
  (C, T, 4E) input and no (C, T, E) pair tensor is built, and the bias add rides in the same
  batched matmul (baddbmm).

Inputs are padded: histories are left-aligned (oldest first, most recent at hist_len − 1) and
positions ≥ hist_len are ignored; candidate padding rows get a score that callers drop.

A model trained on more fields (dinctl/data/schema.py) takes more inputs, only those its
config has (so an item/category model's signature is the five inputs it always was), in this
order: hist_fields (R, T, F) and cand_fields (R, C, F) the extra behaviour fields, user_fields
(R, U), context (R, C, K) and numeric (R, C, M, standardised); context and numeric are per
candidate (the training rows' are per sample). The user fields are looked up once per request.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from dinctl.errors import DinctlError
from dinctl.models.config import ModelConfig
from dinctl.models.layers import MLP, ActivationUnit, BehaviourEmbedding

SERVABLE_MODELS = ("din", "base")
INPUT_NAMES = ("hist_item", "hist_cate", "hist_len", "cand_item", "cand_cate")
EXTRA_INPUT_NAMES = ("hist_fields", "cand_fields", "user_fields", "context", "numeric")
# (dtype, symbolic shape) of every input; F, U, K, M are the config's field counts
INPUT_SHAPES: dict[str, tuple[str, list[str]]] = {
    "hist_item": ("int64", ["R", "T"]),
    "hist_cate": ("int64", ["R", "T"]),
    "hist_len": ("int64", ["R"]),
    "cand_item": ("int64", ["R", "C"]),
    "cand_cate": ("int64", ["R", "C"]),
    "hist_fields": ("int64", ["R", "T", "F"]),
    "cand_fields": ("int64", ["R", "C", "F"]),
    "user_fields": ("int64", ["R", "U"]),
    "context": ("int64", ["R", "C", "K"]),
    "numeric": ("float32", ["R", "C", "M"]),
}


def field_counts(cfg: ModelConfig) -> dict[str, int]:
    """The width of each extra input: F, U, K, M (0 = the input is absent)."""
    return {
        "F": len(cfg.behaviour_fields),
        "U": len(cfg.user_fields),
        "K": len(cfg.context_fields),
        "M": len(cfg.numeric_fields),
    }


def input_names(cfg: ModelConfig) -> tuple[str, ...]:
    """The scorer's inputs for a model config: the five basic ones, then the extras it has."""
    n = field_counts(cfg)
    widths = {"hist_fields": n["F"], "cand_fields": n["F"], "user_fields": n["U"]}
    widths.update(context=n["K"], numeric=n["M"])
    return INPUT_NAMES + tuple(name for name in EXTRA_INPUT_NAMES if widths[name] > 0)


def unwrap(model: nn.Module) -> tuple[nn.Module, torch.Tensor | None]:
    """The registry model inside a run model, and the `--reg filter` item map if any."""
    item_map = getattr(model, "item_map", None)
    inner = getattr(model, "inner", model) if item_map is not None else model
    return inner, item_map


class RequestScorer(nn.Module):
    """DIN / BaseModel scoring of padded requests; equal to the eager forward to float noise.

    forward(hist_item (R, T), hist_cate (R, T), hist_len (R,), cand_item (R, C),
    cand_cate (R, C), and the extra inputs of `input_names`, by keyword) → logits (R, C) and,
    for DIN, attention weights (R, C, T).
    """

    item_map: torch.Tensor | None

    def __init__(self, model: nn.Module, bf16: bool = False) -> None:
        super().__init__()
        self.bf16 = bool(bf16)
        inner, item_map = unwrap(model)
        cfg = getattr(inner, "cfg", None)
        if cfg is None or cfg.model not in SERVABLE_MODELS:
            name = getattr(cfg, "model", type(inner).__name__)
            raise DinctlError(
                f"model {name!r} cannot be served; expected one of {', '.join(SERVABLE_MODELS)}",
                hint="train a DIN or BaseModel run to export, predict or serve it",
            )
        self.cfg: ModelConfig = cfg
        self.emb: BehaviourEmbedding = inner.emb  # type: ignore[assignment]
        self.mlp: MLP = inner.mlp  # type: ignore[assignment]
        side = getattr(inner, "side", None)  # SideEmbedding | None
        # user field tables, then context field tables (SideEmbedding's order)
        self.side_tables: nn.ModuleList | None = side.tables if side is not None else None
        self.input_names = input_names(cfg)
        self.register_buffer("item_map", None if item_map is None else item_map.clone())
        self.has_attention = cfg.model == "din"
        if self.has_attention:
            unit: ActivationUnit = inner.attention  # type: ignore[assignment]
            w1, w2, w3, w4 = unit.first.weight.detach().split(unit.dim, dim=1)  # each (H, E)
            self.w_key = nn.Parameter((w1 + w3).t().contiguous(), requires_grad=False)  # (E, H)
            self.w_query = nn.Parameter((w2 - w3).t().contiguous(), requires_grad=False)
            self.w_cross = nn.Parameter(w4.t().contiguous(), requires_grad=False)  # (E, H)
            self.b_first = nn.Parameter(unit.first.bias.detach().clone(), requires_grad=False)
            self.first_act: nn.Module = unit.first_act
            self.rest: MLP = unit.rest
        self.eval()

    def signature(self) -> dict[str, list[dict[str, Any]]]:
        """This scorer's inputs and outputs as bundle.json and /metadata state them."""
        return signature(self.has_attention, self.input_names, field_counts(self.cfg))

    def forward(
        self,
        hist_item: torch.Tensor,
        hist_cate: torch.Tensor,
        hist_len: torch.Tensor,
        cand_item: torch.Tensor,
        cand_cate: torch.Tensor,
        hist_fields: torch.Tensor | None = None,
        cand_fields: torch.Tensor | None = None,
        user_fields: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
        numeric: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        if self.item_map is not None:
            hist_item = self.item_map[hist_item]
            cand_item = self.item_map[cand_item]
        keys = self.emb(hist_item, hist_cate, hist_fields)  # (R, T, E)
        query = self.emb(cand_item, cand_cate, cand_fields)  # (R, C, E)
        side = self.side_inputs(query, user_fields, context, numeric)  # (R, C, S) | None
        pos = torch.arange(hist_item.shape[1], device=hist_item.device)  # (T,)
        valid = pos.unsqueeze(0) < hist_len.unsqueeze(1)  # (R, T)
        if not self.has_attention:
            interest = (keys * valid.unsqueeze(-1).to(keys.dtype)).sum(1)  # (R, E)
            interest = interest.unsqueeze(1).expand_as(query)  # (R, C, E)
            return (self._head(interest, query, side),)
        weights = self.attention_weights(keys, query, valid)  # (R, C, T)
        interest = torch.matmul(weights, keys)  # (R, C, E), Eq. (3)
        return self._head(interest, query, side), weights

    def side_inputs(
        self,
        query: torch.Tensor,
        user_fields: torch.Tensor | None,
        context: torch.Tensor | None,
        numeric: torch.Tensor | None,
    ) -> torch.Tensor | None:
        """[user ⊕ context ⊕ numeric] per candidate (R, C, S), as SideEmbedding lays it out;
        the user fields' embeddings are looked up once per request."""
        if self.side_tables is None:
            return None
        r, c = query.shape[0], query.shape[1]
        tables = list(self.side_tables)  # user fields, then context fields
        n_user = len(self.cfg.user_fields)
        parts = []
        if n_user:
            assert user_fields is not None, "the model has user fields: user_fields is missing"
            user = torch.cat([t(user_fields[:, k]) for k, t in enumerate(tables[:n_user])], -1)
            parts.append(user.unsqueeze(1).expand(r, c, user.shape[-1]))  # (R, C, U·D)
        if len(tables) > n_user:
            assert context is not None, "the model has context fields: context is missing"
            parts += [t(context[..., k]) for k, t in enumerate(tables[n_user:])]  # (R, C, D)
        if self.cfg.numeric_fields:
            assert numeric is not None, "the model has numeric fields: numeric is missing"
            parts.append(numeric.to(query.dtype))  # (R, C, M)
        return torch.cat(parts, dim=-1)  # (R, C, S)

    def attention_weights(
        self, keys: torch.Tensor, query: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:
        """a(e_j, v_A) for every (candidate, behaviour) pair of each request: (R, C, T)."""
        r, c, t, h = query.shape[0], query.shape[1], keys.shape[1], self.b_first.shape[0]
        per_query = torch.matmul(query, self.w_query) + self.b_first  # (R, C, H)
        # k·(W1+W3)ᵀ + (k⊙q)·W4ᵀ = k·((W1+W3)ᵀ + diag(q)·W4ᵀ): one (T, E)·(E, H) per candidate
        mix = query.unsqueeze(-1) * self.w_cross + self.w_key  # (R, C, E, H)
        k = keys.unsqueeze(1).expand(r, c, t, keys.shape[-1])  # (R, C, T, E), a view when R = 1
        args: tuple[torch.Tensor, ...] = (
            per_query.reshape(r * c, 1, h),
            k.reshape(r * c, t, -1),
            mix.reshape(r * c, -1, h),
        )
        if self.bf16:  # the dominant matmul only; everything else stays float32
            args = tuple(a.to(torch.bfloat16) for a in args)
        pre = torch.baddbmm(*args).float()  # (R·C, T, H); the bias rides in the same kernel
        act = self.first_act(pre.reshape(r * c * t, h))  # (R·C·T, H)
        scores = self.rest(act).reshape(r, c, t)  # (R, C, T)
        mask = valid.unsqueeze(1)  # (R, 1, T)
        if self.cfg.attn_softmax:
            scaled = (scores / math.sqrt(keys.shape[-1])).masked_fill(~mask, -math.inf)
            return torch.where(mask, torch.softmax(scaled, dim=-1), 0.0)  # (R, C, T)
        return torch.where(mask, scores, 0.0)  # (R, C, T)

    def _head(
        self, interest: torch.Tensor, query: torch.Tensor, side: torch.Tensor | None
    ) -> torch.Tensor:
        parts = [interest, query] if side is None else [interest, query, side]
        return self.mlp(torch.cat(parts, dim=-1)).squeeze(-1)  # (R, C)


def signature(
    has_attention: bool, names: tuple[str, ...] = INPUT_NAMES, widths: dict[str, int] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """The scorer's input/output signature as bundle.json and /metadata state it; the field
    widths F, U, K, M (`field_counts`) are fixed numbers, R, T and C stay symbolic."""
    n = widths or {}
    inputs: list[dict[str, Any]] = [
        {
            "name": name,
            "dtype": INPUT_SHAPES[name][0],
            "shape": [n.get(axis, axis) for axis in INPUT_SHAPES[name][1]],
        }
        for name in names
    ]
    outputs: list[dict[str, Any]] = [{"name": "logits", "dtype": "float32", "shape": ["R", "C"]}]
    if has_attention:
        outputs.append({"name": "attention", "dtype": "float32", "shape": ["R", "C", "T"]})
    return {"inputs": inputs, "outputs": outputs}
