"""Models: shapes, padding invariance, attention, Dice (Eq. 9), and each model against an oracle."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from dinctl.data.batching import Batch
from dinctl.errors import DinctlError
from dinctl.models import (
    ACTS,
    MODEL_NAMES,
    MODELS,
    DeepFM,
    ModelConfig,
    ModelOutput,
    WideDeep,
    build_model,
)
from dinctl.models.competitors import cross_hash
from dinctl.models.layers import (
    ActivationUnit,
    Dice,
    PackedHistory,
    PaddedHistory,
    PReLU,
    activation,
)

N_ITEMS, N_CATES = 30, 6


def config(model: str, **overrides: object) -> ModelConfig:
    base: dict[str, object] = dict(
        model=model,
        n_users=5,
        n_items=N_ITEMS,
        n_cates=N_CATES,
        emb_dim=4,
        attn_hidden=(8, 4),
        mlp_hidden=(10, 6),
        wide_buckets=97,
    )
    base.update(overrides)
    return ModelConfig(**base)  # type: ignore[arg-type]


def randomised(model: nn.Module, seed: int = 0) -> nn.Module:
    """Every parameter and Dice statistic random, padding rows included, so that only the mask
    can keep padding out of a logit."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
        for m in model.modules():
            if isinstance(m, Dice):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
    return model


def make_batch(
    item: list[int],
    cate: list[int],
    hist_item: list[list[int]],
    hist_cate: list[list[int]],
    mask: list[list[bool]],
) -> Batch:
    b = len(item)
    return Batch(
        user=torch.ones(b, dtype=torch.long),
        item=torch.tensor(item),
        cate=torch.tensor(cate),
        hist_item=torch.tensor(hist_item, dtype=torch.long).view(b, -1),
        hist_cate=torch.tensor(hist_cate, dtype=torch.long).view(b, -1),
        hist_mask=torch.tensor(mask, dtype=torch.bool).view(b, -1),
        label=torch.zeros(b),
    )


def random_batch(b: int, t: int, seed: int = 0) -> Batch:
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, t + 1, (b,), generator=gen)
    mask = torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)
    hist_item = torch.randint(1, N_ITEMS + 1, (b, t), generator=gen) * mask
    hist_cate = torch.randint(1, N_CATES + 1, (b, t), generator=gen) * mask
    return Batch(
        user=torch.ones(b, dtype=torch.long),
        item=torch.randint(1, N_ITEMS + 1, (b,), generator=gen),
        cate=torch.randint(1, N_CATES + 1, (b,), generator=gen),
        hist_item=hist_item,
        hist_cate=hist_cate,
        hist_mask=mask,
        label=torch.zeros(b),
    )


# --- registry, config, shapes -----------------------------------------------------------------


def test_registry_holds_every_model_name() -> None:
    assert tuple(MODELS) == MODEL_NAMES
    assert {"din", "base", "lr", "wide-deep", "pnn", "deepfm"} <= set(MODEL_NAMES)  # the paper's


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("act", ACTS)
def test_forward_shapes_and_backward(name: str, act: str) -> None:
    model = build_model(config(name, act=act))
    out = model(random_batch(7, 5))
    assert isinstance(out, ModelOutput)
    assert out.logits.shape == (7,) and out.logits.dtype == torch.float32
    assert torch.isfinite(out.logits).all()
    if name == "din":
        assert out.attention is not None and out.attention.shape == (7, 5)
    else:
        assert out.attention is None
    out.logits.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_models_run_under_bfloat16_autocast(name: str) -> None:
    model = build_model(config(name, act="dice")).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(random_batch(6, 5))
    assert torch.isfinite(out.logits.float()).all()
    for m in model.modules():
        if isinstance(m, Dice):
            assert m.running_mean.dtype == torch.float32


def test_empty_histories_are_scored() -> None:
    batch = random_batch(3, 4)
    batch.hist_mask[:] = False
    for name in MODEL_NAMES:
        out = build_model(config(name, act="dice")).train()(batch)
        assert torch.isfinite(out.logits).all(), name


def test_config_round_trips_through_json() -> None:
    cfg = config("din", act="dice", attn_softmax=True, use_item_ids=False)
    again = ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert again.attn_hidden == (8, 4)


