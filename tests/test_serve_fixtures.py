"""Shared by test_export/test_predict/test_serve: one tiny trained DIN and its two bundles.

Built once per session (a module-level cache, since each test module imports the fixture),
plus the eager oracle every serving path is compared with: the run model's own forward on a
`Batch` whose rows repeat the request's history.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

_CACHE: dict[str, Any] = {}


def _train(data: Path, out: Path, **overrides: Any) -> Path:
    from dinctl.training.config import resolve_config
    from dinctl.training.loop import train

    settings = {
        "data": str(data),
        "out": str(out),
        "model": "din",
        "act": "dice",
        "epochs": 1,
        "batch_size": 256,
        "lr": 0.01,
        "emb_dim": 8,
        "emb_init_std": 0.3,
        "device": "cpu",
        "seed": 0,
        **overrides,
    }
    return train(resolve_config(settings)).run_dir


def build_served(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """{"run", "onnx", "torch", "data", "parity"}: a DIN (Dice) run and its two bundles.

    Each test module wraps this in its own session fixture `served`; the cache makes it one."""
    if "served" not in _CACHE:
        from dinctl.serving.export import export_run

        root = tmp_path_factory.mktemp("serving")
        run = _train(tiny_dataset, root / "din")
        onnx = export_run(run, "onnx", root / "bundle-onnx")
        tch = export_run(run, "torch", root / "bundle-torch")
        _CACHE["served"] = {
            "run": run,
            "onnx": onnx.out,
            "torch": tch.out,
            "data": tiny_dataset,
            "parity": {"onnx": onnx.parity_max_abs_diff, "torch": tch.parity_max_abs_diff},
        }
    return dict(_CACHE["served"])


def eager_scores(
    run_dir: Path,
    history: list[int],
    candidates: list[int],
    cates: list[int] | None = None,
    hist_cates: list[int] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The training-time forward as the oracle: probabilities (C,) and attention (C, T) of
    model item ids `candidates` against the model item-id `history` (oldest first)."""
    from dinctl.data.batching import Batch
    from dinctl.inference import open_run

    run = open_run(run_dir)
    ds = run.dataset
    c, t = len(candidates), max(len(history), 1)
    hist = torch.zeros(t, dtype=torch.long)
    hist[: len(history)] = torch.tensor(history, dtype=torch.long)
    mask = torch.arange(t) < len(history)
    hcate = torch.from_numpy(ds.item_cate.astype(np.int64))[hist]
    if hist_cates is not None:
        hcate[: len(history)] = torch.tensor(hist_cates, dtype=torch.long)
    item = torch.tensor(candidates, dtype=torch.long)
    cate = torch.from_numpy(ds.item_cate.astype(np.int64))[item]
    if cates is not None:
        cate = torch.tensor(cates, dtype=torch.long)
    batch = Batch(
        user=torch.zeros(c, dtype=torch.long),
        item=item,
        cate=cate,
        hist_item=hist.expand(c, t),
        hist_cate=hcate.expand(c, t),
        hist_mask=mask.expand(c, t),
        label=torch.zeros(c),
    )
    with torch.inference_mode():
        out = run.model(batch)
    att = None if out.attention is None else out.attention[:, : len(history)].numpy()
    return torch.sigmoid(out.logits).numpy(), att


def user_history(data: Path, raw_user: str, max_len: int = 100) -> list[int]:
    """Model item ids of a user's whole stored sequence (its last max_len), oldest first."""
    import polars as pl

    seq = pl.read_parquet(data / "sequences.parquet").filter(pl.col("raw_user") == raw_user)
    return [int(i) for i in seq["items"][0]][-max_len:]


def item_ids(data: Path, raw_items: list[str]) -> list[int]:
    import polars as pl

    items = pl.read_parquet(data / "items.parquet")
    lookup = dict(zip(items["raw_item"].to_list(), items["item"].to_list(), strict=True))
    return [int(lookup[r]) for r in raw_items]


def sample_requests() -> list[dict[str, Any]]:
    """23 requests: stored and explicit histories, one to three candidates, one unknown."""
    rows: list[dict[str, Any]] = [
        {"request": "r1", "user": "U0001", "candidates": ["I0001", "I0002", "I0150"]},
        {"request": "r2", "history": ["I0005", "I0010", "I0020"], "candidates": ["I0007"]},
        {"request": "r3", "user": "U0003", "history": ["I0011"], "candidates": ["I0012", "NEW"]},
    ]
    for u in range(4, 24):
        cands = [f"I{(u * 7 + k) % 200 + 1:04d}" for k in range(1 + u % 3)]
        rows.append({"request": f"u{u}", "user": f"U{u:04d}", "candidates": cands})
    return rows
