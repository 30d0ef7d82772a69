"""`dinctl download`."""

from __future__ import annotations

import typer

from dinctl.cli.boundary import not_built, user_errors


@user_errors
def download() -> None:
    """Not built yet (issue #5)."""
    raise not_built("download", 5)
