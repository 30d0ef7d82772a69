"""The regularisers of Table 4: MBA, L2, behaviour dropout, frequency filter, DiFacto.

`make_regularizer(cfg, ...)` picks one object from `--reg` once; the loop only calls its
`training_batch` (input transform), `penalty` (term added to the loss) and reads `dense_grads`
(whether it needs dense embedding gradients). `filter` is state of the model, not a wrapper:
its item map is a buffer of the item tables (`ItemMap`, sized by `ModelConfig.item_filter`)
that `fill_item_filter` fills at training, so loading a run never needs this module.

Penalties take `model.sparse_tables()` (name, nn.Embedding, vocabulary) and the training batch;
ids of vocabulary "item" come from `batch.item` + `batch.hist_item`, "cate" from `batch.cate` +
`batch.hist_cate`, an extra behaviour field "beh:k:name" from `batch.cand_fields[:, k]` +
`batch.hist_fields[..., k]`, "user:k:name" / "ctx:k:name" from `batch.user_fields[:, k]` /
`batch.context[:, k]`. Id 0 is padding and is never penalised.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

import torch
from torch import nn

from dinctl.data.batching import Batch
from dinctl.models.layers import ItemMap
from dinctl.training.config import TrainConfig

Tables = list[tuple[str, nn.Embedding, str]]


def _field_ids(batch: Batch, base: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(candidate (B,) or sample (B,) ids, history (B, T) ids or None) of one vocabulary tag:
    "item", "cate", "beh:k:name" (extra behaviour field k), "user:k:name", "ctx:k:name"."""
    if base == "item":
        return batch.item, batch.hist_item
    if base == "cate":
        return batch.cate, batch.hist_cate
    group, _, rest = base.partition(":")
    k = int(rest.partition(":")[0]) if rest.partition(":")[0].isdigit() else -1
    source = {
        "beh": batch.cand_fields,
        "user": batch.user_fields,
        "ctx": batch.context,
    }.get(group)
    if source is None or not 0 <= k < source.shape[1]:
        raise ValueError(f"unknown vocabulary {base!r}")
    if group == "beh":
        assert batch.hist_fields is not None
        return source[:, k], batch.hist_fields[:, :, k]
    return source[:, k], None


