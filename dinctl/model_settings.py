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
    # prelu | dice | sigmoid | relu: the activation unit (and the MLP tower if mlp_act = same)
    ModelSetting("act", "act", "prelu"),
    # The tower's activation; "same" = `act`. The peers put Dice in the unit only (ReLU tower):
    # with Adam a PReLU tower was 0.006 user-weighted AUC better on real Amazon rows (one seed),
    # but under SGD lr 1.0 Dice in the tower is what gets DIN off its plateau on small data.
    ModelSetting("mlp_act", "mlp_act", "same"),
    # Dice's (and PReLU's) α at the start; the peers start at 0
    ModelSetting("dice_alpha_init", "dice_alpha_init", 0.25),
    # torch = nn.Linear's own; xavier = Xavier-normal, zero bias
    ModelSetting("linear_init", "linear_init", "torch"),
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
