"""The `dinctl` Typer app: registers one module per command, in the pipeline's order."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

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

# `dinctl --help` lists commands in the order a pipeline runs them
COMMAND_ORDER = (
    "download",
    "preprocess",
    "train",
    "evaluate",
    "visualize",
    "export",
    "predict",
    "serve",
    "experiment",
    "quickstart",
)


class PipelineOrder(TyperGroup):
    def list_commands(self, ctx: Any) -> list[str]:
        names = list(self.commands)
        return sorted(names, key=lambda n: (COMMAND_ORDER + (n,)).index(n))


app = typer.Typer(
    name="dinctl",
    cls=PipelineOrder,
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
    version: Annotated[
        bool | None,
        typer.Option(
            "--version",
            callback=_version,
            is_eager=True,
            help="Print the version and exit.",
            show_default=False,
            metavar="",  # a flag: no `<bool>` value column in --help
        ),
    ] = None,
) -> None:
    """Deep Interest Network (DIN) CTR models: download → preprocess → train → evaluate → visualize.

    First run: `dinctl quickstart` (the sample data shipped with dinctl, CPU, seconds).
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
    """Console-script entry point: usage errors are one `error:` line plus a `hint:` line."""
    try:
        from typer._click import exceptions as cx  # typer >= 0.24 vendors click
    except ImportError:  # pragma: no cover - older typer
        from click import exceptions as cx  # type: ignore[no-redef]

    try:
        code = app(standalone_mode=False)
    except cx.NoArgsIsHelpError as err:
        print(err.ctx.get_help() if err.ctx is not None else "")
        sys.exit(2)
    except cx.UsageError as err:
        command = err.ctx.command_path if err.ctx is not None else "dinctl"
        print(f"error: {err.format_message()}", file=sys.stderr)
        print(f"hint: see `{command} --help`", file=sys.stderr)
        sys.exit(2)
    except typer.Abort:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except cx.ClickException as err:
        print(f"error: {err.format_message()}", file=sys.stderr)
        sys.exit(err.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
