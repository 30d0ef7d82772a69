"""What training reports while it runs (through dinctl/reporting.py; the CLI draws it): a bar
over an epoch's batches and one line per finished epoch."""

from __future__ import annotations

from typing import Any

from dinctl.reporting import Bar, NoBar, Reporter
from dinctl.runs import (
    EPOCH_SECONDS,
    TRAIN_LOSS,
    VALID_GLOBAL_AUC,
    VALID_LOGLOSS,
    VALID_USER_WEIGHTED_AUC,
)


class Progress:
    """The bar of the epoch that runs: `start_epoch`, `advance` per batch, `end_epoch`."""

    def __init__(self, reporter: Reporter) -> None:
        self.fields = {"loss": "-", "speed": "-"}
        self._reporter = reporter
        self._bar: Bar = NoBar()
        self._done = 0
        self._total = 0

    def start_epoch(self, description: str, total: int, completed: int) -> None:
        self._bar = self._reporter.bar(description, "batches")
        self._done, self._total = completed, total
        self._bar.update(completed, total, **self.fields)

    def advance(self) -> None:
        self._done += 1
        self._bar.update(self._done, self._total, **self.fields)

    def end_epoch(self) -> None:
        self._bar.close()
        self._bar = NoBar()


def epoch_line(record: dict[str, Any]) -> str:
    """One human line for a log.jsonl epoch record."""
    parts = [f"epoch {record['epoch']}", f"train loss {record[TRAIN_LOSS]:.4f}"]
    if VALID_USER_WEIGHTED_AUC in record:
        parts += [
            f"valid AUC (user-weighted) {record[VALID_USER_WEIGHTED_AUC]:.4f}",
            f"global AUC {record[VALID_GLOBAL_AUC]:.4f}",
            f"logloss {record[VALID_LOGLOSS]:.4f}",
        ]
    parts.append(f"{record[EPOCH_SECONDS]:.1f}s")
    return "  ".join(parts)
