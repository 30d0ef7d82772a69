"""The one place where library errors become exit codes and stderr lines."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from dinctl.errors import DinctlError

F = TypeVar("F", bound=Callable[..., Any])


def print_error(err: DinctlError) -> None:
    """Write `error: ...` and, when there is one, `hint: ...` to stderr."""
    print(f"error: {err.message}", file=sys.stderr)
    if err.hint:
        print(f"hint: {err.hint}", file=sys.stderr)


def user_errors(func: F) -> F:
    """Turn DinctlError into exit 1 and Ctrl-C into exit 130 for a Typer command."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except DinctlError as err:
            print_error(err)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


# A log or a pipe has no width: rich would assume 80 columns and split table cells over lines.
PIPE_WIDTH = 160


def stderr_console() -> Any:
    """The rich Console every command writes its tables and progress to (stderr).

    On a terminal it takes the terminal's width; otherwise (CI logs, pipes, files) a fixed
    PIPE_WIDTH columns, so a table is never squeezed into 80 columns and no cell is split.
    """
    from rich.console import Console

    console = Console(stderr=True)
    if not console.is_terminal:
        console = Console(stderr=True, width=PIPE_WIDTH)
    return console