def batch_ids(batch: Batch, vocab: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Ids of one vocabulary per row, (B, K) ids and (B, K) validity: candidate + history for
    "item"/"cate" (and extra behaviour fields "beh:k:name"), the candidate only for
    "item.cand"/"cate.cand", behaviours only for ".hist" (the per-field tables of LR and
    DeepFM's first order); user and context fields ("user:k:name", "ctx:k:name") are one id
    per sample."""
    base, _, part = vocab.partition(".")
    cand, maybe_hist = _field_ids(batch, base)
    if maybe_hist is None:
        ids = cand.unsqueeze(1)  # (B, 1)
        return ids, ids > 0
    if part == "cand":
        ids = cand.unsqueeze(1)  # (B, 1)
    elif part in ("", "hist"):
        ids = maybe_hist * batch.hist_mask  # (B, T)
        if part == "":
            ids = torch.cat([cand.unsqueeze(1), ids], dim=1)  # (B, 1+T)
    else:
        raise ValueError(f"unknown vocabulary {vocab!r}")
    return ids, ids > 0


def vocab_base(vocab: str) -> str:
    """The id space (a field name) of a table's vocabulary tag: "item.cand" → "item",
    "beh:0:brand.hist" → "brand", "user:1:gender" → "gender"."""
    return vocab.partition(".")[0].rpartition(":")[2]


def unique_batch_ids(batch: Batch, vocab: str) -> torch.Tensor:
    """The distinct non-padding ids of one vocabulary present in the batch: (K,)."""
    ids, valid = batch_ids(batch, vocab)
    return torch.unique(ids[valid])  # (K,)


def mba_penalty(
    tables: Tables,
    batch: Batch,
    freqs: dict[str, torch.Tensor],
    lam: float,
    union: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Mini-batch aware L2, Eq. (6) with λ as Eq. (7) means it: (λ/2)·Σ_{j in batch} ‖w_j‖²/n_j,
    each present row counted once, so its gradient is exactly λ·w_j/n_j, Eq. (7), and touches
    only rows in the batch;
    `freqs[field]` holds n_j per id of every field (items.parquet `freq` for "item",
    Dataset.field_sample_freq(field) for the others), clamped to ≥ 1; per-field tables
    (".cand"/".hist") use their id space's n_j.
    `union` merges the ids of all ranks' shards, so under DDP the batch is the global one.
    """
    total = tables[0][1].weight.new_zeros(())
    for _, table, vocab in tables:
        ids = unique_batch_ids(batch, vocab)  # (K,)
        if union is not None:
            ids = union(ids)  # (K',)
        n = freqs[vocab_base(vocab)][ids].clamp(min=1).to(table.weight.dtype)  # (K,)
        w = table(ids)  # (K, D)
        total = total + (w.pow(2).sum(dim=1) / n).sum()
    return 0.5 * lam * total  # Eq. (7): gradient λ·w_j/n_j


def l2_penalty(tables: Tables, lam: float) -> torch.Tensor:
    """Plain L2 over whole embedding tables, every step: λ·Σ ‖W‖²."""
    total = tables[0][1].weight.new_zeros(())
    for _, table, _ in tables:
        total = total + table.weight.pow(2).sum()
    return lam * total


def difacto_penalty(tables: Tables, batch: Batch, lam: float) -> torch.Tensor:
    """DiFacto's frequency-adaptive L2 (Li et al., WSDM'16) in mini-batch form.

    DiFacto applies the L2 step to a feature each time it occurs, so frequent ids are
    regularised more (the opposite of MBA's 1/n_j): (λ/2)·Σ_j (c_j / B)·‖w_j‖², where c_j is the
    number of samples in the batch of size B whose candidate or history contains j; λ means what
    it means for MBA (gradient λ·(c_j / B)·w_j).
    """
    total = tables[0][1].weight.new_zeros(())
    b = max(len(batch), 1)
    for _, table, vocab in tables:
        ids, valid = batch_ids(batch, vocab)  # (B, 1+T)
        ids = torch.where(valid, ids, torch.zeros_like(ids)).sort(dim=1).values  # (B, 1+T)
        first = torch.ones_like(ids, dtype=torch.bool)
        first[:, 1:] = ids[:, 1:] != ids[:, :-1]  # count each id once per sample
        uniq, counts = torch.unique(ids[first & (ids > 0)], return_counts=True)  # (K,), (K,)
        w = table(uniq)  # (K, D)
        total = total + (counts.to(w.dtype) * w.pow(2).sum(dim=1)).sum() / b
    return 0.5 * lam * total


def behaviour_dropout(batch: Batch, rate: float, generator: torch.Generator | None = None) -> Batch:
    """Drop each behaviour with probability `rate` (training only), with inverted scaling.

    The models take ids, not vectors, so the 1/(1 − rate) scale of inverted dropout is applied
    by replication: a kept behaviour appears ⌊c⌋ or ⌈c⌉ times, c = 1/(1 − rate), with E = c.
    Every behaviour then counts once in expectation, so the expected sum-pooled history is the
    one seen at evaluation (where nothing is dropped); at the paper's 50% each kept behaviour
    appears exactly twice. Dropped ids → 0, mask → False; the window widens to fit the copies.
    """
    shape = batch.hist_mask.shape  # (B, T)
    keep = torch.rand(shape, generator=generator, device="cpu") >= rate  # (B, T)
    scale = 1.0 / (1.0 - rate)
    whole = math.floor(scale)
    copies = keep.long() * whole  # (B, T)
    if scale > whole:  # the fractional part: one more copy with that probability
        extra = torch.rand(shape, generator=generator, device="cpu") < scale - whole  # (B, T)
        copies = copies + (keep & extra).long()
    copies = copies.to(batch.hist_mask.device) * batch.hist_mask  # (B, T)
    return replace(batch, **_replicate(batch, copies))


def _replicate(batch: Batch, copies: torch.Tensor) -> dict[str, torch.Tensor]:
    """hist_item / hist_cate (/ hist_fields) / hist_mask with behaviour (b, t) repeated
    copies[b, t] times, in order, left-aligned in a (B, W) window."""
    b, t = copies.shape
    flat = copies.reshape(-1)  # (B·T,)
    rows = torch.arange(b, device=flat.device).repeat_interleave(t)  # (B·T,)
    rows = rows.repeat_interleave(flat)  # (N,)
    counts = copies.sum(dim=1)  # (B,)
    width = max(int(counts.max()) if b else 0, 1)
    starts = torch.cumsum(counts, 0) - counts  # (B,)
    pos = torch.arange(rows.shape[0], device=flat.device) - starts[rows]  # (N,)
    out: dict[str, torch.Tensor] = {}
    for name in ("hist_item", "hist_cate"):
        values = getattr(batch, name).reshape(-1).repeat_interleave(flat)  # (N,)
        grid = values.new_zeros(b, width)  # (B, W)
        grid[rows, pos] = values
        out[name] = grid
    if batch.hist_fields is not None:  # extra behaviour fields (B, T, F) move with the rest
        f = batch.hist_fields.shape[2]
        values = batch.hist_fields.reshape(-1, f).repeat_interleave(flat, dim=0)  # (N, F)
        grid = values.new_zeros(b, width, f)  # (B, W, F)
        grid[rows, pos] = values
        out["hist_fields"] = grid
    mask = torch.zeros(b, width, dtype=torch.bool, device=flat.device)  # (B, W)
    mask[rows, pos] = True
    out["hist_mask"] = mask
    return out


# §6.5 keeps the 20 million most frequent of 0.6 billion goods ids; the default K keeps the
# same share of the dataset's item vocabulary (at least one id).
FILTER_KEEP_SHARE = 20 / 600


def filter_k(n_items: int, top_k: int) -> int:
    """The item ids the filter keeps: `top_k`, or the paper's share of `n_items` when 0."""
    k = top_k if top_k > 0 else max(1, round(FILTER_KEEP_SHARE * n_items))
    return min(k, n_items)


def filter_item_map(item_freq: torch.Tensor, top_k: int) -> tuple[torch.Tensor, int]:
    """Map (N+1,) item ids: the top_k most frequent keep a dense id 1..K (in id order), the rest
    are thrown away as in §6.5 (they become padding, 0). Returns the map and the model's item
    vocabulary size K."""
    n = int(item_freq.shape[0]) - 1
    if top_k >= n:
        return torch.arange(n + 1, dtype=torch.long), n
    freq = item_freq[1:].long()  # (N,)
    # stable descending sort → ties keep the smaller id
    order = torch.sort(-freq, stable=True).indices + 1  # (N,) ids, most frequent first
    kept = torch.sort(order[:top_k]).values  # (K,)
    mapping = torch.zeros(n + 1, dtype=torch.long)
    mapping[kept] = torch.arange(1, top_k + 1)
    return mapping, top_k


def fill_item_filter(model: nn.Module, cfg: TrainConfig, item_freq: torch.Tensor) -> None:
    """`--reg filter`: fill the model's item maps (`ItemMap` buffers, sized by its config's
    `item_filter`) from the training item frequencies; a no-op for any other `--reg`.

    A dropped id reaches the tables as padding: its item embedding is the zero row, while the
    behaviour's category stays."""
    if cfg.reg != "filter":
        return
    n_items = int(item_freq.shape[0]) - 1
    mapping = filter_item_map(item_freq, filter_k(n_items, cfg.filter_top_k))[0]
    for module in model.modules():
        if isinstance(module, ItemMap):
            module.ids.copy_(mapping)


# ---------------------------------------------------------------- one object per --reg


class Regularizer(Protocol):
    """What the loop sees of a regulariser."""

    dense_grads: bool  # needs dense embedding gradients (whole-table penalties)

    def training_batch(self, batch: Batch) -> Batch:
        """The batch as the model sees it in a training step."""
        ...

    def penalty(self, tables: Tables, batch: Batch) -> torch.Tensor | float:
        """The term added to the loss of a training step."""
        ...


class NoPenalty:
    """`none` and `filter` (the filter acts through the model's item map); the others
    override what they change: the batch a step sees, the penalty, dense gradients."""

    dense_grads = False  # True: needs dense embedding gradients (whole-table penalties)

    def training_batch(self, batch: Batch) -> Batch:
        return batch

    def penalty(self, tables: Tables, batch: Batch) -> torch.Tensor | float:
        return 0.0


@dataclass
class MiniBatchAware(NoPenalty):
    """`mba`: Eq. (6) over the ids of the (global) batch."""

    lam: float
    freqs: dict[str, torch.Tensor]
    union: Callable[[torch.Tensor], torch.Tensor] | None = None

    def penalty(self, tables: Tables, batch: Batch) -> torch.Tensor | float:
        return mba_penalty(tables, batch, self.freqs, self.lam, self.union)


@dataclass
class WholeTableL2(NoPenalty):
    """`l2`: λ·Σ‖W‖² over every table, every step (dense gradients by definition)."""

    lam: float
    dense_grads = True

    def penalty(self, tables: Tables, batch: Batch) -> torch.Tensor | float:
        return l2_penalty(tables, self.lam)


@dataclass
class DiFacto(NoPenalty):
    """`difacto`: frequency-adaptive L2 of the batch's ids."""

    lam: float

    def penalty(self, tables: Tables, batch: Batch) -> torch.Tensor | float:
        return difacto_penalty(tables, batch, self.lam)


@dataclass
class BehaviourDropout(NoPenalty):
    """`dropout`: each behaviour of a training sample is dropped with probability `rate`."""

    rate: float
    generator: torch.Generator

    def training_batch(self, batch: Batch) -> Batch:
        return behaviour_dropout(batch, self.rate, self.generator)


def make_regularizer(
    cfg: TrainConfig,
    freqs: dict[str, torch.Tensor],
    generator: torch.Generator,
    union: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Regularizer:
    """The regulariser `cfg.reg` names, with its λ / rate; `freqs` are MBA's n_j per id space,
    `generator` drives behaviour dropout, `union` merges ids over DDP ranks."""
    if cfg.reg == "mba":
        return MiniBatchAware(cfg.reg_lambda, freqs, union)
    if cfg.reg == "l2":
        return WholeTableL2(cfg.reg_lambda)
    if cfg.reg == "difacto":
        return DiFacto(cfg.reg_lambda)
    if cfg.reg == "dropout":
        return BehaviourDropout(cfg.dropout_rate, generator)
    return NoPenalty()


def model_item_vocab(cfg: TrainConfig, n_items: int) -> int:
    """The item vocabulary the model's tables need: the dataset's, or the filter's kept ids."""
    if cfg.reg == "filter":
        return filter_k(n_items, cfg.filter_top_k)
    return n_items
