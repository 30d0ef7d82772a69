"""The paper's competitors: LR, Wide&Deep, PNN and DeepFM (BaseModel lives in din.py)."""

from __future__ import annotations

import torch
from torch import nn

from dinctl.data.batching import Batch
from dinctl.models.config import ModelConfig, ModelOutput
from dinctl.models.din import BaseModel, tower
from dinctl.models.layers import BehaviourEmbedding, PackedHistory

_HASH_A = 2654435761  # Knuth's multiplicative constant
_HASH_B = 40503


# A Carter–Wegman hash modulo the Mersenne prime 2^31 − 1 over the pair key's two 31-bit
# halves; every product stays below 2^62, so int64 never overflows.
_P31 = (1 << 31) - 1
_CW_A, _CW_B, _CW_C = 1_103_515_245, 2_077_643_651, 1_500_450_271


def cross_hash(left: torch.Tensor, right: torch.Tensor, buckets: int) -> torch.Tensor:
    """Bucket of the cross feature (left, right) in runs written before `wide_cross` existed
    (it maps Amazon's 641,601 category pairs into 324,776 of 2^20 rows); int64 in, int64 out."""
    return (left * _HASH_A + right * _HASH_B) % buckets


def cross_index(
    left: torch.Tensor, right: torch.Tensor, n_left: int, n_right: int, buckets: int
) -> torch.Tensor:
    """Row of the cross (left, right) for ids in [0, n_left) × [0, n_right): the pair's exact
    index left·n_right + right when all n_left·n_right pairs fit in `buckets` rows, else a
    universal hash of that index into [0, buckets). int64 in, int64 out."""
    key = left * n_right + right  # (...,) distinct per pair
    if n_left * n_right <= buckets:
        return key
    lo, hi = key & _P31, (key >> 31) % _P31  # the key's two 31-bit halves
    return ((_CW_A * lo) % _P31 + (_CW_B * hi) % _P31 + _CW_C) % _P31 % buckets


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

    def forward(self, batch: Batch, pack: PackedHistory, mean: bool = False) -> torch.Tensor:
        """Linear logit (B,) without bias; `mean` averages the behaviour weights over the valid
        behaviours instead of summing them."""
        z = self.cate(batch.cate)  # (B, 1)
        hist = self.hist_cate(pack.cate)  # (N, 1)
        if self.item is not None and self.hist_item is not None:
            z = z + self.item(batch.item)  # (B, 1)
            hist = hist + self.hist_item(pack.item)  # (N, 1)
        pooled = pack.sum(hist)  # (B, 1)
        if mean:
            pooled = pooled / batch.hist_mask.sum(1, keepdim=True).clamp(min=1)  # (B, 1)
        return (z + pooled).squeeze(1)  # (B,)


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
        z = self.wide_cate(self.cross(pack.cate, batch.cate[pack.row], self.cfg.n_cates))  # (N, 1)
        if self.wide_item is not None:
            z = z + self.wide_item(self.cross(pack.item, batch.item[pack.row], self.cfg.n_items))
        return self.wide_bias + pack.sum(z).squeeze(1)  # (B,)

    def cross(self, behaviour: torch.Tensor, candidate: torch.Tensor, n: int) -> torch.Tensor:
        """Wide-table rows (N,) of behaviour × candidate crosses over ids 0..n."""
        buckets = self.cfg.wide_buckets
        if self.cfg.wide_cross == "legacy":
            return cross_hash(behaviour, candidate, buckets)
        return cross_index(behaviour, candidate, n + 1, n + 1, buckets)

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
        self.mlp = tower(in_dim, cfg)

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
        self.mlp = tower(2 * e, cfg)

    def sparse_tables(self) -> list[tuple[str, nn.Embedding, str]]:
        """Every table indexed by raw item or category ids, with its vocabulary."""
        return self.emb.sparse_tables() + self.linear.sparse_tables("fm")

    @staticmethod
    def fm(fields: torch.Tensor) -> torch.Tensor:
        """Σ_{i<j} ⟨v_i, v_j⟩ = ((Σ v)² − Σ v²)/2 summed over D: (B, F, D) → (B,)."""
        return 0.5 * (fields.sum(1).square() - fields.square().sum(1)).sum(-1)  # (B,)

    def fm_fields(self, fields: torch.Tensor, batch: Batch) -> torch.Tensor:
        """The FM term's fields (B, F, D). With `fm_pooling = mean` the history fields are
        averaged over the valid behaviours (as the first-order history weights are), so
        ⟨candidate, history⟩ stays O(1) and ⟨history items, history categories⟩ does not grow
        with the square of the history length: summed, SGD at the paper's lr 1.0 diverges."""
        if self.cfg.fm_pooling == "sum":
            return fields
        n_cand = fields.shape[1] // 2  # candidate fields first, then as many history fields
        count = batch.hist_mask.sum(1).clamp(min=1).to(fields.dtype)  # (B,)
        history = fields[:, n_cand:] / count[:, None, None]  # (B, F/2, D)
        return torch.cat([fields[:, :n_cand], history], dim=1)  # (B, F, D)

    def forward(self, batch: Batch) -> ModelOutput:
        pack = PackedHistory(batch)
        fields = field_embeddings(self.emb, batch, pack)  # (B, F, D)
        deep = self.mlp(fields.flatten(1)).squeeze(-1)  # (B,)
        mean = self.cfg.fm_pooling == "mean"
        fm = self.linear(batch, pack, mean) + self.fm(self.fm_fields(fields, batch))  # (B,)
        logits = self.bias + fm + deep  # (B,)
        return ModelOutput(logits=logits, attention=None)
