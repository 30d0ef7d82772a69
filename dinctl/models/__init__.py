"""CTR models: DIN and the paper's competitors behind one registry.

model = build_model(ModelConfig(model="din", n_users=U, n_items=N, n_cates=C, act="dice"))
out = model(batch)          # ModelOutput(logits (B,), attention (B, T) | None)
model.sparse_tables()       # [(name, nn.Embedding, "item" | "cate"), ...] for regularisers
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from dinctl.models.competitors import LR, PNN, DeepFM, WideDeep
from dinctl.models.config import ACTS, MODEL_NAMES, ModelConfig, ModelOutput
from dinctl.models.din import DIN, BaseModel
from dinctl.models.layers import init_linears

MODELS: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "din": DIN,
    "base": BaseModel,
    "lr": LR,
    "wide-deep": WideDeep,
    "pnn": PNN,
    "deepfm": DeepFM,
}


def build_model(cfg: ModelConfig) -> nn.Module:
    """The registry's model for `cfg.model`, freshly initialised."""
    model = MODELS[cfg.model](cfg)
    init_linears(model, cfg.linear_init)
    return model


__all__ = [
    "ACTS",
    "MODELS",
    "MODEL_NAMES",
    "DIN",
    "BaseModel",
    "DeepFM",
    "LR",
    "PNN",
    "WideDeep",
    "ModelConfig",
    "ModelOutput",
    "build_model",
]
