"""Which epoch is best: the validation metrics under their names, the selection metric, and
early stopping."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dinctl.data.batching import SplitTensors
from dinctl.runs import (
    VALID_GLOBAL_AUC,
    VALID_LOGLOSS,
    VALID_USER_WEIGHTED_AUC,
    normalize_log_record,
    valid_key,
)
from dinctl.training import distributed
from dinctl.training.config import TrainConfig


@dataclass(frozen=True)
class Truth:
    """The labels and users of a whole split (gathered from the ranks' shares)."""

    label: torch.Tensor  # (n,) float32
    user: torch.Tensor  # (n,) int64


def truth(rows: SplitTensors, info: distributed.DistInfo) -> SplitTensors | Truth:
    """`rows` when they are the whole split, else every rank's share of labels and users."""
    if info.world_size == 1 or not rows.is_share:
        return rows
    gather = distributed.gather_shares
    return Truth(gather(rows.label, info), gather(rows.user, info))


def valid_metrics(prob: torch.Tensor, rows: SplitTensors | Truth) -> dict[str, float]:
    """User-weighted AUC (Eq. 10), global AUC and log loss of validation predictions."""
    from dinctl.metrics import auc_score, log_loss, user_weighted_auc_score

    y = rows.label.cpu().numpy()
    p = prob.numpy().astype(np.float64)
    user = rows.user.cpu().numpy()
    return {
        VALID_USER_WEIGHTED_AUC: user_weighted_auc_score(y, p, user),
        VALID_GLOBAL_AUC: auc_score(y, p),
        VALID_LOGLOSS: log_loss(y, p),
    }


def selection_key(cfg: TrainConfig) -> str:
    """The validation record key that picks the best epoch: `valid_<select_metric>`."""
    return valid_key(cfg.select_metric)


def selection_score(valid: dict[str, Any], key: str) -> float:
    """`valid[key]`, read under its old name in records of older runs; -inf when absent."""
    value = normalize_log_record(valid).get(key)
    return -math.inf if value is None else float(value)


def patience_ran_out(patience: int, epochs_done: int, best_epoch: int) -> bool:
    """Early stopping: `patience` epochs have passed since the best one (0 = never stop)."""
    if patience == 0 or best_epoch == 0:
        return False
    return epochs_done - best_epoch >= patience
