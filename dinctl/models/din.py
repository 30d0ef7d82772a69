"""DIN (Zhou et al., KDD'18) and its Embedding&MLP BaseModel."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dinctl.data.batching import Batch
from dinctl.models.config import ModelConfig, ModelOutput
from dinctl.models.layers import (
    MLP,
    ActivationUnit,
    BehaviourEmbedding,
    History,
    PackedHistory,
    PaddedHistory,
    SideEmbedding,
    activation,
)
from dinctl.models.registry import register
from dinctl.models.servable import ServableModel, one_candidate


def tower(in_dim: int, cfg: ModelConfig) -> MLP:
    """The MLP tower over `in_dim` inputs with the config's hidden sizes and tower activation."""
    return MLP(in_dim, cfg.mlp_hidden, activation(cfg.tower_act, cfg), 1)


def behaviour_embedding(cfg: ModelConfig) -> BehaviourEmbedding:
    """The shared behaviour/candidate tables of the config's behaviour fields."""
    return BehaviourEmbedding(
        cfg.n_items,
        cfg.n_cates,
        cfg.emb_dim,
        cfg.use_item_ids,
        cfg.init_std,
        cfg.behaviour_fields,
        cfg.item_filter,
    )


def side_embedding(cfg: ModelConfig) -> SideEmbedding | None:
    """The user/context tables and numeric inputs, None for an item/category-only model (so
    its state dict is what it always was)."""
    if not (cfg.user_fields or cfg.context_fields or cfg.numeric_fields):
        return None
    return SideEmbedding(
        cfg.user_fields, cfg.context_fields, len(cfg.numeric_fields), cfg.emb_dim, cfg.init_std
    )


def side_tables(side: SideEmbedding | None) -> list[tuple[str, nn.Embedding, str]]:
    return side.sparse_tables() if side is not None else []


@dataclass
class UserState:
    """The user side of R requests, encoded once (`encode_user`)."""

    history: History  # where the N behaviours sit
    keys: torch.Tensor  # (N, E) behaviour embeddings
    user: torch.Tensor | None  # (R, U·D) user field embeddings, None without user fields


