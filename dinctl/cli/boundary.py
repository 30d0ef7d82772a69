"""The one place where library errors become exit codes and stderr lines."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
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
        real = sys.stdout
        sys.stdout = _GuardedStdout(real)  # type: ignore[assignment]
        try:
            result = func(*args, **kwargs)
            sys.stdout.flush()
            return result
        except DinctlError as err:
            print_error(err)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise typer.Exit(130) from None
        finally:
            sys.stdout = real

    return wrapper  # type: ignore[return-value]


class _GuardedStdout:
    """stdout whose write errors (a full disk, a closed pipe behind it) are a DinctlError:
    one line and exit 1, not a traceback (nor one more when Python exits)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def write(self, text: str) -> int:
        try:
            return int(self._stream.write(text))
        except OSError as err:
            raise self._failed(err) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as err:
            raise self._failed(err) from None

    def _failed(self, err: OSError) -> DinctlError:
        from dinctl.fsutil import write_error

        with contextlib.suppress(OSError, ValueError, AttributeError):  # later flushes: nowhere
            os.dup2(os.open(os.devnull, os.O_WRONLY), self._stream.fileno())
        return write_error(Path("standard output"), err, "write to")
