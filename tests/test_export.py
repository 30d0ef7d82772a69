"""`dinctl export` and the request scorer under it: equality with the eager model, the bundle
format, parity failures, OOV rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from test_serve_fixtures import build_served, eager_scores, item_ids
from typer.testing import CliRunner

from dinctl.cli.main import app
from dinctl.data.batching import Batch
from dinctl.errors import DinctlError
from dinctl.models import ModelConfig, build_model
from dinctl.models.layers import ItemMap
from dinctl.serving.bundle import read_bundle
from dinctl.serving.runtime import open_serving
from dinctl.serving.scorer import RequestScorer

runner = CliRunner()


@pytest.fixture(scope="session")
def served(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return build_served(tiny_dataset, tmp_path_factory)


def _eager_rows(model: Any, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Any]:
    """Eager forward of every (request, candidate) pair as one training-style row."""
    r, c = inputs["cand_item"].shape
    t = inputs["hist_item"].shape[1]
    mask = torch.arange(t).unsqueeze(0) < inputs["hist_len"].unsqueeze(1)  # (R, T)
    rep = lambda x: x.repeat_interleave(c, dim=0)  # noqa: E731
    batch = Batch(
        user=torch.zeros(r * c, dtype=torch.long),
        item=inputs["cand_item"].reshape(-1),
        cate=inputs["cand_cate"].reshape(-1),
        hist_item=rep(inputs["hist_item"] * mask),
        hist_cate=rep(inputs["hist_cate"] * mask),
        hist_mask=rep(mask),
        label=torch.zeros(r * c),
    )
    with torch.inference_mode():
        out = model(batch)
    att = None if out.attention is None else out.attention.reshape(r, c, t)
    return out.logits.reshape(r, c), att


@pytest.mark.parametrize(
    ("model", "act", "softmax", "use_items", "filtered"),
    [
        ("din", "prelu", False, True, False),
        ("din", "dice", False, True, False),
        ("din", "dice", True, True, False),
        ("din", "sigmoid", False, False, False),
        ("din", "prelu", False, True, True),
        ("base", "dice", False, True, False),
    ],
)
def test_scorer_equals_eager_forward(
    model: str, act: str, softmax: bool, use_items: bool, filtered: bool
) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(
        model=model,
        n_users=5,
        n_items=19 if filtered else 60,  # `--reg filter` keeps 19 of the 60 items
        n_cates=7,
        emb_dim=6,
        act=act,
        attn_softmax=softmax,
        use_item_ids=use_items,
        init_std=0.7,
        item_filter=60 if filtered else 0,
    )
    net = build_model(cfg)
    for m in net.modules():  # non-trivial Dice statistics
        if hasattr(m, "running_mean"):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    for m in net.modules():  # the item map's buffer, as training fills it
        if isinstance(m, ItemMap):
            m.ids.copy_(torch.randint(0, 20, (61,)))
    net.eval()
    r, t, c = 4, 9, 5
    inputs = {
        "hist_item": torch.randint(1, 61, (r, t)),
        "hist_cate": torch.randint(1, 8, (r, t)),
        "hist_len": torch.tensor([9, 4, 0, 1]),
        "cand_item": torch.randint(0, 61, (r, c)),
        "cand_cate": torch.randint(0, 8, (r, c)),
    }
    with torch.inference_mode():
        out = RequestScorer(net)(*inputs.values())
    want_logits, want_att = _eager_rows(net, inputs)
    torch.testing.assert_close(out[0], want_logits, atol=1e-5, rtol=0)
    if want_att is not None:
        torch.testing.assert_close(out[1], want_att, atol=1e-5, rtol=0)
    else:
        assert len(out) == 1


def test_unservable_model_is_an_error() -> None:
    net = build_model(ModelConfig(model="lr", n_users=5, n_items=10, n_cates=3))
    with pytest.raises(DinctlError, match="model 'lr' cannot be served; expected one of din, base"):
        RequestScorer(net)


@pytest.mark.parametrize("fmt", ["onnx", "torch"])
def test_bundle_layout_and_parity(served: dict[str, Any], fmt: str) -> None:
    bundle = read_bundle(served[fmt])
    m = bundle.manifest
    assert m["format"] == fmt and bundle.model_file.is_file()
    assert m["parity"]["max_abs_logit_diff"] == served["parity"][fmt]
    assert m["parity"]["tolerance"] == 1e-5
    assert m["parity"]["rows"] == 400  # the whole test split of the tiny dataset
    assert m["model"]["model"] == "din" and m["model"]["act"] == "dice"
    assert (
        m["dataset"]["checksum"]
        == json.loads((served["data"] / "meta.json").read_text())["checksum"]
    )
    assert [i["name"] for i in m["signature"]["inputs"]] == [
        "hist_item",
        "hist_cate",
        "hist_len",
        "cand_item",
        "cand_cate",
    ]
    assert [o["name"] for o in m["signature"]["outputs"]] == ["logits", "attention"]
    assert "torch" in m["versions"] and m["max_len"] == 100
    assert sorted(p.name for p in served[fmt].iterdir()) == sorted(
        ["bundle.json", "items.parquet", "users.parquet", bundle.model_file.name]
    )


@pytest.mark.parametrize("fmt", ["onnx", "torch"])
def test_bundle_scores_new_shapes_like_eager(served: dict[str, Any], fmt: str) -> None:
    """Dynamic axes: a history length and candidate count the export never saw."""
    model = open_serving(served[fmt])
    raw = [f"I{i:04d}" for i in range(1, 200, 7)]  # 29 candidates
    hist = [f"I{i:04d}" for i in range(3, 150, 11)]  # 14 behaviours
    got = model.score([model.vocab.encode(raw, history=hist)], attention=True)[0]
    want, att = eager_scores(
        served["run"], item_ids(served["data"], hist), item_ids(served["data"], raw)
    )
    np.testing.assert_allclose(got.scores, want, atol=1e-6)
    assert got.attention is not None and att is not None
    np.testing.assert_allclose(got.attention, att, atol=1e-5)
    assert np.ptp(want) > 0.01  # the model is not constant: the check can fail


def test_export_cli_prints_parity_and_refuses_to_overwrite(
    served: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "b"
    res = runner.invoke(
        app, ["export", str(served["run"]), "--format", "torch", "--out", str(out), "--json"]
    )
    assert res.exit_code == 0, res.output
    assert "parity: max |Δ logit| = " in res.stderr and "over 400 test rows" in res.stderr
    summary = json.loads(res.stdout)
    recorded = json.loads((out / "bundle.json").read_text())["parity"]
    assert summary["format"] == "torch"
    assert summary["parity_max_abs_diff"] == recorded["max_abs_logit_diff"]
    again = runner.invoke(
        app, ["export", str(served["run"]), "--format", "torch", "--out", str(out)]
    )
    assert again.exit_code == 1
    assert f"error: {out} already exists" in again.stderr


def test_parity_failure_is_an_error_and_writes_nothing(
    served: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dinctl.serving.export as E

    real = E.exported_engine

    def off_by_a_little(path: Path, names: Any = E.INPUT_NAMES) -> Any:
        engine = real(path, names)
        return lambda feed: (engine(feed)[0] + 1e-4, None)

    monkeypatch.setattr(E, "exported_engine", off_by_a_little)
    with pytest.raises(DinctlError, match=r"differs from the eager model by 0\.0001\d* in a logit"):
        E.export_run(served["run"], "torch", tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    assert list(tmp_path.iterdir()) == []


def test_read_bundle_errors(served: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(DinctlError, match="is not a dinctl bundle"):
        read_bundle(tmp_path)
    manifest = json.loads((served["torch"] / "bundle.json").read_text())
    (tmp_path / "bundle.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(DinctlError, match="has format version 99, expected one of 1, 2"):
        read_bundle(tmp_path)
    (tmp_path / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(DinctlError, match="model.pt2 does not exist"):
        read_bundle(tmp_path)


def test_oov_items_are_what_the_docs_say(served: dict[str, Any]) -> None:
    model = open_serving(served["torch"])
    vocab = model.vocab
    q = vocab.encode(
        ["I0001", "NEW1", "NEW2"],
        history=["I0003", "GONE", "NEW3", "I0005"],
        item_cates={"NEW1": "C04", "NEW3": "C02", "I0001": "C09", "NEW2": "nope"},
    )
    c04, c02 = vocab.cate_id["C04"], vocab.cate_id["C02"]
    assert q.cand_item.tolist() == [item_ids(served["data"], ["I0001"])[0], 0, 0]
    assert q.cand_cate.tolist()[1:] == [c04, 0]  # unknown category name → 0
    assert q.cand_cate[0] == vocab.item_cate[q.cand_item[0]]  # a known item keeps its own
    assert q.hist_item.tolist() == item_ids(served["data"], ["I0003"]) + [0] + item_ids(
        served["data"], ["I0005"]
    )  # GONE (item and category unknown) is dropped
    assert q.hist_cate.tolist()[1] == c02
    assert q.unknown_items == ["NEW1", "NEW2", "GONE", "NEW3"]
    got = model.score([q])[0].scores
    want, _ = eager_scores(
        served["run"],
        q.hist_item.tolist(),
        q.cand_item.tolist(),
        q.cand_cate.tolist(),
        q.hist_cate.tolist(),
    )
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_bf16_is_refused_when_it_moves_scores(served: dict[str, Any]) -> None:
    """The tiny model has large embeddings (init std 0.3): bf16 rounding moves its scores."""
    with pytest.raises(DinctlError, match=r"bf16 moves this model's scores by up to 0\.00\d+"):
        open_serving(served["run"], bf16=True)


def test_bf16_path_stays_within_1e3_and_keeps_auc(served: dict[str, Any]) -> None:
    from types import SimpleNamespace

    from dinctl.serving.parity import check_bf16
    from dinctl.serving.runtime import eager_engine, open_servable_run

    run = open_servable_run(served["run"])
    ds = run.dataset
    torch.manual_seed(0)
    fresh = build_model(ModelConfig(**{**run.model_config, "init_std": 0.05})).eval()
    small = SimpleNamespace(model=fresh, config=run.config)
    fp32 = eager_engine(RequestScorer(fresh))
    worst = check_bf16(fp32, eager_engine(RequestScorer(fresh, bf16=True)), small, ds)
    assert 0 < worst <= 1e-3  # bf16 really ran, and stayed close
