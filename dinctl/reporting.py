"""How the library reports while it works, silent by default; only `dinctl/cli/` renders it.

Three kinds of event, each a callback of `Reporter` that defaults to doing nothing:
  line(text)            a status line (a finished epoch, a download step, an experiment's run)
  warn(text)            a warning, without the "warning: " prefix (the CLI adds it)
  status(text)          a phase, as a context manager (the CLI shows a spinner while it runs)
  bar(text, unit)       progress of one task: a `Bar` told how far it is (`unit` is
                        "batches" or "bytes"); the CLI draws a rich bar on a terminal
The dataset builders take `status` and `warn` as keyword arguments (the same callbacks).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

Line = Callable[[str], None]
Warn = Callable[[str], None]
Status = Callable[[str], contextlib.AbstractContextManager[Any]]


class Bar(Protocol):
    """One task's progress: `update` with the units done so far (and the total when known)."""

    def update(self, completed: int, total: int | None = None, **fields: str) -> None: ...

    def close(self) -> None: ...


BarFactory = Callable[[str, str], Bar]  # (description, unit) → a bar


def no_line(_: str) -> None:
    """The line/warn callback that drops the message."""


no_warnings = no_line  # a dataset's warnings are still recorded in its meta.json


@contextlib.contextmanager
def quiet(_: str) -> Iterator[None]:
    """The status callback that shows nothing."""
    yield


class NoBar:
    """The bar that shows nothing."""

    def update(self, completed: int, total: int | None = None, **fields: str) -> None:
        pass

    def close(self) -> None:
        pass


def no_bar(_description: str, _unit: str) -> Bar:
    return NoBar()


@dataclass(frozen=True)
class Reporter:
    """The library's callbacks for status lines, warnings, phases and progress bars."""

    line: Line = no_line
    warn: Warn = no_line
    status: Status = quiet
    bar: BarFactory = no_bar


SILENT = Reporter()
