"""CTR models: DIN and the paper's competitors behind one registry.

model = build_model(ModelConfig(model="din", n_users=U, n_items=N, n_cates=C, act="dice"))
out = model(batch)          # ModelOutput(logits (B,), attention (B, T) | None)
model.sparse_tables()       # [(name, nn.Embedding, "item" | "cate"), ...] for regularisers
state = model.encode_user(hist_item, hist_cate, hist_len)  # a ServableModel: serving's
out = model.score(state, cand_item, cand_cate)             # (R, C) logits, (R, C, T) attention

Adding a model: docs/extending.md.
"""

from __future__ import annotations

from torch import nn

from dinctl.models.competitors import LR, PNN, DeepFM, WideDeep
from dinctl.models.config import ACTS, MODEL_NAMES, ModelConfig, ModelOutput
from dinctl.models.din import DIN, BaseModel
from dinctl.models.layers import init_linears
from dinctl.models.registry import MODELS as REGISTERED
from dinctl.models.servable import ServableModel

# every `--model` choice (dinctl.choices.Model) with its class, in the choices' order
if set(REGISTERED) != set(MODEL_NAMES):
    raise ImportError(f"registered models {sorted(REGISTERED)} differ from {MODEL_NAMES}")
MODELS: dict[str, type[nn.Module]] = {name: REGISTERED[name] for name in MODEL_NAMES}

# the models `dinctl export`, `predict` and `serve` take: those with encode_user / score
SERVABLE_MODELS = tuple(name for name, cls in MODELS.items() if issubclass(cls, ServableModel))


def registry_name(model: nn.Module) -> str:
    """The registry name of a model's class (its class name if it is not registered)."""
    return next((name for name, cls in MODELS.items() if cls is type(model)), type(model).__name__)


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
    "SERVABLE_MODELS",
    "ServableModel",
    "build_model",
    "registry_name",
]
