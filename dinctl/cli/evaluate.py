"""`dinctl evaluate`."""

from __future__ import annotations

import typer

from dinctl.cli.boundary import not_built, user_errors


@user_errors
def evaluate() -> None:
    """Not built yet (issue #4)."""
    raise not_built("evaluate", 4)
