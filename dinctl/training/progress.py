"""What training reports while it runs (through dinctl/reporting.py; the CLI draws it): a bar
over an epoch's batches and one line per finished epoch."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from dinctl.reporting import Bar, NoBar, Reporter
from dinctl.runs import (
    EPOCH_SECONDS,
    METRIC_LABELS,
    TRAIN_LOSS,
    VALID_GLOBAL_AUC,
    VALID_LOGLOSS,
    VALID_USER_WEIGHTED_AUC,
)

REFRESH_S = 0.5  # how often the bar's speed and loss change


class Progress:
    """The bar of the epoch that runs: `start_epoch`, `advance` per batch, `end_epoch`."""

    def __init__(self, reporter: Reporter) -> None:
        self.fields = {"loss": "-", "speed": "-"}
        self._reporter = reporter
        self._bar: Bar = NoBar()
        self._done = 0
        self._total = 0
        self._started = self._shown = -math.inf
        self._samples = 0

    def start_epoch(self, description: str, total: int, completed: int) -> None:
        self._bar = self._reporter.bar(description, "batches")
        self._done, self._total = completed, total
        self._started, self._shown, self._samples = time.perf_counter(), -math.inf, 0
        self._bar.update(completed, total, **self.fields)

    def advance(self, samples: int = 0, epoch_loss: Callable[[], float] | None = None) -> None:
        """One batch of `samples` rows. Speed and the epoch's mean loss so far refresh on the
        first batch and then at most every REFRESH_S, whatever --log-every is (so the loss is
        read off the device that rarely, and only when a bar is drawn)."""
        self._done += 1
        self._samples += samples
        now = time.perf_counter()
        if not isinstance(self._bar, NoBar) and now - self._shown >= REFRESH_S:
            self.fields["speed"] = f"{self._samples / max(now - self._started, 1e-9):,.0f}"
            if epoch_loss is not None:
                self.fields["loss"] = f"{epoch_loss():.4f}"
            self._shown = now
        self._bar.update(self._done, self._total, **self.fields)

    def end_epoch(self) -> None:
        self._bar.close()
        self._bar = NoBar()


def epoch_line(record: dict[str, Any]) -> str:
    """One human line for a log.jsonl epoch record."""
    parts = [f"epoch {record['epoch']}", f"train loss {record[TRAIN_LOSS]:.4f}"]
    if VALID_USER_WEIGHTED_AUC in record:
        parts += [
            f"valid {METRIC_LABELS['user_weighted_auc']} {record[VALID_USER_WEIGHTED_AUC]:.4f}",
            f"{METRIC_LABELS['global_auc']} {record[VALID_GLOBAL_AUC]:.4f}",
            f"logloss {record[VALID_LOGLOSS]:.4f}",
        ]
    parts.append(f"{record[EPOCH_SECONDS]:.1f}s")
    return "  ".join(parts)
