"""The model settings a training run chooses, declared once: each one's name in `TrainConfig`
(the flag, TOML and config.json key), its name in `ModelConfig`, and its default.

`TrainConfig` and `ModelConfig` take their defaults from here, and the training loop builds the
run's `ModelConfig` from this table (no field copied by hand). No torch here: `train --help`
and the config stay light.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelSetting:
    train_name: str  # the TrainConfig field (and --flag, TOML key)
    model_name: str  # the ModelConfig field
    default: Any


MODEL_SETTINGS = (
    ModelSetting("model", "model", "din"),
    ModelSetting("emb_dim", "emb_dim", 64),  # per id; a behaviour is item ⊕ category = 2·emb_dim
    # embedding init N(0, std²); small data learns faster with ~1
    ModelSetting("emb_init_std", "init_std", 0.01),
    # prelu | dice | sigmoid | relu: the activation unit (and the MLP tower, see mlp_act)
    ModelSetting("act", "act", "prelu"),
    # The tower's activation. auto = ReLU after a Dice unit (the peers' layout), else `act`;
    # same = `act` (Dice in the tower too). With the three defaults below, --act dice gained
    # +0.012 user-weighted AUC on real Amazon MI rows (5 seeds, paired, 4 ahead) and +0.008 on
    # larger held-out Amazon rows, level on MovieLens (within 0.003; benchmarks/README.md,
    # accuracy); the paper recipe keeps Dice in the tower (under SGD lr 1.0 its batch
    # statistics are what get DIN off its plateau).
    ModelSetting("mlp_act", "mlp_act", "auto"),
    # Dice's (and PReLU's) α at the start, as in the peers and the authors' code
    ModelSetting("dice_alpha_init", "dice_alpha_init", 0.0),
    # torch = nn.Linear's own; xavier = Xavier-normal, zero bias (FuxiCTR's)
    ModelSetting("linear_init", "linear_init", "xavier"),
    # the authors' scaled masked softmax over the attention scores; the paper has none
    ModelSetting("attn_softmax", "attn_softmax", False),
    # False = category embeddings only (Table 4's "without goods ids")
    ModelSetting("use_item_ids", "use_item_ids", True),
)

MODEL_DEFAULTS: dict[str, Any] = {s.model_name: s.default for s in MODEL_SETTINGS}
TRAIN_DEFAULTS: dict[str, Any] = {s.train_name: s.default for s in MODEL_SETTINGS}


def model_settings(train_config: Any) -> dict[str, Any]:
    """The ModelConfig keyword arguments a training config chooses (by ModelConfig name)."""
    return {s.model_name: getattr(train_config, s.train_name) for s in MODEL_SETTINGS}
