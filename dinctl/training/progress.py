"""Progress on stderr: a rich bar while an epoch runs and one line per finished epoch."""

from __future__ import annotations

import sys
from typing import Any

from dinctl.training import distributed as D


class Progress:
    """A transient rich bar over an epoch's batches; does nothing when disabled or not a TTY."""

    def __init__(self, enabled: bool) -> None:
        self.fields = {"loss": "-", "speed": "-"}
        self._bar = _rich_bar() if enabled and sys.stderr.isatty() else None
        self._task: Any = None

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def start_epoch(self, description: str, total: int, completed: int) -> None:
        if self._bar is not None:
            self._task = self._bar.add_task(
                description, total=total, completed=completed, **self.fields
            )

    def advance(self) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=1, **self.fields)

    def end_epoch(self) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.remove_task(self._task)
            self._task = None


def _rich_bar() -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.progress import Progress as RichProgress

    return RichProgress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[speed]} samples/s  loss {task.fields[loss]}"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )


def epoch_line(record: dict[str, Any]) -> str:
    """One human line for a log.jsonl epoch record."""
    parts = [f"epoch {record['epoch']}", f"train loss {record['train_loss']:.4f}"]
    if "valid_user_weighted_auc" in record:
        parts += [
            f"valid AUC (user-weighted) {record['valid_user_weighted_auc']:.4f}",
            f"global AUC {record['valid_global_auc']:.4f}",
            f"logloss {record['valid_logloss']:.4f}",
        ]
    parts.append(f"{record['seconds']:.1f}s")
    return "  ".join(parts)


def say(info: D.DistInfo, message: str) -> None:
    if info.is_main:
        print(message, file=sys.stderr)
