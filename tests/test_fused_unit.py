"""The fused activation-unit kernel (dinctl/models/fused_unit.py) against the torch ops it
replaces: the same logits and attention, every activation, every thread split, and the torch
ops wherever the kernel does not apply."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dinctl.models import ModelConfig, build_model, fused_unit
from dinctl.models.din import UserState
from dinctl.models.layers import PaddedHistory
from dinctl.serving.scorer import RequestScorer

R, C, T = 3, 13, 7  # 13 candidates: one whole block of 8 and a part block


def scorer(act: str, hidden: tuple[int, ...] = (16, 8), **extra: Any) -> RequestScorer:
    torch.manual_seed(0)
    cfg = ModelConfig(
        model="din",
        n_users=50,
        n_items=300,
        n_cates=20,
        emb_dim=8,
        act=act,
        attn_hidden=hidden,
        **extra,
    )
    model = build_model(cfg).eval()
    with torch.no_grad():  # weights and statistics far from their start, signs mixed
        for p in model.parameters():
            p.normal_(0.0, 0.5)
        for name, b in model.named_buffers():
            if "running_var" in name:
                b.uniform_(0.2, 2.0)
            elif "running_mean" in name:
                b.normal_(0.0, 0.5)
    return RequestScorer(model)


def requests(r: int = R, c: int = C, t: int = T) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {
        "hist_item": torch.randint(1, 300, (r, t), generator=g),
        "hist_cate": torch.randint(1, 20, (r, t), generator=g),
        "hist_len": torch.tensor([t, max(1, t // 2), 1][:r] + [t] * max(0, r - 3)),
        "cand_item": torch.randint(1, 300, (r, c), generator=g),
        "cand_cate": torch.randint(1, 20, (r, c), generator=g),
    }


UNIT = scorer("dice")


def fused(
    s: RequestScorer, q: torch.Tensor, k: torch.Tensor, lengths: torch.Tensor | None = None
) -> Any:
    """The kernel's (tower output, attention) of queries q (R, C, E) against keys k (R·T, E),
    None where it does not apply: both as rows of one table, looked up by their positions."""
    lengths = requests()["hist_len"] if lengths is None else lengths
    r, c, e = q.shape
    table = torch.cat([k, q.reshape(r * c, e)]).numpy()  # (R·T + R·C, E)
    hist = np.arange(k.shape[0]).reshape(r, -1, 1)  # (R, T, 1)
    cand = k.shape[0] + np.arange(r * c).reshape(r, c, 1)  # (R, C, 1)
    side = np.zeros((r, c, 0), table.dtype)
    model = s.model
    softmax = model.cfg.attn_softmax
    return model.attention.serve_arrays(
        (table,), hist, cand, lengths.numpy(), model.mlp, side, softmax
    )


def arrays(inputs: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {name: x.numpy() for name, x in inputs.items()}


def both(s: RequestScorer, inputs: dict[str, torch.Tensor]) -> tuple[Any, Any]:
    """The kernel's (serving the numpy inputs) and the torch forward's (logits, attention)."""
    kernel = s.serve_arrays(arrays(inputs))
    assert kernel is not None  # so what is compared is the kernel against the torch ops
    with torch.inference_mode():
        plain = s(**inputs)
    return tuple(torch.from_numpy(x) for x in kernel), plain


def test_the_kernel_multiplies_with_torch_s_mkl_where_torch_has_it() -> None:
    assert (fused_unit._MKL is not None) == torch.backends.mkl.is_available()


@pytest.mark.parametrize("matmul", ["mkl", "blas"])
@pytest.mark.parametrize("act", ["prelu", "dice", "sigmoid", "relu"])
def test_the_kernel_scores_as_the_torch_ops_do(
    act: str, matmul: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fused_unit, "MATMUL", matmul)
    s = scorer(act)
    kernel, plain = both(s, requests())
    assert len(kernel) == len(plain) == 2  # logits (R, C), attention (R, C, T)
    for a, b in zip(kernel, plain, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()))


@pytest.mark.parametrize("matmul", ["mkl", "blas"])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_every_thread_split_gives_the_same_scores(
    threads: int, matmul: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fused_unit, "MATMUL", matmul)
    s, inputs = scorer("prelu"), requests(r=2, c=21)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = s.serve_arrays(arrays(inputs))
        torch.set_num_threads(threads)
        many = s.serve_arrays(arrays(inputs))
    finally:
        torch.set_num_threads(previous)
    assert one is not None and many is not None
    np.testing.assert_array_equal(many[0], one[0])  # each score is computed once


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 4), st.integers(1, 30), st.integers(1, 9), st.integers(1, 4), st.booleans())
def test_the_workers_claim_every_block_once(
    r: int, c: int, t: int, workers: int, softmax: bool
) -> None:
    """Any shape, lengths from 0 (empty) to beyond T, any number of workers claiming blocks:
    the kernel's interest and attention are the torch ops' (a block no worker claimed would
    hold whatever np.empty left there)."""
    model = UNIT.model
    model.cfg = dataclasses.replace(model.cfg, attn_softmax=softmax)
    g = torch.Generator().manual_seed(r * 1000 + c * 10 + t)
    q, k = torch.randn(r, c, 16, generator=g), torch.randn(r * t, 16, generator=g)
    lengths = torch.randint(0, t + 3, (r,), generator=g)
    user = UserState(PaddedHistory(lengths, torch.Size((r, t))), k, None)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(workers)  # the kernel's threads
        out = fused(UNIT, q, k, lengths)
        with torch.inference_mode():
            plain = model.pool_and_tower(user, q, [q])  # the torch ops
    finally:
        torch.set_num_threads(previous)
        model.cfg = dataclasses.replace(model.cfg, attn_softmax=False)
    assert out is not None and plain.attention is not None
    for a, b in ((out[0][..., 0], plain.logits), (out[1], plain.attention)):
        torch.testing.assert_close(
            torch.from_numpy(a), b, rtol=1e-4, atol=1e-4 * max(1.0, float(b.abs().max()))
        )


def test_the_torch_ops_run_where_the_kernel_does_not_apply(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = scorer("prelu")
    q, k = torch.randn(R, C, 16), torch.randn(R * T, 16)
    assert fused(s, q, k) is not None
    assert fused(s, q.double(), k.double()) is None  # float32 only
    assert fused(scorer("prelu", (16, 8, 4)), q, k) is None  # 3 layers
    assert fused(scorer("prelu", (16,)), q, k) is None  # 1 layer
    s.model.train()
    assert fused(s, q, k) is None  # Dice and PReLU as training computes them: torch's
    s.model.eval()
    monkeypatch.setenv(fused_unit.ENV_SWITCH, "0")
    assert fused(s, q, k) is None
    monkeypatch.setattr(s.model.emb, "kernel_ids", None)  # switched off: no lookups first
    assert s.serve_arrays(arrays(requests())) is None
    assert not fused_unit.available()


@pytest.mark.parametrize("mode", ["bf16", "train"])
def test_bf16_pairs_and_training_keep_the_torch_ops(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    s, inputs = scorer("dice"), arrays(requests())
    calls = []
    monkeypatch.setattr(fused_unit, "score_arrays", lambda *a: calls.append(a))
    if mode == "bf16":
        assert RequestScorer(s.model, bf16=True).serve_arrays(inputs) is None
    else:
        s.model.train()  # Dice on the batch's statistics
        assert s.serve_arrays(inputs) is None
    assert not calls
    s.model.eval()
    s.serve_arrays(inputs)
    assert len(calls) == 1  # the same model in eval does take the kernel


def test_weights_changed_in_place_reach_the_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    s, inputs = scorer("dice"), requests()
    before = both(s, inputs)[0][0]
    with torch.no_grad():  # as load_state_dict or an optimizer step does
        s.model.attention.rest.linears[0].bias.add_(1.0)
        s.model.attention.first_act.running_mean.mul_(0.5)
        s.model.emb.item.weight.mul_(2.0)
    kernel, plain = both(s, inputs)
    assert not torch.allclose(kernel[0], before)
    torch.testing.assert_close(
        kernel[0], plain[0], rtol=1e-4, atol=1e-4 * float(plain[0].abs().max())
    )


def test_only_a_unit_that_runs_as_the_kernel_serves_arrays() -> None:
    assert scorer("dice").unit == "fused kernel"
    deep = scorer("prelu", (16, 8, 4))
    assert deep.unit == "torch ops" and deep.serve_arrays(arrays(requests())) is None


def test_the_eager_engine_serves_through_the_kernel_and_else_the_torch_forward(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dinctl.serving.engines import eager_engine

    s, inputs = scorer("prelu"), requests()
    calls: list[int] = []
    real = fused_unit.score_arrays
    monkeypatch.setattr(fused_unit, "score_arrays", lambda *a: calls.append(1) or real(*a))
    kernel = eager_engine(s)(arrays(inputs))
    monkeypatch.setenv(fused_unit.ENV_SWITCH, "0")
    plain = eager_engine(s)(arrays(inputs))
    assert calls == [1]  # the first through the kernel, the second through the torch ops
    for a, b in zip(kernel, plain, strict=True):
        assert a is not None and b is not None and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(np.abs(b).max()))


@pytest.mark.parametrize("item_filter", [0, 500])
def test_the_kernel_s_rows_are_the_embedding_s(item_filter: int) -> None:
    """`BehaviourEmbedding.kernel_ids` and `kernel_tables` against its forward: item (through
    the filter's item map), category and extra fields, side by side in that order."""
    from dinctl.models.layers import BehaviourEmbedding

    torch.manual_seed(0)
    emb = BehaviourEmbedding(300, 20, 4, True, 0.5, (("brand", 7),), item_filter)
    if emb.item_map is not None:
        emb.item_map.ids.copy_(torch.randint(0, 301, (501,)))  # 500 ids → 300 rows
    g = torch.Generator().manual_seed(2)
    item, cate = (
        torch.randint(0, (item_filter or 300) + 1, (3, 5), generator=g),
        torch.randint(0, 21, (3, 5), generator=g),
    )
    extra = torch.randint(0, 7, (3, 5, 1), generator=g)
    with torch.no_grad():
        want = emb(item, cate, extra)  # (3, 5, 12)
    ids = emb.kernel_ids(item.numpy(), cate.numpy(), extra.numpy())  # (3, 5, 3)
    tables = emb.kernel_tables()
    got = np.concatenate([t[ids[..., k]] for k, t in enumerate(tables)], axis=-1)
    assert ids.shape == (3, 5, 3) and got.dtype == np.float32
    np.testing.assert_array_equal(got, want.numpy())


def test_an_id_beyond_a_table_is_refused_as_torch_refuses_it() -> None:
    s, inputs = scorer("prelu"), arrays(requests())
    inputs["cand_item"][0, 0] = 301  # the item table has rows 0..300
    with pytest.raises(IndexError, match="index out of range"):
        s.serve_arrays(inputs)
    with pytest.raises(IndexError, match="index out of range"):
        s(**{k: torch.from_numpy(v) for k, v in inputs.items()})


def test_the_engine_line_says_how_the_unit_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    from dinctl.serving.scorer import unit_path

    assert unit_path(scorer("dice").model, bf16=False) == "fused kernel"
    assert unit_path(scorer("dice").model, bf16=True) == "torch ops"
    assert unit_path(scorer("prelu", (16, 8, 4)).model, bf16=False) == "torch ops"
    base = build_model(ModelConfig(model="base", n_users=5, n_items=30, n_cates=4, emb_dim=4))
    assert unit_path(base, bf16=False) is None  # no activation unit
    monkeypatch.setenv(fused_unit.ENV_SWITCH, "0")
    assert unit_path(scorer("dice").model, bf16=False) == "torch ops"


def test_a_kernel_numba_cannot_cache_is_compiled_in_the_process() -> None:
    namespace: dict[str, object] = {}
    exec("def twice(x):\n    return 2 * x\n", namespace)  # no source file: nowhere to cache
    compiled = fused_unit._jit(namespace["twice"])  # type: ignore[arg-type]
    assert compiled(21) == 42 and hasattr(compiled, "py_func")  # compiled, not the function


@pytest.mark.parametrize("tower_act", ["prelu", "dice", "sigmoid", "relu"])
@pytest.mark.parametrize("hidden", [(), (9,), (9, 7, 5)])
def test_the_kernel_runs_any_tower(
    tower_act: str, hidden: tuple[int, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel's tower, of any depth and activation, on [interest ⊕ candidate]: the torch
    ops' logits."""
    s = scorer("dice", mlp_act=tower_act, mlp_hidden=hidden)
    kernel, plain = both(s, requests())
    for a, b in zip(kernel, plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()))


def test_the_kernel_takes_user_context_and_numeric_inputs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A model with behaviour, user, context and numeric fields: the tower's other inputs
    reach the kernel as the torch ops take them."""
    s = scorer(
        "prelu",
        behaviour_fields=(("brand", 7),),
        user_fields=(("age", 4), ("gender", 3)),
        context_fields=(("slot", 5),),
        numeric_fields=("price",),
    )
    g = torch.Generator().manual_seed(3)
    inputs = {
        **requests(),
        "hist_fields": torch.randint(0, 7, (R, T, 1), generator=g),
        "cand_fields": torch.randint(0, 7, (R, C, 1), generator=g),
        "user_fields": torch.stack(
            [torch.randint(0, 4, (R,), generator=g), torch.randint(0, 3, (R,), generator=g)], 1
        ),
        "context": torch.randint(0, 5, (R, C, 1), generator=g),
        "numeric": torch.rand(R, C, 1, generator=g),
    }
    kernel, plain = both(s, inputs)
    for a, b in zip(kernel, plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()))


def test_a_worker_s_error_reaches_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller spins for its workers' blocks, then (none counted) waits on their futures,
    which raise what a worker raised."""
    monkeypatch.setattr(fused_unit, "SPINS", 1000)

    def fn(done: np.ndarray) -> None:
        if threading.current_thread() is not threading.main_thread():
            raise ValueError("a worker failed")

    with pytest.raises(ValueError, match="a worker failed"):
        fused_unit.run_workers(fn, (), 2, 1)


def test_the_kernel_s_exp_is_float32_exact_to_a_few_ulps() -> None:
    """The vectorisable e^x of the Dice, sigmoid and softmax loops, against float64 exp, over
    the whole range it takes (clamped outside [-87, 88])."""
    x = np.concatenate([np.linspace(-87, 88, 200_001), [-200.0, 0.0, 1e-7, -1e-7, 300.0]])
    x = x.astype(np.float32)
    got = np.array([fused_unit._exp(v) for v in x[::50]] + [fused_unit._exp(v) for v in x[-5:]])
    want = np.exp(np.clip(np.concatenate([x[::50], x[-5:]]), -87, 88).astype(np.float64))
    assert np.all(np.abs(got - want) <= 4e-7 * want)
