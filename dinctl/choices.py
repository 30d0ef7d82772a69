"""The allowed values of every enumerated setting, read by the library and the CLI alike.

Each choice is a `str` Enum (the CLI's option type) and a tuple of its values (what the library
validates against). No torch, no polars here.
"""

from __future__ import annotations

from enum import Enum


class Model(str, Enum):
    din = "din"
    base = "base"
    lr = "lr"
    wide_deep = "wide-deep"
    pnn = "pnn"
    deepfm = "deepfm"
    avg_pool = "avg-pool"


# names as the paper's Table 3 prints them (tables and experiments label rows with these)
MODEL_LABELS = {
    Model.lr.value: "LR",
    Model.base.value: "BaseModel",
    Model.wide_deep.value: "Wide&Deep",
    Model.pnn.value: "PNN",
    Model.deepfm.value: "DeepFM",
    Model.din.value: "DIN",
    Model.avg_pool.value: "AvgPool",
}


class Activation(str, Enum):
    prelu = "prelu"
    dice = "dice"
    sigmoid = "sigmoid"
    relu = "relu"


class MlpActivation(str, Enum):
    """The MLP tower's activation. `auto`: ReLU after a Dice activation unit (the peers' layout,
    the more accurate one on real data), else the unit's; `same` = the unit's (the paper's DIN,
    Dice also in the tower)."""

    auto = "auto"
    same = "same"
    prelu = "prelu"
    dice = "dice"
    sigmoid = "sigmoid"
    relu = "relu"


class LinearInit(str, Enum):
    """Linear layers' initialisation: torch's own, or Xavier-normal with zero biases."""

    torch = "torch"
    xavier = "xavier"


class Regularizer(str, Enum):
    none = "none"
    mba = "mba"
    l2 = "l2"
    dropout = "dropout"
    filter = "filter"
    difacto = "difacto"


class Optimizer(str, Enum):
    sgd = "sgd"
    adam = "adam"
    adagrad = "adagrad"


class Recipe(str, Enum):
    paper = "paper"
    fast = "fast"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Split(str, Enum):
    """The dataset split a command scores."""

    test = "test"
    valid = "valid"


class SelectMetric(str, Enum):
    """The validation metric that picks the best epoch and drives early stopping."""

    user_weighted_auc = "user_weighted_auc"
    global_auc = "global_auc"


def values(choice: type[Enum]) -> tuple[str, ...]:
    return tuple(str(m.value) for m in choice)


MODELS = values(Model)
ACTIVATIONS = values(Activation)
MLP_ACTIVATIONS = values(MlpActivation)
LINEAR_INITS = values(LinearInit)
REGULARIZERS = values(Regularizer)
OPTIMIZERS = values(Optimizer)
RECIPES = values(Recipe)
DEVICES = values(Device)
SELECT_METRICS = values(SelectMetric)
SPLITS = values(Split)
