"""What the training steps share: the data, the model parts, the changing state, one run."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dinctl.data.batching import SplitTensors, WindowGatherer
from dinctl.data.store import Dataset
from dinctl.training import distributed as D
from dinctl.training.checkpoint import RunConfig
from dinctl.training.config import TrainConfig
from dinctl.training.progress import Progress
from dinctl.training.regularizers import Regularizer
from dinctl.training.runlog import RunLog


@dataclass
class Data:
    """The dataset's splits on the training device."""

    ds: Dataset
    train_rows: SplitTensors
    valid_rows: SplitTensors | None
    gatherer: WindowGatherer
    freqs: dict[str, torch.Tensor]  # n_j per id space, for MBA


@dataclass
class Parts:
    """The model and what updates it."""

    rc: RunConfig
    model: nn.Module  # state dicts always come from here
    step_model: nn.Module  # `model` behind DDP / torch.compile
    optimizers: list[torch.optim.Optimizer]
    reg: Regularizer
    reg_rng: torch.Generator  # behaviour dropout's generator, saved in checkpoints


@dataclass
class TrainState:
    """Everything that changes while training; checkpoint.pt holds it."""

    step: int = 0
    epoch: int = 0  # epochs finished
    batch_pos: int = 0  # batches finished in the current epoch
    sums: torch.Tensor = field(default_factory=lambda: torch.zeros(4, dtype=torch.float64))
    best: dict[str, Any] = field(  # score: the selection metric of the best epoch
        default_factory=lambda: {"epoch": 0, "score": -math.inf, "valid": {}}
    )
    history: list[dict[str, Any]] = field(default_factory=list)
    keep_lines: int | None = None  # log.jsonl lines to keep on resume
    epochs_run: int = 0  # epochs finished by this invocation
    bad_step: torch.Tensor = field(default_factory=lambda: torch.full((), -1, dtype=torch.long))
    window_start: float = field(default_factory=time.perf_counter)
    window_samples: int = 0


@dataclass
class Run:
    """One training invocation: settings, data, model and state together."""

    cfg: TrainConfig
    device: torch.device
    info: D.DistInfo
    data: Data
    parts: Parts
    state: TrainState
    log: RunLog
    bar: Progress
    use_amp: bool
    steps_per_epoch: int  # global batches per epoch (the lr decay point is counted in them)
    on_step: Callable[[int], None] | None = None

    @property
    def run_dir(self) -> Path:
        return Path(self.cfg.out)
