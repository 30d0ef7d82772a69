"""`dinctl visualize`."""

from __future__ import annotations

import typer

from dinctl.cli.boundary import not_built, user_errors


@user_errors
def visualize() -> None:
    """Not built yet (issue #6)."""
    raise not_built("visualize", 6)
