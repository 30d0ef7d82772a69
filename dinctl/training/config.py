"""`TrainConfig`: every `dinctl train` setting in one flat, frozen dataclass.

Resolution order: recipe defaults < `--config FILE.toml` < explicit flags. The resolved config
is saved as `config.json` in the run folder and is all a run needs to be rebuilt.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dinctl.choices import (
    ACTIVATIONS,
    DEVICES,
    LINEAR_INITS,
    MLP_ACTIVATIONS,
    MODELS,
    OPTIMIZERS,
    RECIPES,
    REGULARIZERS,
    SELECT_METRICS,
)
from dinctl.errors import DinctlError
from dinctl.model_settings import TRAIN_DEFAULTS
from dinctl.runs import CONFIG_FILE

# A history cut no sequence reaches: the paper and the authors' code use whole histories.
WHOLE_HISTORY = 1_000_000

# Budgets are a maximum number of epochs plus a patience (stop once the validation headline
# metric has not improved for that many epochs; best.pt keeps the best epoch), so small and
# large datasets alike train until they stop improving.
# paper: the authors' train.py (SGD, lr 1.0, batch 32, clip_by_global_norm 5, whole histories),
# with its one ×0.1 drop at step 336,000 (a little over 4 epochs of their Electronics rows)
# expressed in epochs, so it lands at the same point of training on any dataset.
# On long histories (MovieLens users rate hundreds of films) sum pooling over whole histories
# under SGD lr 1.0 diverges in the first 50 steps; pass --max-len 100 there.
# fast: Adam 1e-3 at batch 256, the setting the peers (DeepCTR-Torch, FuxiCTR) use for DIN.
RECIPE_DEFAULTS: dict[str, dict[str, Any]] = {
    "paper": {
        "optimizer": "sgd",
        "lr": 1.0,
        "batch_size": 32,
        "epochs": 10,
        "patience": 2,
        "grad_clip": 5.0,
        "lr_decay": 0.1,
        "lr_decay_epochs": 4.0,
        "max_len": WHOLE_HISTORY,
        # the layout dinctl had before the real-data defaults (Dice in the tower under --act
        # dice, α from 0.25, nn.Linear's init): SGD lr 1.0 needs the Dice tower's statistics
        "mlp_act": "same",
        "dice_alpha_init": 0.25,
        "linear_init": "torch",
        "reg": "none",
    },
    "fast": {
        "optimizer": "adam",
        "lr": 1e-3,
        "batch_size": 256,
        "epochs": 20,
        "patience": 2,
        "grad_clip": 0.0,
        "lr_decay": 1.0,
        "lr_decay_epochs": 0.0,
        # MBA (λ 1 below) on by default: on real Amazon MI rows +0.016 test user-weighted AUC
        # (5 of 5 seeds), on MovieLens +0.0014 (3 of 5) and +0.006 global AUC (5 of 5)
        "reg": "mba",
    },
}

DEFAULT_RECIPE = "fast"
_RECIPE = RECIPE_DEFAULTS[DEFAULT_RECIPE]

# λ used when --reg-lambda is not given, per recipe: §6.5 uses 0.01 for both MBA and DiFacto
# (the paper recipe keeps it). Under the fast recipe (Adam, batch 256, the loss a batch mean)
# MBA's λ is 1: 0.01 gave −0.003 on real Amazon MI rows, 1 +0.016; DiFacto's best of
# 0.01 / 0.1 / 1 there was 0.01 (benchmarks/README.md, accuracy).
_PAPER_LAMBDAS = {
    "none": 0.0,
    "mba": 0.01,
    "l2": 1e-5,
    "dropout": 0.0,
    "filter": 0.0,
    "difacto": 0.01,
}
REG_LAMBDA_DEFAULTS: dict[str, dict[str, float]] = {
    "paper": _PAPER_LAMBDAS,
    "fast": {**_PAPER_LAMBDAS, "mba": 1.0},
}


BOOL_FIELDS = (
    "attn_softmax",
    "use_item_ids",
    "length_buckets",
    "sparse_grads",
    "amp",
    "compile",
    "shard_embeddings",
)
STR_FIELDS = ("data", "out")
CHOICE_FIELDS = {
    "model": MODELS,
    "act": ACTIVATIONS,
    "mlp_act": MLP_ACTIVATIONS,
    "linear_init": LINEAR_INITS,
    "reg": REGULARIZERS,
    "optimizer": OPTIMIZERS,
    "recipe": RECIPES,
    "device": DEVICES,
    "select_metric": SELECT_METRICS,
}
# (least, most) of each integer setting; the most is where training can no longer work
# (allocation, overflow, a seed torch refuses), None = no upper bound
INT_RANGES: dict[str, tuple[int, int | None]] = {
    "epochs": (1, 100_000),
    "batch_size": (1, 1 << 24),
    "emb_dim": (1, 4096),
    "max_len": (1, WHOLE_HISTORY),
    "eval_batch_size": (1, 1 << 24),
    "log_every": (1, None),
    "lr_decay_step": (0, None),
    "threads": (0, 4096),
    "patience": (0, 100_000),
    "filter_top_k": (0, None),
    "seed": (0, 2**32 - 1),
}
# the most of each non-negative float setting
FLOAT_LIMITS = {
    "lr": 100.0,
    "reg_lambda": 1e3,
    "grad_clip": 1e6,
    "lr_decay": 1.0,
    "emb_init_std": 100.0,
    "lr_decay_epochs": 100_000.0,
    "dropout_rate": 1.0,
    "dice_alpha_init": 1.0,
}


def _check_int(name: str, value: Any, low: int, high: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise DinctlError(f"{name} must be an integer of at least {low}, got {value!r} instead")
    if high is not None and value > high:
        raise DinctlError(
            f"{name} must be an integer of at most {high}, got {value!r} instead",
            hint="a larger value cannot train (memory, overflow); check the flag or --config",
        )


def _check_float(name: str, value: Any, high: float) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise DinctlError(f"{name} must be a finite number of at least 0, got {value!r} instead")
    if value > high:
        raise DinctlError(
            f"{name} must be at most {high:g}, got {value!r} instead",
            hint="a larger value overflows or cannot train; check the flag or --config",
        )
    return float(value)


@dataclass(frozen=True)
class TrainConfig:
    """A resolved `dinctl train` configuration (saved as config.json)."""

    data: str = "data/amazon"
    model: str = TRAIN_DEFAULTS["model"]
    act: str = TRAIN_DEFAULTS["act"]
    reg: str = _RECIPE["reg"]
    reg_lambda: float = REG_LAMBDA_DEFAULTS[DEFAULT_RECIPE][_RECIPE["reg"]]
    filter_top_k: int = 0  # --reg filter: most frequent item ids kept; 0 = a share of the vocab
    dropout_rate: float = 0.5  # --reg dropout: share of behaviours dropped per sample
    recipe: str = DEFAULT_RECIPE
    # the recipe's settings: their defaults are the default recipe's
    optimizer: str = _RECIPE["optimizer"]
    lr: float = _RECIPE["lr"]
    batch_size: int = _RECIPE["batch_size"]
    epochs: int = _RECIPE["epochs"]  # the most epochs; early stopping may end the run before
    patience: int = _RECIPE["patience"]  # epochs without a better validation score; 0 = off
    select_metric: str = "user_weighted_auc"  # validation metric of the best epoch
    grad_clip: float = _RECIPE["grad_clip"]  # global grad-norm clip, 0 = off
    lr_decay: float = _RECIPE["lr_decay"]  # lr is multiplied by this once, after lr_decay_epochs
    lr_decay_epochs: float = _RECIPE["lr_decay_epochs"]  # may be fractional; 0 = never
    lr_decay_step: int = (
        0  # the same point as an optimiser step (runs of older versions); 0 = unset
    )
    # the model's settings (dinctl/model_settings.py says what each one does)
    emb_dim: int = TRAIN_DEFAULTS["emb_dim"]
    emb_init_std: float = TRAIN_DEFAULTS["emb_init_std"]
    mlp_act: str = TRAIN_DEFAULTS["mlp_act"]
    dice_alpha_init: float = TRAIN_DEFAULTS["dice_alpha_init"]
    linear_init: str = TRAIN_DEFAULTS["linear_init"]
    max_len: int = 100
    attn_softmax: bool = TRAIN_DEFAULTS["attn_softmax"]
    use_item_ids: bool = TRAIN_DEFAULTS["use_item_ids"]
    length_buckets: bool = False  # batch rows of similar history length together
    sparse_grads: bool = True  # sparse embedding gradients where exact (see optim.use_sparse_grads)
    eval_batch_size: int = 4096
    device: str = "auto"
    amp: bool = False
    compile: bool = False
    shard_embeddings: bool = False  # TorchRec-sharded id tables under torchrun (sharded.py)
    seed: int = 1234
    out: str = ""  # run folder; "" = runs/<model>-<act>-<reg>-<UTC timestamp>
    log_every: int = 100
    threads: int = 0  # torch CPU threads; 0 = the training thread policy decides

    def __post_init__(self) -> None:
        for name in BOOL_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, bool):  # TOML/JSON booleans only: "false" is not false
                raise DinctlError(
                    f"{name} must be true or false, got {value!r} instead",
                    hint="write a boolean without quotes (true / false)",
                )
        for name in STR_FIELDS:
            if not isinstance(getattr(self, name), str):
                raise DinctlError(f"{name} must be a string, got {getattr(self, name)!r} instead")
        for name, allowed in CHOICE_FIELDS.items():
            value = getattr(self, name)
            if value not in allowed:
                raise DinctlError(
                    f"unknown {name} {value!r}; expected one of {', '.join(allowed)}",
                    hint=f"set {name} to one of the listed values",
                )
        for name, (low, high) in INT_RANGES.items():
            _check_int(name, getattr(self, name), low, high)
        for name, most in FLOAT_LIMITS.items():
            object.__setattr__(self, name, _check_float(name, getattr(self, name), most))
        if self.lr <= 0:
            raise DinctlError(f"lr must be greater than 0, got {self.lr!r} instead")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise DinctlError(f"dropout_rate must be in [0, 1), got {self.dropout_rate!r} instead")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> TrainConfig:
        """Build from a dict, naming the first unknown key in a one-line error."""
        check_keys(data, source)
        return cls(**data)

    def decay_step(self, steps_per_epoch: int) -> int:
        """The optimiser step of the one lr decay (0 = never)."""
        if self.lr_decay_step:
            return self.lr_decay_step
        return max(1, round(self.lr_decay_epochs * steps_per_epoch)) if self.lr_decay_epochs else 0

    def lr_at(self, step: int, steps_per_epoch: int = 0) -> float:
        """Learning rate for optimiser step `step` (0-based): one decay at `decay_step`."""
        at = self.decay_step(steps_per_epoch)
        if at and step >= at:
            return self.lr * self.lr_decay
        return self.lr

    def run_name(self, now: datetime | None = None) -> str:
        stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%d-%H%M%S")
        return f"{self.model}-{self.act}-{self.reg}-{stamp}"


FIELD_NAMES = tuple(f.name for f in fields(TrainConfig))

# Settings that may differ between invocations of the same run (where it is, how fast it runs,
# how long it may go on): everything else defines the run, and a resume must keep it.
NOT_IDENTITY_KEYS = frozenset(
    {
        "out",
        "data",
        "device",
        "amp",
        "compile",
        "log_every",
        "eval_batch_size",
        "threads",
        "epochs",
        "patience",
    }
)
# The training budget: a resume may extend it, but an experiment's table reports it, so an
# experiment treats a run trained with another budget as another run.
BUDGET_KEYS = frozenset({"epochs", "patience"})


def check_keys(data: dict[str, Any], source: str) -> None:
    """One-line error for the first key that is not a TrainConfig field."""
    for key in data:
        if key not in FIELD_NAMES:
            raise DinctlError(
                f"{source}: unknown key {key!r}",
                hint=f"valid keys: {', '.join(FIELD_NAMES)}",
            )


def read_toml(path: Path) -> dict[str, Any]:
    """Read a TOML config file (flat table; `-` in keys is accepted as `_`)."""
    from dinctl import toml

    path = Path(path)
    if not path.is_file():
        raise DinctlError(
            f"config file {path} does not exist", hint="pass an existing TOML file to --config"
        )
    try:
        data = toml.loads(path.read_text())
    except toml.TOMLDecodeError as err:
        raise DinctlError(f"{path} is not valid TOML ({err})") from None
    data = {k.replace("-", "_"): v for k, v in data.items()}
    check_keys(data, str(path))
    return data


def resolve_config(
    cli_overrides: dict[str, Any],
    config_file: Path | None = None,
    *,
    saved: TrainConfig | None = None,
    source: str = CONFIG_FILE,
) -> TrainConfig:
    """Recipe defaults < TOML file < explicit flags (None values in `cli_overrides` are unset).

    With `saved` (a resumed run's config, read from `source`), the flags may change only the
    NOT_IDENTITY_KEYS; any other flag must equal the saved value.
    """
    flags = {k: v for k, v in cli_overrides.items() if v is not None}
    check_keys(flags, "flags")
    if saved is not None:
        return _resumed(saved, flags, source)
    from_file = read_toml(config_file) if config_file is not None else {}
    recipe = flags.get("recipe", from_file.get("recipe", TrainConfig.recipe))
    if recipe not in RECIPES:
        raise DinctlError(f"unknown recipe {recipe!r}; expected one of {', '.join(RECIPES)}")
    merged: dict[str, Any] = {**RECIPE_DEFAULTS[recipe], **from_file, **flags}
    reg = merged.get("reg", TrainConfig.reg)
    if "reg_lambda" not in merged and reg in REG_LAMBDA_DEFAULTS[recipe]:
        merged["reg_lambda"] = REG_LAMBDA_DEFAULTS[recipe][reg]
    cfg = TrainConfig(**merged)
    if not cfg.out:
        cfg = replace(cfg, out=str(Path("runs") / cfg.run_name()))
    return cfg


def _resumed(saved: TrainConfig, flags: dict[str, Any], source: str) -> TrainConfig:
    """`saved` with the flags that may change between invocations applied."""
    changes: dict[str, Any] = {}
    for key, value in flags.items():
        if key == "recipe":  # a recipe only supplies defaults, and the saved config has them
            continue
        if key in NOT_IDENTITY_KEYS:
            changes[key] = value
        elif getattr(saved, key) != value:
            flag = "--" + key.replace("_", "-")
            raise DinctlError(
                f"{flag} {value} differs from the run's {getattr(saved, key)} in {source}",
                hint="a resumed run keeps its config; drop the flag or start a new run",
            )
    return replace(saved, **changes)