def test_config_errors_name_the_value() -> None:
    with pytest.raises(DinctlError, match="unknown model 'xgb'; expected one of din, base, lr"):
        config("xgb")
    with pytest.raises(DinctlError, match="unknown activation 'tanh'; expected one of prelu, dice"):
        config("din", act="tanh")
    with pytest.raises(DinctlError, match="unknown mlp_act 'tanh'; expected one of auto, same"):
        config("din", mlp_act="tanh")
    with pytest.raises(DinctlError, match="n_items must be at least 1, got 0 instead"):
        config("din", n_items=0)
    with pytest.raises(DinctlError, match=r"unknown model config keys \['colour'\]"):
        ModelConfig.from_dict({**config("din").to_dict(), "colour": 1})


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_sparse_tables_cover_every_id_table(name: str) -> None:
    model = build_model(config(name))
    tables = model.sparse_tables()
    assert {vocab.partition(".")[0] for _, _, vocab in tables} == {"item", "cate"}
    for _, table, vocab in tables:
        base = vocab.partition(".")[0]
        assert table.num_embeddings == (N_ITEMS if base == "item" else N_CATES) + 1
    listed = {id(t) for _, t, _ in tables}
    raw_id_tables = [
        m for m in model.modules() if isinstance(m, nn.Embedding) and m.num_embeddings != 97
    ]
    assert {id(m) for m in raw_id_tables} == listed  # hashed cross tables (97 rows) excluded


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_without_item_ids_the_item_ids_are_ignored(name: str) -> None:
    model = randomised(build_model(config(name, use_item_ids=False))).eval()
    assert all(vocab.partition(".")[0] == "cate" for _, _, vocab in model.sparse_tables())
    batch = random_batch(6, 5)
    other = random_batch(6, 5)
    moved = Batch(**{**batch.__dict__, "item": other.item, "hist_item": other.hist_item})
    torch.testing.assert_close(model(batch).logits, model(moved).logits)


# --- padding invariance and row independence ---------------------------------------------------


@st.composite
def padded_batches(draw: st.DrawFn) -> tuple[Batch, Batch]:
    """A batch and a copy whose padded ids are scrambled and that has extra padded columns."""
    b = draw(st.integers(1, 5))
    t = draw(st.integers(1, 6))
    ids = st.integers(1, N_ITEMS)
    cids = st.integers(1, N_CATES)
    mask = draw(st.lists(st.lists(st.booleans(), min_size=t, max_size=t), min_size=b, max_size=b))
    hist_item = [[draw(ids) if m else 0 for m in row] for row in mask]
    hist_cate = [[draw(cids) if m else 0 for m in row] for row in mask]
    item = draw(st.lists(ids, min_size=b, max_size=b))
    cate = draw(st.lists(cids, min_size=b, max_size=b))
    extra = draw(st.integers(0, 3))
    mask2 = [row + [False] * extra for row in mask]
    noise_item = [[draw(ids) for _ in range(t + extra)] for _ in range(b)]
    noise_cate = [[draw(cids) for _ in range(t + extra)] for _ in range(b)]
    hist_item2 = [
        [h if m else n for h, m, n in zip(row + [0] * extra, mrow, nrow, strict=True)]
        for row, mrow, nrow in zip(hist_item, mask2, noise_item, strict=True)
    ]
    hist_cate2 = [
        [h if m else n for h, m, n in zip(row + [0] * extra, mrow, nrow, strict=True)]
        for row, mrow, nrow in zip(hist_cate, mask2, noise_cate, strict=True)
    ]
    return (
        make_batch(item, cate, hist_item, hist_cate, mask),
        make_batch(item, cate, hist_item2, hist_cate2, mask2),
    )


