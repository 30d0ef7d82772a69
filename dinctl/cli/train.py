"""`dinctl train`."""

from __future__ import annotations

import typer

from dinctl.cli.boundary import not_built, user_errors


@user_errors
def train() -> None:
    """Not built yet (issue #3)."""
    raise not_built("train", 3)
