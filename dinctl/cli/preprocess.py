"""`dinctl preprocess`."""

from __future__ import annotations

import typer

from dinctl.cli.boundary import not_built, user_errors

app = typer.Typer(help="Turn raw logs into a DIN dataset (data/<dataset>/).", no_args_is_help=True)


@app.command()
@user_errors
def amazon() -> None:
    """Amazon 2014 5-core reviews + meta."""
    raise not_built("preprocess", 2)