EVAL_MODELS = {
    (name, act): randomised(build_model(config(name, act=act))).eval()
    for name in MODEL_NAMES
    for act in ACTS
}
# tower and unit activations apart, the other init, the summed FM term
EVAL_MODELS.update(
    {
        (name, f"{act}+{tower}"): randomised(
            build_model(config(name, act=act, mlp_act=tower, linear_init="xavier"))
        ).eval()
        for name in ("din", "base")
        for act, tower in (("dice", "prelu"), ("dice", "relu"), ("prelu", "dice"))
    }
)
EVAL_MODELS[("deepfm", "sum-fm")] = randomised(build_model(config("deepfm", fm_pooling="sum")))
EVAL_MODELS[("deepfm", "sum-fm")].eval()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pair=padded_batches())
def test_padding_never_changes_a_logit(pair: tuple[Batch, Batch]) -> None:
    clean, noisy = pair
    for (name, act), model in EVAL_MODELS.items():
        a, b = model(clean), model(noisy)
        torch.testing.assert_close(a.logits, b.logits, msg=f"{name}/{act}")
        if a.attention is not None and b.attention is not None:
            t = a.attention.shape[1]
            torch.testing.assert_close(a.attention, b.attention[:, :t])
            assert (b.attention[:, t:] == 0).all()


@settings(max_examples=25, deadline=None)
@given(pair=padded_batches())
def test_din_dice_train_mode_ignores_padding(pair: tuple[Batch, Batch]) -> None:
    clean, noisy = pair
    model = randomised(build_model(config("din", act="dice"))).train()
    torch.testing.assert_close(model(clean).logits, model(noisy).logits)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_eval_scores_each_row_independently(name: str) -> None:
    model = EVAL_MODELS[(name, "dice")]
    batch = random_batch(6, 5, seed=3)
    together = model(batch).logits
    for r in range(6):
        t = max(int(batch.hist_mask[r].sum()), 1)
        alone = Batch(**{k: v[r : r + 1] for k, v in batch.__dict__.items() if v is not None})
        alone.hist_item, alone.hist_cate = alone.hist_item[:, :t], alone.hist_cate[:, :t]
        alone.hist_mask = alone.hist_mask[:, :t]
        torch.testing.assert_close(model(alone).logits, together[r : r + 1])


def test_padding_rows_get_no_gradient() -> None:
    model = randomised(build_model(config("din", act="dice"))).train()
    batch = make_batch([1], [1], [[2, 7]], [[1, 3]], [[True, False]])
    model(batch).logits.sum().backward()
    grad = model.emb.item.weight.grad
    assert grad[7].abs().sum() == 0 and grad[2].abs().sum() > 0
    assert model.emb.cate.weight.grad[3].abs().sum() == 0


# --- attention --------------------------------------------------------------------------------


def test_attention_is_unnormalised_and_zero_at_padding() -> None:
    model = EVAL_MODELS[("din", "prelu")]
    batch = random_batch(8, 6, seed=1)
    att = model(batch).attention
    assert att is not None
    assert (att[~batch.hist_mask] == 0).all()
    sums = att.sum(1)[batch.hist_mask.any(1)]
    assert not torch.allclose(sums, torch.ones_like(sums))


def test_attention_softmax_sums_to_one_over_valid_positions() -> None:
    model = randomised(build_model(config("din", attn_softmax=True))).eval()
    batch = random_batch(8, 6, seed=1)
    att = model(batch).attention
    assert att is not None
    assert (att[~batch.hist_mask] == 0).all()
    valid = batch.hist_mask.any(1)
    torch.testing.assert_close(att.sum(1)[valid], torch.ones(int(valid.sum())))
    assert (att.sum(1)[~valid] == 0).all()


def test_softmax_matches_the_authors_scaled_masked_softmax() -> None:
    cfg = config("din", attn_softmax=True)
    soft = randomised(build_model(cfg)).eval()
    raw = build_model(config("din"))
    raw.load_state_dict(soft.state_dict())
    raw.eval()
    batch = random_batch(5, 4, seed=2)
    scores = raw(batch).attention
    assert scores is not None
    e = 2 * cfg.emb_dim
    masked = (scores / math.sqrt(e)).masked_fill(~batch.hist_mask, -(2.0**32) + 1)
    expected = torch.softmax(masked, dim=1) * batch.hist_mask
    torch.testing.assert_close(soft(batch).attention, expected)


def test_din_pools_history_with_attention_weights() -> None:
    """Eq. (3): the MLP sees Σ_j a_j·e_j ⊕ v_A."""
    model = EVAL_MODELS[("din", "sigmoid")]
    batch = random_batch(4, 5, seed=4)
    out = model(batch)
    e = model.emb(batch.hist_item, batch.hist_cate) * batch.hist_mask.unsqueeze(-1)  # (B, T, E)
    interest = (out.attention.unsqueeze(-1) * e).sum(1)
    candidate = model.emb(batch.item, batch.cate)
    expected = model.mlp(torch.cat([interest, candidate], dim=-1)).squeeze(-1)
    torch.testing.assert_close(out.logits, expected)


