"""The paper's competitors: LR, Wide&Deep, PNN and DeepFM (BaseModel lives in din.py)."""

from __future__ import annotations

import torch
from torch import nn

from dinctl.data.batching import Batch
from dinctl.models.config import ModelConfig, ModelOutput
from dinctl.models.din import BaseModel
from dinctl.models.layers import MLP, BehaviourEmbedding, PackedHistory

_HASH_A = 2654435761  # Knuth's multiplicative constant
_HASH_B = 40503


def cross_hash(left: torch.Tensor, right: torch.Tensor, buckets: int) -> torch.Tensor:
    """Bucket of the cross feature (left, right); int64 in, int64 in [0, buckets) out."""
    return (left * _HASH_A + right * _HASH_B) % buckets


class SparseLinear(nn.Module):
    """Σ of per-id scalar weights: one-hot candidate item/category + multi-hot behaviour ids."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.item: nn.Embedding | None = None
        self.hist_item: nn.Embedding | None = None
        if cfg.use_item_ids:
            self.item = nn.Embedding(cfg.n_items + 1, 1, padding_idx=0)
            self.hist_item = nn.Embedding(cfg.n_items + 1, 1, padding_idx=0)
        self.cate = nn.Embedding(cfg.n_cates + 1, 1, padding_idx=0)
        self.hist_cate = nn.Embedding(cfg.n_cates + 1, 1, padding_idx=0)
        for table in (self.item, self.cate, self.hist_item, self.hist_cate):
            if table is not None:
                nn.init.zeros_(table.weight)

    def sparse_tables(self, prefix: str) -> list[tuple[str, nn.Embedding, str]]:
        # per-field tables: ".cand" rows are indexed by the candidate only, ".hist" by behaviours
        out = [
            (f"{prefix}_cate", self.cate, "cate.cand"),
            (f"{prefix}_hist_cate", self.hist_cate, "cate.hist"),
        ]
        if self.item is not None and self.hist_item is not None:
            out += [
                (f"{prefix}_item", self.item, "item.cand"),
                (f"{prefix}_hist_item", self.hist_item, "item.hist"),
            ]
        return out

    def forward(self, batch: Batch, pack: PackedHistory) -> torch.Tensor:
        """Linear logit (B,) without bias."""
        z = self.cate(batch.cate)  # (B, 1)
        hist = self.hist_cate(pack.cate)  # (N, 1)
        if self.item is not None and self.hist_item is not None:
            z = z + self.item(batch.item)  # (B, 1)
            hist = hist + self.hist_item(pack.item)  # (N, 1)
        return (z + pack.sum(hist)).squeeze(1)  # (B,)


class LR(nn.Module):
    """Logistic regression over one-hot candidate ids and multi-hot behaviour ids."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.linear = SparseLinear(cfg)
        self.bias = nn.Parameter(torch.zeros(()))

    def sparse_tables(self) -> list[tuple[str, nn.Embedding, str]]:
        """Every table indexed by raw item or category ids, with its vocabulary."""
        return self.linear.sparse_tables("lr")

    def forward(self, batch: Batch) -> ModelOutput:
        pack = PackedHistory(batch)
        return ModelOutput(logits=self.bias + self.linear(batch, pack), attention=None)


