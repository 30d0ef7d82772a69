"""Regularisers against hand-computed values: each test fails if the penalty is wrong."""

from __future__ import annotations

import pytest
import torch

from dinctl.data.batching import Batch
from dinctl.models import ModelConfig, build_model
from dinctl.training.loop import bce_loss
from dinctl.training.regularizers import (
    behaviour_dropout,
    difacto_penalty,
    fill_item_filter,
    filter_item_map,
    l2_penalty,
    mba_penalty,
)

N_ITEMS, N_CATES = 9, 4


def _batch() -> Batch:
    t = torch.tensor
    hist_item = t([[1, 2, 2], [3, 0, 0]])
    hist_cate = t([[1, 2, 2], [1, 0, 0]])
    return Batch(
        user=t([1, 2]),
        item=t([4, 2]),
        cate=t([3, 2]),
        hist_item=hist_item,
        hist_cate=hist_cate,
        hist_mask=hist_item > 0,
        label=t([1.0, 0.0]),
    )


def _model(name: str = "din") -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(
        model=name, n_users=2, n_items=N_ITEMS, n_cates=N_CATES, emb_dim=4, act="prelu"
    )
    return build_model(cfg)


FREQS = {
    "item": torch.tensor([0, 5, 2, 4, 1, 7, 7, 7, 7, 7]),
    "cate": torch.tensor([0, 10, 3, 6, 2]),
}
ITEMS_IN_BATCH = [1, 2, 3, 4]
CATES_IN_BATCH = [1, 2, 3]


def test_mba_penalty_value_counts_each_present_row_once() -> None:
    model = _model()
    tables = dict((vocab, table) for _, table, vocab in model.sparse_tables())
    lam = 0.3
    want = 0.0
    for vocab, present in (("item", ITEMS_IN_BATCH), ("cate", CATES_IN_BATCH)):
        w = tables[vocab].weight.detach()
        want += sum(float(w[j].pow(2).sum()) / int(FREQS[vocab][j]) for j in present)
    got = mba_penalty(model.sparse_tables(), _batch(), FREQS, lam)
    assert float(got.detach()) == pytest.approx(0.5 * lam * want, rel=1e-6)  # (λ/2)·Σ


def test_mba_sgd_step_leaves_absent_rows_bitwise_untouched() -> None:
    model = _model()
    before = {vocab: table.weight.detach().clone() for _, table, vocab in model.sparse_tables()}
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    mba_penalty(model.sparse_tables(), _batch(), FREQS, 10.0).backward()
    opt.step()
    for _, table, vocab in model.sparse_tables():
        present = ITEMS_IN_BATCH if vocab == "item" else CATES_IN_BATCH
        n_rows = table.weight.shape[0]
        absent = [j for j in range(n_rows) if j not in present]
        assert torch.equal(table.weight[absent], before[vocab][absent])  # bitwise
        assert not torch.equal(table.weight[present], before[vocab][present])


def test_one_sgd_step_equals_the_hand_computed_update() -> None:
    """w_j ← w_j − lr·(∂loss/∂w_j + 2λ·w_j/n_j) for present rows; absent rows keep w_j."""
    lam, lr = 0.2, 0.1
    batch = _batch()
    model = _model()
    loss_grads = {}
    bce_loss(model(batch).logits, batch.label).backward()
    for _, table, vocab in model.sparse_tables():
        loss_grads[vocab] = table.weight.grad.clone()
        table.weight.grad = None
    before = {vocab: table.weight.detach().clone() for _, table, vocab in model.sparse_tables()}

    model.zero_grad(set_to_none=True)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    loss = bce_loss(model(batch).logits, batch.label)
    (loss + mba_penalty(model.sparse_tables(), batch, FREQS, lam)).backward()
    opt.step()
    for _, table, vocab in model.sparse_tables():
        w0 = before[vocab]
        present = torch.zeros(w0.shape[0], dtype=torch.bool)
        present[ITEMS_IN_BATCH if vocab == "item" else CATES_IN_BATCH] = True
        n = FREQS[vocab].clamp(min=1).float().unsqueeze(1)
        reg_grad = torch.where(present.unsqueeze(1), lam * w0 / n, torch.zeros_like(w0))  # Eq. (7)
        want = w0 - lr * (loss_grads[vocab] + reg_grad)
        torch.testing.assert_close(table.weight.detach(), want, rtol=1e-6, atol=1e-7)


def test_mba_ignores_padding_row() -> None:
    model = _model()
    item_table = model.sparse_tables()[0][1]
    a = mba_penalty(model.sparse_tables(), _batch(), FREQS, 1.0)
    with torch.no_grad():
        item_table.weight[0] = 100.0
    b = mba_penalty(model.sparse_tables(), _batch(), FREQS, 1.0)
    assert float(a.detach()) == float(b.detach())


