"""Every servable model (`SERVABLE_MODELS`, found by the registry, so a new one is tested
here without a line of test code): its training forward equals the request scorer on every
field group, its torch.export and ONNX graphs equal the scorer, and it trains."""

from __future__ import annotations

import inspect
import subprocess
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from dinctl.data.batching import Batch
from dinctl.inputs import INPUTS
from dinctl.models import SERVABLE_MODELS, ModelConfig, build_model
from dinctl.serving.runtime import eager_engine, exported_engine, onnx_engine
from dinctl.serving.scorer import RequestScorer

R, T, C = 4, 6, 3
N_ITEMS, N_CATES = 40, 5


def _model(name: str, fielded: bool = True) -> torch.nn.Module:
    torch.manual_seed(0)
    extra: dict[str, Any] = {}
    if fielded:
        extra = dict(behaviour_fields=(("brand", 7),), user_fields=(("age", 4),),
                     context_fields=(("hour", 5),), numeric_fields=("price", "rank"))  # fmt: skip
    cfg = ModelConfig(model=name, n_users=R, n_items=N_ITEMS, n_cates=N_CATES, emb_dim=4,
                      act="dice", init_std=0.5, **extra)  # fmt: skip
    net = build_model(cfg)
    for m in net.modules():  # non-trivial Dice statistics
        if hasattr(m, "running_mean"):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def _requests(g: torch.Generator, r: int = R, t: int = T, c: int = C) -> dict[str, torch.Tensor]:
    def ids(high: int, *shape: int) -> torch.Tensor:
        return torch.randint(1, high, shape, generator=g)

    return {
        "hist_item": ids(N_ITEMS + 1, r, t),
        "hist_cate": ids(N_CATES + 1, r, t),
        "hist_len": torch.tensor([t, 3, 0, 1])[:r].clamp(max=t),
        "cand_item": ids(N_ITEMS + 1, r, c),
        "cand_cate": ids(N_CATES + 1, r, c),
        "hist_fields": ids(7, r, t, 1),
        "cand_fields": ids(7, r, c, 1),
        "user_fields": ids(4, r, 1),
        "context": ids(5, r, c, 1),
        "numeric": torch.randn(r, c, 2, generator=g),
    }


def _as_rows(inputs: dict[str, torch.Tensor]) -> Batch:
    """Every (request, candidate) pair as one training row, histories masked at hist_len."""
    mask = torch.arange(T).unsqueeze(0) < inputs["hist_len"].unsqueeze(1)  # (R, T)
    per_request = lambda x: x.repeat_interleave(C, dim=0)  # noqa: E731
    per_candidate = lambda x: x.reshape(R * C, *x.shape[2:])  # noqa: E731
    return Batch(
        user=torch.zeros(R * C, dtype=torch.long),
        item=per_candidate(inputs["cand_item"]),
        cate=per_candidate(inputs["cand_cate"]),
        hist_item=per_request(inputs["hist_item"] * mask),
        hist_cate=per_request(inputs["hist_cate"] * mask),
        hist_mask=per_request(mask),
        label=torch.zeros(R * C),
        hist_fields=per_request(inputs["hist_fields"] * mask.unsqueeze(-1)),
        cand_fields=per_candidate(inputs["cand_fields"]),
        user_fields=per_request(inputs["user_fields"]),
        context=per_candidate(inputs["context"]),
        numeric=per_candidate(inputs["numeric"]),
    )


@pytest.mark.parametrize("name", SERVABLE_MODELS)
def test_training_forward_equals_the_request_scorer_on_every_field(name: str) -> None:
    net = _model(name)
    inputs = _requests(torch.Generator().manual_seed(1))
    with torch.inference_mode():
        got = RequestScorer(net)(**inputs)
        want = net(_as_rows(inputs))
    torch.testing.assert_close(got[0], want.logits.reshape(R, C), atol=1e-5, rtol=0)
    if want.attention is None:
        assert len(got) == 1
    else:
        torch.testing.assert_close(got[1], want.attention.reshape(R, C, T), atol=1e-5, rtol=0)
        assert float(got[1][2].abs().sum()) == 0.0  # an empty history has no weights


