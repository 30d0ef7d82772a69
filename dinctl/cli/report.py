"""How the CLI shows the library's reports (dinctl/reporting.py): lines and warnings on stderr,
phases as a spinner, progress as rich bars (batches: only on a terminal, gone when done;
bytes: from the first response on)."""

from __future__ import annotations

import sys
from typing import Any

from dinctl.reporting import Bar, NoBar, Reporter, no_bar, no_line, quiet


def stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def print_line(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def print_warning(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr, flush=True)


class RichBar:
    """One rich progress bar, started by its first update."""

    def __init__(self, description: str, unit: str) -> None:
        self.description, self.unit = description, unit
        self._progress: Any = None
        self._task: Any = None

    def update(self, completed: int, total: int | None = None, **fields: str) -> None:
        if self._progress is None:
            self._progress = _rich_progress(self.unit)
            self._progress.start()
            self._task = self._progress.add_task(self.description, total=total, **fields)
        self._progress.update(self._task, completed=completed, total=total, **fields)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def rich_bar(description: str, unit: str) -> Bar:
    """A bar of batches on a terminal only (a log file gets the epoch lines); bytes always."""
    if unit == "batches" and not sys.stderr.isatty():
        return NoBar()
    return RichBar(description, unit)


def _rich_progress(unit: str) -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    if unit == "bytes":
        columns: tuple[Any, ...] = (DownloadColumn(), TransferSpeedColumn())
    else:
        columns = (
            MofNCompleteColumn(),
            TextColumn("{task.fields[speed]} samples/s  loss {task.fields[loss]}"),
        )
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        *columns,
        TimeRemainingColumn(),
        console=Console(file=sys.stderr),
        transient=unit != "bytes",
    )


def cli_reporter(*, lines: bool = True, bars: bool = True, status: Any = None) -> Reporter:
    """The reporter a command hands the library: warnings always; lines and bars unless
    `--json` (or `--no-progress`) turned them off; `status`, a phase renderer, when given."""
    return Reporter(
        line=print_line if lines else no_line,
        warn=print_warning,
        status=status if status is not None else quiet,
        bar=rich_bar if bars else no_bar,
    )
