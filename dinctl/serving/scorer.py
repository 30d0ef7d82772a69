"""The serving-time forward: R requests, each one history scored against its C candidates.

The model does the work (dinctl/models/servable.py): `encode_user` computes the user side once
per request (history embeddings, user fields) and `score` scores every candidate against it;
the training forward is the same two methods on one-candidate requests, so the two cannot drift.
This module only fixes the exported signature and output tuple.

Inputs are padded: histories are left-aligned (oldest first, most recent at hist_len − 1) and
positions ≥ hist_len are ignored; candidate padding rows get a score that callers drop. The
inputs are `dinctl.inputs.INPUTS` (names, dtypes, axes); a model trained on more fields
(dinctl/data/schema.py) takes the extra inputs its config has, by keyword, so an item/category
model's signature is the five inputs it always was.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch
from torch import nn

from dinctl.errors import DinctlError
from dinctl.inputs import (
    BASIC_NAMES,
    BY_NAME,
    CANDIDATE_NAMES,
    EXTRA_NAMES,
    USER_NAMES,
    input_names,
    signature_inputs,
)
from dinctl.models import SERVABLE_MODELS, ServableModel, registry_name
from dinctl.models.layers import ActivationUnit, bf16_pairs

INPUT_NAMES = BASIC_NAMES
EXTRA_INPUT_NAMES = EXTRA_NAMES
# (dtype, symbolic shape) of every input; F, U, K, M are the config's field counts
INPUT_SHAPES: dict[str, tuple[str, list[str]]] = {
    name: (f.dtype, list(f.axes)) for name, f in BY_NAME.items()
}


class RequestScorer(nn.Module):
    """A servable model's scoring of padded requests; equal to its training forward to float
    noise.

    forward(hist_item (R, T), hist_cate (R, T), hist_len (R,), cand_item (R, C),
    cand_cate (R, C), and the extra inputs of `input_names`, by keyword) → logits (R, C) and,
    for a model with attention, attention weights (R, C, T). `bf16` runs the attention's
    (behaviour × candidate) matmul in bfloat16.
    """

    def __init__(self, model: nn.Module, bf16: bool = False) -> None:
        super().__init__()
        if not isinstance(model, ServableModel):
            raise DinctlError(
                f"model {registry_name(model)!r} cannot be served; expected one of "
                f"{', '.join(SERVABLE_MODELS)}",
                hint="train a servable run (--model " + " | ".join(SERVABLE_MODELS) + ") to "
                "export, predict or serve it",
            )
        self.model = model
        self.bf16 = bool(bf16)
        self.widths = model.input_widths()
        self.input_names = input_names(self.widths)
        self.has_attention = model.has_attention
        self.unit = unit_path(model, self.bf16)
        self.eval()

    def signature(self) -> dict[str, list[dict[str, Any]]]:
        """This scorer's inputs and outputs as bundle.json and /metadata state them."""
        return signature(self.has_attention, self.input_names, self.widths)

    def forward(
        self,
        hist_item: torch.Tensor,
        hist_cate: torch.Tensor,
        hist_len: torch.Tensor,
        cand_item: torch.Tensor,
        cand_cate: torch.Tensor,
        hist_fields: torch.Tensor | None = None,
        cand_fields: torch.Tensor | None = None,
        user_fields: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
        numeric: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        given = locals()  # the parameters are INPUTS' names (a test holds them equal)
        user_side = {name: given[name] for name in USER_NAMES}
        candidates = {name: given[name] for name in CANDIDATE_NAMES}
        with bf16_pairs() if self.bf16 else contextlib.nullcontext():
            out = self.model.score(self.model.encode_user(**user_side), **candidates)
        return (out.logits,) if out.attention is None else (out.logits, out.attention)

    def serve_arrays(
        self, inputs: dict[str, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray | None] | None:
        """The model's faster serving of padded numpy inputs (DIN's fused kernel), None where
        it has none or it does not apply: then `forward` serves."""
        if self.unit != "fused kernel":
            return None
        return self.model.serve_arrays({name: inputs[name] for name in self.input_names})


def unit_path(model: nn.Module, bf16: bool) -> str | None:
    """How a model's activation unit runs in eager serving: `fused kernel` or `torch ops`
    (None: the model has none)."""
    unit = getattr(model, "attention", None)  # DIN's
    if not isinstance(unit, ActivationUnit):
        return None
    return "fused kernel" if not bf16 and unit.kernel_ready() else "torch ops"


def signature(
    has_attention: bool, names: tuple[str, ...] = INPUT_NAMES, widths: dict[str, int] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """The scorer's input/output signature as bundle.json and /metadata state it; the field
    widths F, U, K, M (`inputs.widths`) are fixed numbers, R, T and C stay symbolic."""
    inputs = signature_inputs(names, widths or {})
    outputs: list[dict[str, Any]] = [{"name": "logits", "dtype": "float32", "shape": ["R", "C"]}]
    if has_attention:
        outputs.append({"name": "attention", "dtype": "float32", "shape": ["R", "C", "T"]})
    return {"inputs": inputs, "outputs": outputs}
