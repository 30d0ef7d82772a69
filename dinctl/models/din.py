"""DIN (Zhou et al., KDD'18) and its Embedding&MLP BaseModel."""

from __future__ import annotations

import math

import torch
from torch import nn

from dinctl.data.batching import Batch
from dinctl.models.config import ModelConfig, ModelOutput
from dinctl.models.layers import (
    MLP,
    ActivationUnit,
    BehaviourEmbedding,
    PackedHistory,
    SideEmbedding,
    activation,
)


def segment_softmax(scores: torch.Tensor, row: torch.Tensor, n_rows: int) -> torch.Tensor:
    """Softmax of packed scores (N,) within each row; rows own disjoint segments."""
    top = scores.new_full((n_rows,), -math.inf).scatter_reduce(
        0, row, scores.detach(), reduce="amax"
    )  # (B,)
    z = torch.exp(scores - top[row])  # (N,)
    total = z.new_zeros(n_rows).index_add_(0, row, z)  # (B,)
    return z / total[row]  # (N,)


def tower(in_dim: int, cfg: ModelConfig) -> MLP:
    """The MLP tower over `in_dim` inputs with the config's hidden sizes and tower activation."""
    return MLP(in_dim, cfg.mlp_hidden, activation(cfg.tower_act, cfg), 1)


def behaviour_embedding(cfg: ModelConfig) -> BehaviourEmbedding:
    """The shared behaviour/candidate tables of the config's behaviour fields."""
    return BehaviourEmbedding(
        cfg.n_items, cfg.n_cates, cfg.emb_dim, cfg.use_item_ids, cfg.init_std, cfg.behaviour_fields
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


class BaseModel(nn.Module):
    """Embedding&MLP: sum pooling over valid behaviours, MLP on [pooled ⊕ candidate ⊕ user ⊕
    context ⊕ numeric] (Fig. 2)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.emb = behaviour_embedding(cfg)
        self.side = side_embedding(cfg)
        e = cfg.behaviour_dim
        self.mlp = tower(2 * e + cfg.side_dim, cfg)

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

    def pool(
        self, candidate: torch.Tensor, keys: torch.Tensor, pack: PackedHistory
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """User interest (B, E) from packed behaviours (N, E); sum pooling here."""
        return pack.sum(keys), None

    def forward(self, batch: Batch) -> ModelOutput:
        pack = PackedHistory(batch)
        candidate, keys = self.emb.candidate_and_history(batch, pack)  # (B, E), (N, E)
        interest, weights = self.pool(candidate, keys, pack)  # (B, E), (N,) | None
        logits = self.mlp(self.mlp_input(batch, interest, candidate)).squeeze(-1)  # (B,)
        attention = pack.unpack(weights) if weights is not None else None  # (B, T)
        return ModelOutput(logits=logits, attention=attention)


class DIN(BaseModel):
    """Deep Interest Network: attention-weighted sum pooling, Eq. (3)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.attention = ActivationUnit(
            cfg.behaviour_dim, cfg.attn_hidden, activation(cfg.act, cfg)
        )

    def pool(
        self, candidate: torch.Tensor, keys: torch.Tensor, pack: PackedHistory
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        scores = self.attention(candidate, keys, pack.row)  # (N,)
        if self.cfg.attn_softmax:
            # the authors' code: scores / sqrt(E), softmax over the valid behaviours of a row
            scores = segment_softmax(scores / math.sqrt(keys.shape[1]), pack.row, pack.shape[0])
        interest = pack.sum(scores.unsqueeze(1) * keys)  # (B, E), Eq. (3)
        return interest, scores
