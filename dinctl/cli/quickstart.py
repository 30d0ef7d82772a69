"""`dinctl quickstart`."""

from __future__ import annotations

import typer

from dinctl.cli.boundary import not_built, user_errors


@user_errors
def quickstart() -> None:
    """Not built yet (issue #7)."""
    raise not_built("quickstart", 7)