class WideDeep(BaseModel):
    """BaseModel (deep) + a wide linear part over hashed behaviour × candidate crosses."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.wide_item = nn.Embedding(cfg.wide_buckets, 1) if cfg.use_item_ids else None
        self.wide_cate = nn.Embedding(cfg.wide_buckets, 1)
        for table in (self.wide_item, self.wide_cate):
            if table is not None:
                nn.init.zeros_(table.weight)
        self.wide_bias = nn.Parameter(torch.zeros(()))

    def wide(self, batch: Batch, pack: PackedHistory) -> torch.Tensor:
        """Wide logit (B,) from item×item and category×category crosses of valid behaviours."""
        buckets = self.cfg.wide_buckets
        z = self.wide_cate(cross_hash(pack.cate, batch.cate[pack.row], buckets))  # (N, 1)
        if self.wide_item is not None:
            z = z + self.wide_item(cross_hash(pack.item, batch.item[pack.row], buckets))  # (N, 1)
        return self.wide_bias + pack.sum(z).squeeze(1)  # (B,)

    def forward(self, batch: Batch) -> ModelOutput:
        pack = PackedHistory(batch)
        candidate, keys = self.emb.candidate_and_history(batch, pack)  # (B, E), (N, E)
        pooled = pack.sum(keys)  # (B, E)
        deep = self.mlp(torch.cat([pooled, candidate], dim=-1)).squeeze(-1)  # (B,)
        return ModelOutput(logits=deep + self.wide(batch, pack), attention=None)


def field_embeddings(emb: BehaviourEmbedding, batch: Batch, pack: PackedHistory) -> torch.Tensor:
    """Field embeddings (B, F, D): candidate item, candidate category, then the sum-pooled
    behaviour items and categories (item fields absent without item ids)."""
    candidate, keys = emb.candidate_and_history(batch, pack)  # (B, E), (N, E)
    pooled = pack.sum(keys)  # (B, E)
    b, d = candidate.shape[0], emb.cate.embedding_dim
    return torch.cat([candidate, pooled], dim=1).view(b, -1, d)  # (B, F, D)


class PNN(nn.Module):
    """Inner-product PNN: [field embeddings ⊕ pairwise inner products] → MLP."""

    pair_i: torch.Tensor
    pair_j: torch.Tensor

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.emb = BehaviourEmbedding(
            cfg.n_items, cfg.n_cates, cfg.emb_dim, cfg.use_item_ids, cfg.init_std
        )
        n_fields = 4 if cfg.use_item_ids else 2
        pairs = torch.triu_indices(n_fields, n_fields, offset=1)  # (2, P)
        self.register_buffer("pair_i", pairs[0], persistent=False)
        self.register_buffer("pair_j", pairs[1], persistent=False)
        in_dim = n_fields * cfg.emb_dim + pairs.shape[1]
        self.mlp = MLP(in_dim, cfg.mlp_hidden, cfg.act, 1, cfg.dice_eps, cfg.dice_momentum)

    def sparse_tables(self) -> list[tuple[str, nn.Embedding, str]]:
        """Every table indexed by raw item or category ids, with its vocabulary."""
        return self.emb.sparse_tables()

    def inner_products(self, fields: torch.Tensor) -> torch.Tensor:
        """⟨f_i, f_j⟩ for i < j: (B, F, D) → (B, P)."""
        return (fields[:, self.pair_i] * fields[:, self.pair_j]).sum(-1)  # (B, P)

    def forward(self, batch: Batch) -> ModelOutput:
        pack = PackedHistory(batch)
        fields = field_embeddings(self.emb, batch, pack)  # (B, F, D)
        product = torch.cat([fields.flatten(1), self.inner_products(fields)], dim=1)  # (B, F·D+P)
        return ModelOutput(logits=self.mlp(product).squeeze(-1), attention=None)


class DeepFM(nn.Module):
    """DeepFM: first-order weights + FM second-order term over field embeddings + the MLP."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.emb = BehaviourEmbedding(
            cfg.n_items, cfg.n_cates, cfg.emb_dim, cfg.use_item_ids, cfg.init_std
        )
        self.linear = SparseLinear(cfg)
        self.bias = nn.Parameter(torch.zeros(()))
        e = cfg.behaviour_dim
        self.mlp = MLP(2 * e, cfg.mlp_hidden, cfg.act, 1, cfg.dice_eps, cfg.dice_momentum)

    def sparse_tables(self) -> list[tuple[str, nn.Embedding, str]]:
        """Every table indexed by raw item or category ids, with its vocabulary."""
        return self.emb.sparse_tables() + self.linear.sparse_tables("fm")

    @staticmethod
    def fm(fields: torch.Tensor) -> torch.Tensor:
        """Σ_{i<j} ⟨v_i, v_j⟩ = ((Σ v)² − Σ v²)/2 summed over D: (B, F, D) → (B,)."""
        return 0.5 * (fields.sum(1).square() - fields.square().sum(1)).sum(-1)  # (B,)

    def forward(self, batch: Batch) -> ModelOutput:
        pack = PackedHistory(batch)
        fields = field_embeddings(self.emb, batch, pack)  # (B, F, D)
        deep = self.mlp(fields.flatten(1)).squeeze(-1)  # (B,)
        logits = self.bias + self.linear(batch, pack) + self.fm(fields) + deep  # (B,)
        return ModelOutput(logits=logits, attention=None)
