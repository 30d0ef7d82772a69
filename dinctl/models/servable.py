"""What makes a model servable: the user side encoded once, candidates scored against it.

A request is one user (history, user fields) and C candidates; a training batch is B requests
of one candidate each. A servable model implements

    state = model.encode_user(hist_item, hist_cate, hist_len, hist_fields, user_fields)
    out = model.score(state, cand_item, cand_cate, cand_fields, context, numeric)
    # out.logits (R, C), out.attention (R, C, T) or None

(the inputs are `dinctl.inputs.INPUTS`; a model takes the extra ones its config has), and its
training forward is those two on the batch (`ServableModel.forward`, or a faster layout of the
same computation, as `BaseModel.forward`). The request scorer, export and predict call only
these two, so a model is servable by subclassing `ServableModel` and writing them.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from dinctl.data.batching import Batch
from dinctl.inputs import widths
from dinctl.models.config import ModelConfig, ModelOutput


class ServableModel(nn.Module):
    """A model with `encode_user` and `score`; see the module docstring."""

    cfg: ModelConfig
    has_attention: ClassVar[bool] = False  # whether `score` returns attention weights

    def input_widths(self) -> dict[str, int]:
        """The widths F, U, K, M of the extra inputs the model takes (0 = not taken)."""
        return widths(self.cfg)

    def encode_user(
        self,
        hist_item: torch.Tensor,
        hist_cate: torch.Tensor,
        hist_len: torch.Tensor,
        hist_fields: torch.Tensor | None = None,
        user_fields: torch.Tensor | None = None,
    ) -> Any:
        """The user side of R requests, computed once: histories (R, T) left-aligned with
        lengths (R,), extra behaviour fields (R, T, F), user fields (R, U)."""
        raise NotImplementedError

    def score(
        self,
        user: Any,
        cand_item: torch.Tensor,
        cand_cate: torch.Tensor,
        cand_fields: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
        numeric: torch.Tensor | None = None,
    ) -> ModelOutput:
        """Logits (R, C) (and attention (R, C, T) or None) of candidates (R, C) with their
        extra fields (R, C, F), context (R, C, K) and numeric (R, C, M) against `user`."""
        raise NotImplementedError

    def serve_arrays(
        self, inputs: dict[str, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray | None] | None:
        """A faster serving of padded numpy requests, `score(encode_user(...))`'s logits (R, C)
        and attention to float rounding, where the model has one (DIN's kernel); None: the
        torch forward serves."""
        return None

    def forward(self, batch: Batch) -> ModelOutput:
        """Training rows as B requests of one candidate: (B,) logits, (B, T) attention."""
        user_side, candidates = batch.as_requests()
        return one_candidate(self.score(self.encode_user(**user_side), **candidates))


def one_candidate(out: ModelOutput) -> ModelOutput:
    """A (R, 1) scoring as training rows: logits (R,), attention (R, T)."""
    attention = out.attention[:, 0] if out.attention is not None else None
    return ModelOutput(logits=out.logits[:, 0], attention=attention)