def test_activation_unit_equals_the_concatenated_input_network() -> None:
    """The algebraic split of the first layer, for C candidates per request, in both history
    layouts (packed valid behaviours for training, padded positions for serving)."""
    torch.manual_seed(0)
    lengths = torch.tensor([2, 2, 3])
    mask = torch.arange(3).unsqueeze(0) < lengths.unsqueeze(1)  # (R, T) = (3, 3)
    ones = torch.ones(3, dtype=torch.long)
    batch = Batch(user=ones, item=ones, cate=ones, hist_item=mask.long(), hist_cate=mask.long(),
                  hist_mask=mask, label=ones.float())  # fmt: skip
    layouts = [
        (PackedHistory(batch), torch.tensor([0, 0, 1, 1, 2, 2, 2])),
        (PaddedHistory(lengths, mask.shape), torch.arange(3).repeat_interleave(3)),
    ]
    for act in ACTS:
        unit = randomised(ActivationUnit(6, (8, 4), activation(act))).eval()
        queries = torch.randn(3, 2, 6)  # (R, C, E)
        for history, row in layouts:
            keys = torch.randn(row.shape[0], 6)  # (N, E)
            q = queries[row]  # (N, C, E)
            k = keys.unsqueeze(1).expand_as(q)
            h = unit.first(torch.cat([k, q, k - q, k * q], dim=-1))  # (N, C, 80)
            expected = unit.rest(unit.first_act(h)).squeeze(-1)  # (N, C)
            torch.testing.assert_close(unit(queries, keys, history), expected)


# --- Dice -------------------------------------------------------------------------------------


def test_dice_with_zero_statistics_is_prelu() -> None:
    dice, prelu = Dice(3), PReLU(3)
    with torch.no_grad():
        dice.alpha.copy_(torch.tensor([0.1, -0.3, 0.7]))
        prelu.alpha.copy_(dice.alpha)
        dice.running_mean.zero_()
        dice.running_var.zero_()
    dice.eval()
    x = torch.tensor([[0.5, -2.0, 0.01], [-0.01, 3.0, -1.5], [2.0, -0.2, 0.3]])
    torch.testing.assert_close(dice(x), prelu(x))
    torch.testing.assert_close(prelu(x)[0], torch.tensor([0.5, 0.6, 0.01]))


def test_dice_train_mode_is_equation_9_by_hand() -> None:
    dice = Dice(2, eps=1e-8).train()
    with torch.no_grad():
        dice.alpha.copy_(torch.tensor([0.2, 0.5]))
    x = torch.tensor([[1.0, -1.0], [2.0, 0.0], [3.0, 4.0]])
    out = dice(x)
    expected = []
    for row in x.tolist():
        vals = []
        for c, s in enumerate(row):
            col = [r[c] for r in x.tolist()]
            mean = sum(col) / 3
            var = sum((v - mean) ** 2 for v in col) / 3
            p = 1 / (1 + math.exp(-(s - mean) / math.sqrt(var + 1e-8)))
            vals.append(p * s + (1 - p) * [0.2, 0.5][c] * s)
        expected.append(vals)
    torch.testing.assert_close(out, torch.tensor(expected))
    # first column: mean 2, var 2/3, so s = 1 gives p = sigmoid(-1.2247)
    p = 1 / (1 + math.exp(1.224744871))
    assert out[0, 0].item() == pytest.approx(p + (1 - p) * 0.2, rel=1e-5)


def test_dice_eval_uses_running_statistics() -> None:
    dice = Dice(2, momentum=0.1).train()
    with torch.no_grad():
        dice.alpha.copy_(torch.tensor([0.2, 0.5]))
    x = torch.tensor([[1.0, -1.0], [2.0, 0.0], [3.0, 4.0]])
    dice(x)
    mean = x.mean(0)
    var = x.var(0, unbiased=False)
    torch.testing.assert_close(dice.running_mean, 0.1 * mean)
    torch.testing.assert_close(dice.running_var, 0.9 + 0.1 * var)
    dice.eval()
    y = torch.tensor([[0.5, 0.5]])
    p = torch.sigmoid((y - 0.1 * mean) / torch.sqrt(0.9 + 0.1 * var + 1e-8))
    torch.testing.assert_close(dice(y), p * y + (1 - p) * dice.alpha * y)
    # a single row in eval is scored without batch statistics
    torch.testing.assert_close(dice(y), dice(torch.cat([y, 10 * x]))[:1])


