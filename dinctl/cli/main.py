"""The `dinctl` Typer app: registers one module per command."""

from __future__ import annotations

import sys

import typer

from dinctl import __version__
from dinctl.cli import (
    download,
    evaluate,
    experiment,
    export,
    predict,
    preprocess,
    quickstart,
    serve,
    train,
    visualize,
)

app = typer.Typer(
    name="dinctl",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        print(f"dinctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Deep Interest Network (DIN) CTR models: download → preprocess → train → evaluate → visualize.

    Start with `dinctl quickstart` (the bundled sample data, CPU, under a minute).
    """


app.add_typer(download.app, name="download")
app.add_typer(preprocess.app, name="preprocess")
app.command("train")(train.train)
app.command("evaluate")(evaluate.evaluate)
app.command("eval", hidden=True)(evaluate.evaluate)
app.add_typer(visualize.app, name="visualize")
app.add_typer(experiment.app, name="experiment")
app.command("quickstart")(quickstart.quickstart)
app.command("export")(export.export)
app.command("predict")(predict.predict)
app.command("serve")(serve.serve)


def main() -> None:
    """Console-script entry point."""
    sys.exit(app())
