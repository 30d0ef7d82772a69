"""The paper's competitors: LR, Wide&Deep, PNN and DeepFM (BaseModel lives in din.py)."""

from __future__ import annotations

import torch
from torch import nn

from dinctl.data.batching import Batch
from dinctl.models.config import ModelConfig, ModelOutput
from dinctl.models.din import EmbeddingMLP, behaviour_embedding, side_embedding, side_tables, tower
from dinctl.models.layers import (
    BehaviourEmbedding,
    ItemMap,
    PackedHistory,
    SideEmbedding,
    embeddings,
    side_entries,
)
from dinctl.models.registry import register

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


def _zero_tables(pairs: tuple[tuple[str, int], ...]) -> nn.ModuleList:
    """One zero-initialised scalar weight per id for each (name, vocab) field."""
    out = nn.ModuleList(nn.Embedding(v, 1, padding_idx=0) for _, v in pairs)
    for table in out:
        assert isinstance(table, nn.Embedding)
        nn.init.zeros_(table.weight)
    return out


class SparseLinear(nn.Module):
    """Σ of per-id scalar weights: one-hot candidate fields + multi-hot behaviour fields, each
    behaviour field with its own candidate and history weights, plus one-hot user and context
    fields and a linear term of the numeric fields."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.item: nn.Embedding | None = None
        self.hist_item: nn.Embedding | None = None
        if cfg.use_item_ids:
            self.item = nn.Embedding(cfg.n_items + 1, 1, padding_idx=0)
            self.hist_item = nn.Embedding(cfg.n_items + 1, 1, padding_idx=0)
        self.item_map = ItemMap(cfg.item_filter) if cfg.item_filter and cfg.use_item_ids else None
        self.cate = nn.Embedding(cfg.n_cates + 1, 1, padding_idx=0)
        self.hist_cate = nn.Embedding(cfg.n_cates + 1, 1, padding_idx=0)
        for table in (self.item, self.cate, self.hist_item, self.hist_cate):
            if table is not None:
                nn.init.zeros_(table.weight)
        self.beh_names = tuple(n for n, _ in cfg.behaviour_fields)
        self.extra = _zero_tables(cfg.behaviour_fields)
        self.hist_extra = _zero_tables(cfg.behaviour_fields)
        self.n_user = len(cfg.user_fields)
        self.side_names = tuple(n for n, _ in (*cfg.user_fields, *cfg.context_fields))
        self.side = _zero_tables((*cfg.user_fields, *cfg.context_fields))
        m = len(cfg.numeric_fields)
        self.numeric = nn.Linear(m, 1, bias=False) if m else None
        if self.numeric is not None:
            nn.init.zeros_(self.numeric.weight)

    def extra_tables(self, prefix: str) -> list[tuple[str, nn.Embedding, str]]:
        out = []
        tables = zip(embeddings(self.extra), embeddings(self.hist_extra), strict=True)
        beh = zip(self.beh_names, tables, strict=True)
        for k, (name, (cand, hist)) in enumerate(beh):
            out += [
                (f"{prefix}_{name}", cand, f"beh:{k}:{name}.cand"),
                (f"{prefix}_hist_{name}", hist, f"beh:{k}:{name}.hist"),
            ]
        return out + side_entries(prefix + "_{}", self.side_names, self.side, self.n_user)

    def extra_logit(self, batch: Batch, pack: PackedHistory) -> tuple[torch.Tensor, torch.Tensor]:
        """(candidate + user + context + numeric (B, 1), packed behaviour (N, 1)) weights of the
        fields beyond item and category."""
        z = batch.label.new_zeros(batch.item.shape[0], 1)  # (B, 1)
        hist = batch.label.new_zeros(pack.item.shape[0], 1)  # (N, 1)
        for k, (cand, beh) in enumerate(zip(embeddings(self.extra), embeddings(self.hist_extra),
                                            strict=True)):  # fmt: skip
            assert batch.cand_fields is not None and pack.fields is not None
            z = z + cand(batch.cand_fields[:, k])
            hist = hist + beh(pack.fields[:, k])
        if self.side_names:
            ids = SideEmbedding.ids_of(batch)  # (B, U+K)
            for k, table in enumerate(embeddings(self.side)):
                z = z + table(ids[:, k])
        if self.numeric is not None:
            assert batch.numeric is not None
            z = z + self.numeric(batch.numeric)
        return z, hist

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
        return out + self.extra_tables(prefix)

    def forward(self, batch: Batch, pack: PackedHistory, mean: bool = False) -> torch.Tensor:
        """Linear logit (B,) without bias; `mean` averages the behaviour weights over the valid
        behaviours instead of summing them."""
        z = self.cate(batch.cate)  # (B, 1)
        hist = self.hist_cate(pack.cate)  # (N, 1)
        if self.item is not None and self.hist_item is not None:
            item, hist_item = batch.item, pack.item
            if self.item_map is not None:
                item, hist_item = self.item_map(item), self.item_map(hist_item)
            z = z + self.item(item)  # (B, 1)
            hist = hist + self.hist_item(hist_item)  # (N, 1)
        z_extra, hist_extra = self.extra_logit(batch, pack)  # (B, 1), (N, 1)
        z, hist = z + z_extra, hist + hist_extra
        pooled = pack.sum(hist)  # (B, 1)
        if mean:
            pooled = pooled / batch.hist_mask.sum(1, keepdim=True).clamp(min=1)  # (B, 1)
        return (z + pooled).squeeze(1)  # (B,)


@register("lr")
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


@register("wide-deep")
class WideDeep(EmbeddingMLP):
    """BaseModel (deep) + a wide linear part over hashed behaviour × candidate crosses."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.wide_item = nn.Embedding(cfg.wide_buckets, 1) if cfg.use_item_ids else None
        self.wide_cate = nn.Embedding(cfg.wide_buckets, 1)
        for table in (self.wide_item, self.wide_cate):
            if table is not None:
                nn.init.zeros_(table.weight)
        self.wide_bias = nn.Parameter(torch.zeros(()))
        # each extra behaviour field crossed with the candidate's, user/context fields one-hot
        self.wide_extra = _zero_tables(
            tuple((n, cfg.wide_buckets) for n, _ in cfg.behaviour_fields)
        )
        self.wide_side = _zero_tables((*cfg.user_fields, *cfg.context_fields))
        m = len(cfg.numeric_fields)
        self.wide_numeric = nn.Linear(m, 1, bias=False) if m else None

    def sparse_tables(self) -> list[tuple[str, nn.Embedding, str]]:
        """The deep part's tables and the wide part's one-hot user/context weights."""
        names = tuple(n for n, _ in (*self.cfg.user_fields, *self.cfg.context_fields))
        wide = side_entries("wide_{}", names, self.wide_side, len(self.cfg.user_fields))
        return super().sparse_tables() + wide

    def wide(self, batch: Batch, pack: PackedHistory) -> torch.Tensor:
        """Wide logit (B,) from behaviour × candidate crosses of every behaviour field over the
        valid behaviours, plus the user/context/numeric fields' own weights."""
        z = self.wide_cate(self.cross(pack.cate, batch.cate[pack.row], self.cfg.n_cates))  # (N, 1)
        if self.wide_item is not None:
            item, hist_item = batch.item, pack.item
            if self.emb.item_map is not None:  # the model's item ids (`--reg filter`)
                item, hist_item = self.emb.item_map(item), self.emb.item_map(hist_item)
            z = z + self.wide_item(self.cross(hist_item, item[pack.row], self.cfg.n_items))
        extra = zip(embeddings(self.wide_extra), self.cfg.behaviour_fields, strict=True)
        for k, (table, (_, v)) in enumerate(extra):
            assert batch.cand_fields is not None and pack.fields is not None
            z = z + table(self.cross(pack.fields[:, k], batch.cand_fields[pack.row, k], v - 1))
        out = self.wide_bias + pack.sum(z).squeeze(1)  # (B,)
        if self.wide_side:
            ids = SideEmbedding.ids_of(batch)  # (B, U+K)
            for k, table in enumerate(embeddings(self.wide_side)):
                out = out + table(ids[:, k]).squeeze(1)
        if self.wide_numeric is not None:
            assert batch.numeric is not None
            out = out + self.wide_numeric(batch.numeric).squeeze(1)
        return out

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
        deep = self.mlp(self.mlp_input(batch, pooled, candidate)).squeeze(-1)  # (B,)
        return ModelOutput(logits=deep + self.wide(batch, pack), attention=None)