@pytest.mark.parametrize("name", SERVABLE_MODELS)
@pytest.mark.parametrize("fmt", ["torch", "onnx"])
def test_exported_graph_equals_the_scorer(name: str, fmt: str, tmp_path: Path) -> None:
    from dinctl.serving.export import write_model

    scorer = RequestScorer(_model(name))
    path = tmp_path / f"model.{fmt}"
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # as serving runs: the scorer's thread choice may not be traced
    try:
        write_model(scorer, fmt, path)
    finally:
        torch.set_num_threads(threads)
    names = scorer.input_names
    engine = onnx_engine(path, names=names) if fmt == "onnx" else exported_engine(path, names)
    # other R, T, C than the export's example inputs, one candidate and one position included
    # and a request past fused_unit.SMALL rows (no size branch may be baked into the graph)
    shapes = ((2, (R, T, C)), (3, (1, 1, 1)), (4, (3, 1, 5)), (5, (4, 7, 1)), (6, (1, 3, 4500)))
    for seed, sizes in shapes:
        requests = _requests(torch.Generator().manual_seed(seed), *sizes)
        inputs = {k: v.numpy() for k, v in requests.items()}
        want, want_att = eager_engine(scorer)(inputs)
        got, att = engine(inputs)
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
        if want_att is not None:
            np.testing.assert_allclose(att, want_att, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", SERVABLE_MODELS)
def test_it_trains(name: str) -> None:
    net = _model(name).train()
    g = torch.Generator().manual_seed(4)
    batch = _as_rows(_requests(g))
    batch.label = (torch.rand(R * C, generator=g) < 0.5).float()
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(batch).logits, batch.label)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_the_scorer_signature_and_the_batch_are_the_input_table() -> None:
    params = list(inspect.signature(RequestScorer.forward).parameters)[1:]
    assert params == [f.name for f in INPUTS]
    assert {f.batch_name for f in INPUTS} <= {f.name for f in fields(Batch)}


def test_loading_and_serving_a_run_never_imports_the_regularisers() -> None:
    code = (
        "import sys; import dinctl.inference, dinctl.serving.runtime, dinctl.serving.scorer; "
        "import dinctl.training.checkpoint; "
        "print('dinctl.training.regularizers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_onnx_export_writes_prelu_as_relus_and_scores_the_same(tmp_path: Path) -> None:
    """ONNX Runtime's PRelu kernel branches per element (9x slower on mixed signs): the ONNX
    graph holds Relu ops instead, which compute PReLU exactly."""
    import onnx

    from dinctl.models.layers import PReLU, relu_form_prelu
    from dinctl.serving.export import write_model

    layer = PReLU(5)
    with torch.no_grad():
        layer.alpha.uniform_(-1.0, 1.0)
    for x in (torch.randn(64, 5), torch.randn(3, 4, 5)):
        with relu_form_prelu():
            relu = layer(x)
        assert torch.equal(relu, layer(x))
    cfg = ModelConfig(model="din", n_users=R, n_items=N_ITEMS, n_cates=N_CATES, emb_dim=4,
                      act="prelu", init_std=0.5)  # fmt: skip
    torch.manual_seed(0)
    scorer = RequestScorer(build_model(cfg).eval())
    path = tmp_path / "model.onnx"
    write_model(scorer, "onnx", path)
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "PRelu" not in ops and "Relu" in ops
    inputs = {k: v.numpy() for k, v in _requests(torch.Generator().manual_seed(6)).items()}
    got = onnx_engine(path, names=scorer.input_names)(inputs)[0]
    np.testing.assert_allclose(got, eager_engine(scorer)(inputs)[0], atol=1e-5, rtol=0)