def test_dice_masked_statistics_use_valid_positions_only() -> None:
    dice = Dice(3).train()
    x = torch.randn(2, 4, 3)
    mask = torch.tensor([[True, True, False, False], [True, False, True, False]])
    ref = Dice(3).train()
    ref.load_state_dict(dice.state_dict())
    torch.testing.assert_close(dice(x, mask)[mask], ref(x[mask]))
    torch.testing.assert_close(dice.running_mean, ref.running_mean)


def test_dice_fused_2d_training_path_equals_the_general_one() -> None:
    torch.manual_seed(0)
    fused, general = Dice(5, momentum=0.3).train(), Dice(5, momentum=0.3).train()
    with torch.no_grad():
        fused.alpha.copy_(torch.tensor([0.1, -0.2, 0.25, 0.6, 0.0]))
    general.load_state_dict(fused.state_dict())
    x = (torch.randn(64, 5) * torch.tensor([1.0, 3.0, 0.1, 10.0, 1.0])).requires_grad_()
    y = x.detach().clone().requires_grad_()
    weights = torch.randn(64, 5)
    for _ in range(3):  # running statistics move the same way, step after step
        out_f = fused(x)  # no mask: the fused batch-norm path
        out_g = general(y, torch.ones(64, dtype=torch.bool))  # a mask: the var_mean path
        torch.testing.assert_close(out_f, out_g, atol=1e-5, rtol=1e-5)
    (out_f * weights).sum().backward()
    (out_g * weights).sum().backward()
    torch.testing.assert_close(x.grad, y.grad, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(fused.alpha.grad, general.alpha.grad, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(fused.running_mean, general.running_mean)
    torch.testing.assert_close(fused.running_var, general.running_var)


# --- competitors against oracles ----------------------------------------------------------------


def test_lr_equals_a_hand_computed_logit() -> None:
    model = build_model(config("lr"))
    with torch.no_grad():
        model.bias.fill_(0.5)
        model.linear.item.weight[4] = 1.0
        model.linear.cate.weight[2] = -2.0
        model.linear.hist_item.weight[3] = 0.25
        model.linear.hist_item.weight[9] = 100.0  # only at padded positions: never counts
        model.linear.hist_cate.weight[1] = 0.125
    batch = make_batch([4], [2], [[3, 3, 9]], [[1, 5, 1]], [[True, True, False]])
    # 0.5 + 1 − 2 + 2·0.25 (item 3 twice) + 0.125 (cate 1 once; the padded cate 1 skipped)
    assert model(batch).logits.item() == pytest.approx(0.5 + 1 - 2 + 0.5 + 0.125)


def test_wide_part_sees_only_crosses_of_valid_positions() -> None:
    model = build_model(config("wide-deep"))
    assert isinstance(model, WideDeep)
    batch = make_batch([5], [2], [[3, 8]], [[1, 4]], [[True, False]])
    valid_item = int(model.cross(torch.tensor(3), torch.tensor(5), N_ITEMS))
    valid_cate = int(model.cross(torch.tensor(1), torch.tensor(2), N_CATES))
    padded_item = int(model.cross(torch.tensor(8), torch.tensor(5), N_ITEMS))
    padded_cate = int(model.cross(torch.tensor(4), torch.tensor(2), N_CATES))
    assert len({valid_item, padded_item}) == 2 and len({valid_cate, padded_cate}) == 2
    assert model.wide_item is not None
    with torch.no_grad():
        model.wide_bias.fill_(0.1)
        model.wide_item.weight[valid_item] = 1.5
        model.wide_cate.weight[valid_cate] = -0.25
        model.wide_item.weight[padded_item] = 50.0
        model.wide_cate.weight[padded_cate] = 50.0
    wide = model.wide(batch, PackedHistory(batch))
    assert wide.item() == pytest.approx(0.1 + 1.5 - 0.25)
    model.eval()
    with torch.no_grad():
        deep_only = build_model(config("base"))
        deep_only.load_state_dict(
            {k: v for k, v in model.state_dict().items() if not k.startswith("wide")}
        )
        deep_only.eval()
    torch.testing.assert_close(model(batch).logits, deep_only(batch).logits + wide)


def test_cross_hash_is_in_range_and_spreads() -> None:
    left = torch.arange(1, 201).repeat_interleave(50)
    right = torch.arange(1, 51).repeat(200)
    h = cross_hash(left, right, 1 << 20)
    assert h.min() >= 0 and h.max() < 1 << 20
    assert h.unique().numel() > 0.99 * h.numel()


def test_deepfm_fm_term_equals_brute_force_pairs() -> None:
    fields = torch.randn(3, 4, 5)
    brute = torch.zeros(3)
    for i in range(4):
        for j in range(i + 1, 4):
            brute += (fields[:, i] * fields[:, j]).sum(-1)
    torch.testing.assert_close(DeepFM.fm(fields), brute)


@pytest.mark.parametrize("pooling", ["mean", "sum"])
def test_deepfm_logit_is_bias_plus_linear_plus_fm_plus_deep(pooling: str) -> None:
    """The deep part sees sum-pooled history fields; the FM part (first and second order) sees
    them averaged over the valid behaviours (`fm_pooling = mean`) or summed."""
    model = randomised(build_model(config("deepfm", fm_pooling=pooling))).eval()
    batch = random_batch(4, 3, seed=5)
    mask = batch.hist_mask.unsqueeze(-1)
    n = batch.hist_mask.sum(1).clamp(min=1).float() if pooling == "mean" else torch.ones(4)
    f = [
        model.emb.item(batch.item),
        model.emb.cate(batch.cate),
        (model.emb.item(batch.hist_item) * mask).sum(1),
        (model.emb.cate(batch.hist_cate) * mask).sum(1),
    ]
    g = [f[0], f[1], f[2] / n[:, None], f[3] / n[:, None]]
    fm = sum((g[i] * g[j]).sum(-1) for i in range(4) for j in range(i + 1, 4))
    lin = model.linear
    first = (
        lin.item(batch.item).squeeze(-1)
        + lin.cate(batch.cate).squeeze(-1)
        + (lin.hist_item(batch.hist_item).squeeze(-1) * batch.hist_mask).sum(1) / n
        + (lin.hist_cate(batch.hist_cate).squeeze(-1) * batch.hist_mask).sum(1) / n
    )
    deep = model.mlp(torch.cat(f, dim=-1)).squeeze(-1)
    torch.testing.assert_close(model(batch).logits, model.bias + first + fm + deep)


def test_pnn_inner_products_equal_brute_force() -> None:
    model = build_model(config("pnn"))
    fields = torch.randn(2, 4, 5)
    products = model.inner_products(fields)
    brute = [(fields[:, i] * fields[:, j]).sum(-1) for i in range(4) for j in range(i + 1, 4)]
    torch.testing.assert_close(products, torch.stack(brute, dim=1))
    # and the MLP sees [fields ⊕ products]
    model = randomised(model).eval()
    batch = random_batch(3, 4, seed=6)
    mask = batch.hist_mask.unsqueeze(-1)
    f = torch.stack(
        [
            model.emb.item(batch.item),
            model.emb.cate(batch.cate),
            (model.emb.item(batch.hist_item) * mask).sum(1),
            (model.emb.cate(batch.hist_cate) * mask).sum(1),
        ],
        dim=1,
    )
    x = torch.cat([f.flatten(1), model.inner_products(f)], dim=1)
    torch.testing.assert_close(model(batch).logits, model.mlp(x).squeeze(-1))


def test_base_model_sum_pools_valid_behaviours() -> None:
    model = EVAL_MODELS[("base", "prelu")]
    batch = random_batch(5, 4, seed=7)
    e = model.emb(batch.hist_item, batch.hist_cate) * batch.hist_mask.unsqueeze(-1)
    x = torch.cat([e.sum(1), model.emb(batch.item, batch.cate)], dim=-1)
    torch.testing.assert_close(model(batch).logits, model.mlp(x).squeeze(-1))