def test_l2_covers_whole_tables() -> None:
    model = _model()
    want = sum(float(t.weight.detach().pow(2).sum()) for _, t, _ in model.sparse_tables())
    got = l2_penalty(model.sparse_tables(), 0.5)
    assert float(got.detach()) == pytest.approx(0.5 * want, rel=1e-6)
    got.backward()
    item_table = model.sparse_tables()[0][1]
    assert bool((item_table.weight.grad[1:] != 0).all())  # every row, present or not


def test_difacto_scales_by_in_batch_sample_counts() -> None:
    model = _model()
    tables = {vocab: table.weight.detach() for _, table, vocab in model.sparse_tables()}
    # samples containing each id: items {1,2,4} in row 0 and {3,2} in row 1 → item 2 twice;
    # cates {1,2,3} in row 0 and {1,2} in row 1 → cates 1 and 2 twice
    counts = {"item": {1: 1, 2: 2, 3: 1, 4: 1}, "cate": {1: 2, 2: 2, 3: 1}}
    want = sum(
        c * float(tables[v][j].pow(2).sum()) for v, per in counts.items() for j, c in per.items()
    )
    got = difacto_penalty(model.sparse_tables(), _batch(), 0.7)
    assert float(got.detach()) == pytest.approx(0.5 * 0.7 * want / 2, rel=1e-6)  # (λ/2)·Σ c_j/B


def _hist_batch(hist: torch.Tensor, mask: torch.Tensor) -> Batch:
    b = hist.shape[0]
    return Batch(
        user=torch.zeros(b, dtype=torch.long),
        item=torch.ones(b, dtype=torch.long),
        cate=torch.ones(b, dtype=torch.long),
        hist_item=hist * mask,
        hist_cate=(hist + 100) * mask,
        hist_mask=mask,
        label=torch.zeros(b),
    )


def test_behaviour_dropout_keeps_half_and_counts_each_kept_one_twice() -> None:
    torch.manual_seed(0)
    hist = torch.randint(1, 9, (64, 50))
    mask = torch.arange(50).unsqueeze(0) < torch.randint(10, 51, (64, 1))  # (64, 50) padded
    batch = _hist_batch(hist, mask)
    out = behaviour_dropout(batch, 0.5, torch.Generator().manual_seed(1))
    kept = out.hist_mask.sum().item() / 2 / mask.sum().item()
    assert 0.45 < kept < 0.55
    assert torch.equal(out.hist_item == 0, ~out.hist_mask)  # dropped ids and padding are 0
    assert torch.equal(out.hist_cate - 100 * out.hist_mask, out.hist_item)  # pairs stay pairs
    for r in range(64):
        got = out.hist_item[r][out.hist_mask[r]]
        assert torch.equal(got[0::2], got[1::2])  # every kept behaviour exactly twice, in order
        original = hist[r][mask[r]].tolist()
        it = iter(original)  # the kept ones are a subsequence of the row's behaviours
        assert all(any(x == y for y in it) for x in got[0::2].tolist())
    again = behaviour_dropout(batch, 0.5, torch.Generator().manual_seed(1))
    assert torch.equal(out.hist_item, again.hist_item)
    assert torch.equal(batch.hist_mask, mask)  # input untouched


@pytest.mark.parametrize("rate", [0.5, 0.3])
def test_behaviour_dropout_leaves_the_expected_pooled_vector_unchanged(rate: float) -> None:
    """Inverted scaling: E[Σ kept embeddings] over dropout draws = the undropped sum pooling."""
    torch.manual_seed(0)
    table = torch.randn(9, 4)  # (V, D)
    hist = torch.randint(1, 9, (8, 12))
    mask = torch.arange(12).unsqueeze(0) < torch.tensor([[12], [9], [5], [1], [12], [7], [3], [10]])
    batch = _hist_batch(hist, mask)

    def pooled(b: Batch) -> torch.Tensor:
        return (table[b.hist_item] * b.hist_mask.unsqueeze(-1)).sum(dim=1)  # (B, D)

    g = torch.Generator().manual_seed(2)
    draws = 4000
    mean = sum(pooled(behaviour_dropout(batch, rate, g)) for _ in range(draws)) / draws
    want = pooled(batch)
    assert torch.allclose(mean, want, atol=0.15), (mean - want).abs().max()
    unscaled = want * (1 - rate)  # what dropping without rescaling gives
    assert (mean - want).abs().mean() < (mean - unscaled).abs().mean() / 4


