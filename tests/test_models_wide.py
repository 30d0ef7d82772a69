"""Wide&Deep's cross-product rows: exact when the cross fits the table, a good hash otherwise."""

from __future__ import annotations

import math

import torch

from dinctl.models import ModelConfig, WideDeep, build_model
from dinctl.models.competitors import cross_hash, cross_index
from dinctl.models.layers import PackedHistory
from tests.test_models import config, make_batch

AMAZON_CATES = 801  # Amazon Electronics: 801 categories → 641,601 category pairs


def all_pairs(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.arange(1, n + 1)
    return ids.repeat_interleave(n), ids.repeat(n)  # (n²,), (n²,)


def test_category_cross_is_exact_when_the_table_holds_every_pair() -> None:
    left, right = all_pairs(AMAZON_CATES)
    rows = cross_index(left, right, AMAZON_CATES + 1, AMAZON_CATES + 1, 1 << 20)
    assert rows.numel() == 641_601
    assert rows.unique().numel() == 641_601  # no collisions
    assert int(rows.min()) >= 0 and int(rows.max()) < 1 << 20
    # the legacy hash put the same pairs into about half as many rows
    assert cross_hash(left, right, 1 << 20).unique().numel() == 324_776


def balls_into_bins_rows(balls: int, bins: int) -> float:
    """Expected number of occupied rows when `balls` keys land uniformly in `bins` rows."""
    return bins * (1 - math.exp(-balls / bins))


def test_category_cross_spreads_evenly_in_a_small_table() -> None:
    left, right = all_pairs(AMAZON_CATES)
    buckets = 1 << 16  # 641,601 pairs into 65,536 rows: ~9.8 per row
    rows = cross_index(left, right, AMAZON_CATES + 1, AMAZON_CATES + 1, buckets)
    assert int(rows.min()) >= 0 and int(rows.max()) < buckets
    load = torch.bincount(rows, minlength=buckets).double()
    mean = left.numel() / buckets
    assert int((load == 0).sum()) < 50  # e^-9.8 · 65,536 ≈ 4 empty rows expected
    assert float(load.max()) < mean + 6 * math.sqrt(mean)  # Poisson tail, no hot rows
    assert float(load.std()) < 1.2 * math.sqrt(mean)  # spread like uniform random rows


def test_item_cross_hash_occupies_rows_like_a_uniform_hash() -> None:
    n_items, buckets = 63_001, 1 << 20  # Amazon's items: 4·10⁹ pairs cannot be exact
    gen = torch.Generator().manual_seed(0)
    left = torch.randint(1, n_items + 1, (641_601,), generator=gen)
    right = torch.randint(1, n_items + 1, (641_601,), generator=gen)
    keys = (left * (n_items + 1) + right).unique()
    left, right = keys // (n_items + 1), keys % (n_items + 1)
    rows = cross_index(left, right, n_items + 1, n_items + 1, buckets)
    assert int(rows.min()) >= 0 and int(rows.max()) < buckets
    expected = balls_into_bins_rows(keys.numel(), buckets)
    assert abs(rows.unique().numel() - expected) < 0.005 * expected
    # structured ids (a user's consecutive items against one candidate) spread too
    near = cross_index(
        torch.arange(1, 5001), torch.full((5000,), 7), n_items + 1, n_items + 1, buckets
    )
    assert near.unique().numel() >= 4990


def test_wide_deep_reads_the_exact_category_row() -> None:
    # 30 items, 6 categories: 7 × 7 category pairs fit in 49 rows; 31 × 31 item pairs are hashed
    cfg = config("wide-deep", n_users=3, wide_buckets=49)
    model = build_model(cfg)
    assert isinstance(model, WideDeep) and model.wide_item is not None
    batch = make_batch([5], [2], [[3, 8]], [[1, 4]], [[True, False]])
    with torch.no_grad():
        model.wide_cate.weight[1 * 7 + 2] = 0.75  # behaviour category 1 × candidate category 2
        model.wide_item.weight.zero_()
    assert model.wide(batch, PackedHistory(batch)).item() == 0.75


def test_old_runs_keep_the_legacy_cross_hash() -> None:
    cfg = ModelConfig(
        model="wide-deep", n_users=3, n_items=30, n_cates=6, emb_dim=4, wide_buckets=97
    ).to_dict()
    del cfg["wide_cross"]  # a config.json written before the option existed
    old = ModelConfig.from_dict(cfg)
    assert old.wide_cross == "legacy"
    model = build_model(old)
    assert isinstance(model, WideDeep)
    behaviour, candidate = torch.tensor([3, 4]), torch.tensor([5, 5])
    torch.testing.assert_close(
        model.cross(behaviour, candidate, 30), cross_hash(behaviour, candidate, 97)
    )