class EmbeddingMLP(nn.Module):
    """The Embedding&MLP trunk (Fig. 2): shared behaviour tables, user/context/numeric inputs,
    and the MLP tower over [pooled ⊕ candidate ⊕ user ⊕ context ⊕ numeric]."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.emb = behaviour_embedding(cfg)
        self.side = side_embedding(cfg)
        self.mlp = tower(2 * cfg.behaviour_dim + cfg.side_dim, cfg)

    def sparse_tables(self) -> list[tuple[str, nn.Embedding, str]]:
        """Every embedding table indexed by raw ids, with its vocabulary tag."""
        return self.emb.sparse_tables() + side_tables(self.side)

    def mlp_input(
        self, batch: Batch, interest: torch.Tensor, candidate: torch.Tensor
    ) -> torch.Tensor:
        """[interest ⊕ candidate ⊕ user ⊕ context ⊕ numeric]: (B, 2E + side_dim)."""
        parts = [interest, candidate]
        if self.side is not None:
            parts.append(self.side(batch))
        return torch.cat(parts, dim=-1)


@register("base")
class BaseModel(EmbeddingMLP, ServableModel):
    """Embedding&MLP: sum pooling over valid behaviours, MLP on [pooled ⊕ candidate ⊕ user ⊕
    context ⊕ numeric] (Fig. 2). Subclasses change `pool` only."""

    def encode_user(
        self,
        hist_item: torch.Tensor,
        hist_cate: torch.Tensor,
        hist_len: torch.Tensor,
        hist_fields: torch.Tensor | None = None,
        user_fields: torch.Tensor | None = None,
    ) -> UserState:
        history = PaddedHistory(hist_len, hist_item.shape)
        # flat ids in, (R·T, E) out: reshaping (R, T, E) keys would not export with dynamic T
        fields = hist_fields.reshape(-1, hist_fields.shape[-1]) if hist_fields is not None else None
        keys = self.emb(hist_item.reshape(-1), hist_cate.reshape(-1), fields)  # (R·T, E)
        return self.user_state(history, keys, user_fields)

    def user_state(
        self, history: History, keys: torch.Tensor, user_fields: torch.Tensor | None
    ) -> UserState:
        user = self.side.user(user_fields) if self.side is not None else None  # (R, U·D)
        return UserState(history, keys, user)

    def score(
        self,
        user: UserState,
        cand_item: torch.Tensor,
        cand_cate: torch.Tensor,
        cand_fields: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
        numeric: torch.Tensor | None = None,
    ) -> ModelOutput:
        candidate = self.emb(cand_item, cand_cate, cand_fields)  # (R, C, E)
        return self.score_embedded(user, candidate, context, numeric)

    def score_embedded(
        self,
        user: UserState,
        candidate: torch.Tensor,
        context: torch.Tensor | None,
        numeric: torch.Tensor | None,
    ) -> ModelOutput:
        """`score` from the candidates' embeddings (R, C, E)."""
        return self.pool_and_tower(
            user, candidate, self.tower_rest(user, candidate, context, numeric)
        )

    def pool_and_tower(
        self, user: UserState, candidate: torch.Tensor, rest: list[torch.Tensor]
    ) -> ModelOutput:
        """The interest by `pool`, then the tower on [interest ⊕ rest]."""
        interest, attention = self.pool(user, candidate)  # (R, C, E), (R, C, T) | None
        logits = self.mlp(torch.cat([interest, *rest], dim=-1)).squeeze(-1)  # (R, C)
        return ModelOutput(logits=logits, attention=attention)

    def tower_rest(
        self,
        user: UserState,
        candidate: torch.Tensor,
        context: torch.Tensor | None,
        numeric: torch.Tensor | None,
    ) -> list[torch.Tensor]:
        """The tower's inputs after the interest: [candidate ⊕ user ⊕ context ⊕ numeric]."""
        if self.side is None:
            return [candidate]
        return [candidate, self.side.per_candidate(user.user, context, numeric, candidate.shape[1])]

    def pool(
        self, user: UserState, candidate: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """User interest per candidate (R, C, E) and the behaviours' weights (R, C, T), 0 at
        padding, or None; sum pooling here."""
        pooled = user.history.sum(user.keys)  # (R, E)
        return pooled.unsqueeze(1).expand_as(candidate), None

    def forward(self, batch: Batch) -> ModelOutput:
        """`score(encode_user(...))` of B one-candidate requests, on the packed valid
        behaviours and with one lookup per table for candidates and behaviours (so each table's
        backward builds one dense gradient, not two)."""
        history = PackedHistory(batch)
        candidate, keys = self.emb.candidate_and_history(batch, history)  # (B, E), (N, E)
        user = self.user_state(history, keys, batch.user_fields)
        per_candidate = [
            x.unsqueeze(1) if x is not None else None for x in (batch.context, batch.numeric)
        ]
        out = self.score_embedded(user, candidate.unsqueeze(1), *per_candidate)  # C = 1
        return one_candidate(out)


@register("din")
class DIN(BaseModel):
    """Deep Interest Network: attention-weighted sum pooling, Eq. (3)."""

    has_attention = True

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.attention = ActivationUnit(
            cfg.behaviour_dim, cfg.attn_hidden, activation(cfg.act, cfg)
        )

    def pool(
        self, user: UserState, candidate: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        history = user.history
        scores = self.attention(candidate, user.keys, history)  # (N, C)
        if self.cfg.attn_softmax:
            # the authors' code: scores / sqrt(E), softmax over the valid behaviours of a row
            scores = history.softmax(scores / math.sqrt(user.keys.shape[1]))
        return history.weighted_sum(scores, user.keys), history.unpack(scores)  # Eq. (3)

    def serve_arrays(
        self, inputs: dict[str, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray | None] | None:
        """Padded requests (numpy, `dinctl.inputs.INPUTS`) scored as `score(encode_user(...))`
        to float rounding, with no torch op but the side fields': the unit, Eq. (3) and the
        tower as one CPU kernel per block of candidates, from the behaviours' table rows
        (`ActivationUnit.serve_arrays`); None where the kernel does not apply."""
        import dinctl.models.fused_unit as fused_unit  # numba loads only where this runs

        if self.training or not fused_unit.available():
            return None  # known before the lookups: the torch forward serves
        emb = self.emb
        hist = emb.kernel_ids(inputs["hist_item"], inputs["hist_cate"], inputs.get("hist_fields"))
        cand = emb.kernel_ids(inputs["cand_item"], inputs["cand_cate"], inputs.get("cand_fields"))
        r, c = cand.shape[:2]
        side = self.side_rest(inputs) if self.side is not None else np.zeros((r, c, 0), np.float32)
        tables = emb.kernel_tables()
        lengths, softmax = inputs["hist_len"], self.cfg.attn_softmax
        fused = self.attention.serve_arrays(tables, hist, cand, lengths, self.mlp, side, softmax)
        if fused is None:
            return None
        logits, attention = fused  # (R, C, 1), (R, C, T)
        return logits[..., 0], attention

    def side_rest(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """`tower_rest`'s user, context and numeric part (R, C, D) of numpy inputs."""
        assert self.side is not None
        given = {
            name: torch.from_numpy(inputs[name]) if name in inputs else None
            for name in ("user_fields", "context", "numeric")
        }
        with torch.inference_mode():
            user = self.side.user(given["user_fields"])
            c = inputs["cand_item"].shape[1]
            return self.side.per_candidate(user, given["context"], given["numeric"], c).numpy()


@register("avg-pool")
class AvgPool(BaseModel):
    """Embedding&MLP with mean pooling: the average of the valid behaviours (0 for none)."""

    def pool(
        self, user: UserState, candidate: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        count = user.history.lengths.clamp(min=1).unsqueeze(1).to(user.keys.dtype)  # (R, 1)
        mean = user.history.sum(user.keys) / count  # (R, E)
        return mean.unsqueeze(1).expand_as(candidate), None
