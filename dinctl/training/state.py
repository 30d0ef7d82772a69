"""What the training steps share: the data, the model parts, the changing state, one run."""

from __future__ import annotations

import json
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
from dinctl.reporting import Reporter
from dinctl.training import distributed
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


@dataclass(kw_only=True)
class Parts:
    """The model and what updates it."""

    rc: RunConfig
    model: nn.Module  # state dicts always come from here
    step_model: nn.Module  # `model` behind DDP / torch.compile
    optimizers: list[torch.optim.Optimizer]
    reg: Regularizer
    reg_rng: torch.Generator  # behaviour dropout's generator, saved in checkpoints
    sharded: Any = None  # sharded.ShardedModel under --shard-embeddings (state dicts from it)


@dataclass
class LossSums:
    """Training-loss sums (float64, on the training device): over the steps since the last step
    line of log.jsonl, and over the epoch; each (2,) = (sum of batch losses, batches), so one
    all_reduce adds them up across ranks."""

    window: torch.Tensor = field(default_factory=lambda: torch.zeros(2, dtype=torch.float64))
    epoch: torch.Tensor = field(default_factory=lambda: torch.zeros(2, dtype=torch.float64))

    def add(self, loss: torch.Tensor) -> None:
        """Count one batch's mean loss (a 0-d tensor, not synchronised to the host)."""
        one = torch.stack([loss.detach().double(), loss.new_ones((), dtype=torch.float64)])
        self.window += one
        self.epoch += one

    def epoch_mean(self) -> float:
        """The epoch's mean batch loss so far (reads the device; nan before the first batch)."""
        loss, batches = self.epoch.tolist()
        return loss / batches if batches else math.nan

    def to(self, device: torch.device) -> LossSums:
        return LossSums(self.window.to(device), self.epoch.to(device))

    def packed(self) -> torch.Tensor:
        """(4,) window loss, window batches, epoch loss, epoch batches: checkpoint.pt's "sums"."""
        return torch.cat([self.window, self.epoch]).cpu()

    @classmethod
    def unpack(cls, sums: torch.Tensor) -> LossSums:
        sums = sums.to(dtype=torch.float64)
        return cls(sums[:2].clone(), sums[2:].clone())


@dataclass
class Best:
    """The best epoch so far: its number (0 = none yet), selection score, validation metrics."""

    epoch: int = 0
    score: float = -math.inf
    valid: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> str:
        """checkpoint.pt's "best" (a -inf score, no validation yet, is written as null)."""
        score = None if self.score == -math.inf else self.score
        return json.dumps({"epoch": self.epoch, "score": score, "valid": self.valid})


@dataclass
class TrainState:
    """Everything that changes while training; checkpoint.pt holds it."""

    step: int = 0
    epoch: int = 0  # epochs finished
    batch_pos: int = 0  # batches finished in the current epoch
    sums: LossSums = field(default_factory=LossSums)
    best: Best = field(default_factory=Best)
    history: list[dict[str, Any]] = field(default_factory=list)
    keep_lines: int | None = None  # log.jsonl lines to keep on resume
    epochs_run: int = 0  # epochs finished by this invocation
    bad_step: torch.Tensor = field(default_factory=lambda: torch.full((), -1, dtype=torch.long))
    window_start: float = field(default_factory=time.perf_counter)
    window_samples: int = 0


@dataclass(kw_only=True)
class Run:
    """One training invocation: settings, data, model and state together."""

    cfg: TrainConfig
    device: torch.device
    info: distributed.DistInfo
    data: Data
    parts: Parts
    state: TrainState
    log: RunLog
    bar: Progress
    reporter: Reporter
    use_amp: bool
    steps_per_epoch: int  # global batches per epoch (the lr decay point is counted in them)
    on_step: Callable[[int], None] | None = None

    @property
    def run_dir(self) -> Path:
        return Path(self.cfg.out)