def field_embeddings(emb: BehaviourEmbedding, batch: Batch, pack: PackedHistory) -> torch.Tensor:
    """Field embeddings (B, F, D): the candidate's fields (item, category, extra behaviour
    fields), then the sum-pooled behaviours' fields in the same order (no item without ids)."""
    candidate, keys = emb.candidate_and_history(batch, pack)  # (B, E), (N, E)
    pooled = pack.sum(keys)  # (B, E)
    b, d = candidate.shape[0], emb.cate.embedding_dim
    return torch.cat([candidate, pooled], dim=1).view(b, -1, d)  # (B, F, D)


def side_fields(side: SideEmbedding | None, batch: Batch) -> torch.Tensor | None:
    """The user and context field embeddings (B, U+K, D), None without such fields."""
    return None if side is None or not side.names else side.fields(batch)


def with_side(fields: torch.Tensor, side: torch.Tensor | None) -> torch.Tensor:
    """The behaviour fields (B, F, D) followed by the side fields `side_fields` gave."""
    return fields if side is None else torch.cat([fields, side], dim=1)


@register("pnn")
class PNN(nn.Module):
    """Inner-product PNN: [field embeddings ⊕ pairwise inner products] → MLP."""

    pair_i: torch.Tensor
    pair_j: torch.Tensor

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.emb = behaviour_embedding(cfg)
        self.side = side_embedding(cfg)
        n_fields = 2 * (cfg.behaviour_dim // cfg.emb_dim)
        n_fields += len(cfg.user_fields) + len(cfg.context_fields)
        pairs = torch.triu_indices(n_fields, n_fields, offset=1)  # (2, P)
        self.register_buffer("pair_i", pairs[0], persistent=False)
        self.register_buffer("pair_j", pairs[1], persistent=False)
        in_dim = n_fields * cfg.emb_dim + pairs.shape[1] + len(cfg.numeric_fields)
        self.mlp = tower(in_dim, cfg)

    def sparse_tables(self) -> list[tuple[str, nn.Embedding, str]]:
        """Every embedding table indexed by raw ids, with its vocabulary tag."""
        return self.emb.sparse_tables() + side_tables(self.side)

    def inner_products(self, fields: torch.Tensor) -> torch.Tensor:
        """⟨f_i, f_j⟩ for i < j: (B, F, D) → (B, P)."""
        return (fields[:, self.pair_i] * fields[:, self.pair_j]).sum(-1)  # (B, P)

    def forward(self, batch: Batch) -> ModelOutput:
        pack = PackedHistory(batch)
        fields = with_side(field_embeddings(self.emb, batch, pack), side_fields(self.side, batch))
        parts = [fields.flatten(1), self.inner_products(fields)]  # (B, F·D), (B, P)
        if self.side is not None:
            parts.append(self.side.numeric(batch))  # (B, M)
        return ModelOutput(logits=self.mlp(torch.cat(parts, dim=1)).squeeze(-1), attention=None)


@register("deepfm")
class DeepFM(nn.Module):
    """DeepFM: first-order weights + FM second-order term over field embeddings + the MLP."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.emb = behaviour_embedding(cfg)
        self.side = side_embedding(cfg)
        self.linear = SparseLinear(cfg)
        self.bias = nn.Parameter(torch.zeros(()))
        e = cfg.behaviour_dim
        self.mlp = tower(2 * e + cfg.side_dim, cfg)

    def sparse_tables(self) -> list[tuple[str, nn.Embedding, str]]:
        """Every table indexed by raw ids, with its vocabulary tag."""
        tables = self.emb.sparse_tables() + side_tables(self.side)
        return tables + self.linear.sparse_tables("fm")

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
        behaviour = field_embeddings(self.emb, batch, pack)  # (B, F_b, D)
        side = side_fields(self.side, batch)  # looked up once: the deep and the FM part share it
        fields = with_side(behaviour, side)  # (B, F, D) + user and context fields
        deep_in = [fields.flatten(1)]
        if self.side is not None:
            deep_in.append(self.side.numeric(batch))  # (B, M)
        deep = self.mlp(torch.cat(deep_in, dim=1)).squeeze(-1)  # (B,)
        mean = self.cfg.fm_pooling == "mean"
        fm_in = with_side(self.fm_fields(behaviour, batch), side)  # (B, F, D)
        fm = self.linear(batch, pack, mean) + self.fm(fm_in)  # (B,)
        logits = self.bias + fm + deep  # (B,)
        return ModelOutput(logits=logits, attention=None)
