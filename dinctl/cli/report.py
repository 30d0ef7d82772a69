"""How the CLI shows the library's reports (dinctl/reporting.py): lines and warnings on stderr,
phases as a spinner, progress as rich bars (batches: only on a terminal, gone when done;
bytes: from the first response on)."""

from __future__ import annotations

import sys
from typing import Any

from dinctl.reporting import Bar, NoBar, Reporter, no_bar, no_line, quiet

# A log or a pipe has no width: rich would assume 80 columns and split table cells over lines.
PIPE_WIDTH = 160


def stderr_console() -> Any:
    """The rich Console every command writes its tables, panels and bars to (stderr).

    On a terminal it takes the terminal's width; otherwise (CI logs, pipes, files) a fixed
    PIPE_WIDTH columns, so a table is never squeezed into 80 columns and no cell is split.
    """
    from rich.console import Console

    console = Console(stderr=True)
    if not console.is_terminal:
        console = Console(stderr=True, width=PIPE_WIDTH)
    return console


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
        console=stderr_console(),
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