def test_filter_map_keeps_top_k_and_throws_the_rest_away() -> None:
    freq = torch.tensor([0, 5, 9, 1, 9, 3])  # ids 2 and 4 tie at 9, then id 1 at 5
    mapping, n = filter_item_map(freq, 3)
    assert n == 3
    assert mapping.tolist() == [0, 1, 2, 0, 3, 0]  # kept ids 1, 2, 4 → 1, 2, 3; ids 3, 5 → padding
    same, n_all = filter_item_map(freq, 10)
    assert n_all == 5 and same.tolist() == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("name", ["din", "base", "lr", "wide-deep", "pnn", "deepfm"])
def test_item_filter_is_a_buffer_that_feeds_mapped_ids(name: str) -> None:
    """A `--reg filter` model is the registry model with an item map buffer: equal to the
    unfiltered model (same weights) fed the mapped ids, with the same tables."""
    from dataclasses import replace

    from dinctl.training.config import TrainConfig

    torch.manual_seed(0)
    cfg = ModelConfig(model=name, n_users=2, n_items=3, n_cates=N_CATES, emb_dim=4)
    filtered = build_model(replace(cfg, item_filter=N_ITEMS))
    freq = torch.tensor([0, 1, 9, 8, 7, 0, 0, 0, 0, 0])  # items 2, 3, 4 kept → 1, 2, 3
    fill_item_filter(filtered, TrainConfig(data="x", reg="filter", filter_top_k=3), freq)
    mapping = torch.tensor([0, 0, 1, 2, 3, 0, 0, 0, 0, 0])
    for p in filtered.parameters():  # non-zero linear weights so every table counts
        with torch.no_grad():
            p.add_(0.1 * torch.randn_like(p))
    plain = build_model(cfg)
    assert type(filtered) is type(plain)
    plain.load_state_dict(
        {k: v for k, v in filtered.state_dict().items() if not k.endswith("item_map.ids")}
    )
    filtered.eval(), plain.eval()
    batch = _batch()
    mapped = Batch(
        **{**batch.__dict__, "item": mapping[batch.item], "hist_item": mapping[batch.hist_item]}
    )
    torch.testing.assert_close(filtered(batch).logits, plain(mapped).logits)
    assert [n for n, _, _ in filtered.sparse_tables()] == [n for n, _, _ in plain.sparse_tables()]


@pytest.mark.parametrize("name", ["lr", "deepfm"])
def test_mba_per_field_tables_touch_only_the_ids_their_field_saw(name: str) -> None:
    """LR / DeepFM keep separate candidate and history weight tables: MBA must penalise a
    candidate table only at candidate ids and a history table only at behaviour ids."""
    from dinctl.data.batching import Batch
    from dinctl.models import ModelConfig, build_model

    model = build_model(ModelConfig(model=name, n_users=1, n_items=9, n_cates=4))
    batch = Batch(
        user=torch.tensor([1]),
        item=torch.tensor([2]),
        cate=torch.tensor([1]),
        hist_item=torch.tensor([[5, 7, 0]]),
        hist_cate=torch.tensor([[3, 3, 0]]),
        hist_mask=torch.tensor([[True, True, False]]),
        label=torch.tensor([1.0]),
    )
    freqs = {"item": torch.ones(10, dtype=torch.long), "cate": torch.ones(5, dtype=torch.long)}
    for _, table, _ in model.sparse_tables():
        table.weight.data.normal_()  # nonzero rows everywhere, so a gradient shows a touch
    mba_penalty(model.sparse_tables(), batch, freqs, 1.0).backward()
    expect = {"item.cand": [2], "item.hist": [5, 7], "cate.cand": [1], "cate.hist": [3]}
    checked = 0
    for _, table, vocab in model.sparse_tables():
        if vocab in expect:
            touched = table.weight.grad.abs().sum(dim=1).nonzero().flatten().tolist()
            assert touched == expect[vocab], vocab
            checked += 1
    assert checked == 4


def test_a_filter_run_saved_by_the_old_wrapper_still_loads() -> None:
    """Runs written when `--reg filter` wrapped the model (`inner.*` weights, a top-level
    `item_map`) load into the model with the map as a buffer."""
    from dinctl.training.checkpoint import load_model_state

    cfg = ModelConfig(model="din", n_users=2, n_items=3, n_cates=N_CATES, emb_dim=4,
                      item_filter=N_ITEMS)  # fmt: skip
    saved = build_model(cfg)
    old_map = torch.tensor([0, 0, 1, 2, 3, 0, 0, 0, 0, 1])
    old = {f"inner.{k}": v for k, v in saved.state_dict().items() if "item_map" not in k}
    loaded = build_model(cfg)
    load_model_state(loaded, {**old, "item_map": old_map})
    assert loaded.emb.item_map.ids.tolist() == old_map.tolist()
    torch.testing.assert_close(loaded.emb.item.weight, saved.emb.item.weight)
