"""Parity checks of an engine against the eager run model on real rows: the exported model
(fp32, tight tolerance) before a bundle is written, and the bf16 path before it serves."""

from __future__ import annotations

from typing import Any

import numpy as np

from dinctl.errors import DinctlError
from dinctl.inputs import INPUTS
from dinctl.serving.engines import Engine

PARITY_TOL = 1e-5  # max |Δ logit|, fp32
PARITY_ROWS = 512
BF16_TOL = 1e-3  # max |Δ score| (probability) and |Δ AUC| of the bf16 path against fp32


def parity_inputs(run: Any, ds: Any, n: int) -> tuple[Any, list[dict[str, np.ndarray]], list[Any]]:
    """Eager logits of the first n test rows, and the same rows as bundle inputs: one request
    per row (R = n, C = 1) and the first row's history against every candidate (R = 1, C = n)."""
    import torch

    from dinctl.data.batching import SplitTensors, WindowGatherer

    split = "test" if ds.has_split("test") else "valid"
    rows = SplitTensors(ds.split(split))
    n = min(n, len(rows))
    if n == 0:
        raise DinctlError(f"the {split} split of {ds.path} has no rows to check parity on")
    gatherer = WindowGatherer(ds, run.config.max_len)
    batch = gatherer.gather(*rows.rows(slice(0, n)))
    user_side, candidates = batch.as_requests()  # n requests of one candidate
    per_row = {k: v.numpy() for k, v in (user_side | candidates).items() if v is not None}
    first = {  # row 0's user side against all n candidates
        **{k: v[:1].numpy() for k, v in user_side.items() if v is not None},
        **{k: v.transpose(0, 1).numpy() for k, v in candidates.items() if v is not None},
    }
    shared = gatherer.gather(*rows.rows(torch.zeros(n, dtype=torch.long)))  # row 0's user side
    for field in INPUTS:
        if field.side != "user":
            setattr(shared, field.batch_name, getattr(batch, field.batch_name))
    with torch.inference_mode():
        expected = [run.model(batch).logits.numpy(), run.model(shared).logits.numpy()]
    return split, [per_row, first], expected


def check_parity(engine: Engine, run: Any, ds: Any, n: int = PARITY_ROWS) -> tuple[float, int]:
    """max |Δ logit| between `engine` and the eager run model on real rows; error above tol."""
    split, inputs, expected = parity_inputs(run, ds, n)
    diffs = []
    for feed, want in zip(inputs, expected, strict=True):
        got, _ = engine(feed)
        diffs.append(float(np.abs(got.reshape(-1) - want.reshape(-1)).max()))
    worst = max(diffs)
    if not worst <= PARITY_TOL:  # NaN fails too
        raise DinctlError(
            f"the exported model differs from the eager model by {worst:.3g} in a logit on the "
            f"{split} split (tolerance {PARITY_TOL:g}); no bundle written",
            hint="report this model config; the export cannot be trusted",
        )
    return worst, len(expected[0])


def check_bf16(fp32: Engine, bf16: Engine, run: Any, ds: Any, n: int = PARITY_ROWS) -> float:
    """max |Δ score| of the bf16 path on real rows; an error when scores or AUC move > 1e-3."""
    from dinctl.metrics import auc_score

    split, inputs, _ = parity_inputs(run, ds, n)
    probs = [
        1.0 / (1.0 + np.exp(-e(inputs[0])[0].reshape(-1).astype(np.float64))) for e in (fp32, bf16)
    ]
    worst = float(np.abs(probs[1] - probs[0]).max())
    labels = ds.split(split).label[: len(probs[0])]
    auc_moved = 0.0
    if 0 < labels.sum() < len(labels):
        auc_moved = abs(auc_score(labels, probs[1]) - auc_score(labels, probs[0]))
    if not (worst <= BF16_TOL and auc_moved <= BF16_TOL):
        raise DinctlError(
            f"bf16 moves this model's scores by up to {worst:.2g} and its AUC by {auc_moved:.2g} "
            f"on the {split} split (tolerance {BF16_TOL:g})",
            hint="serve it in float32 (drop --bf16)",
        )
    return worst
