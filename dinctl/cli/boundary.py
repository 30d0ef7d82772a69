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

