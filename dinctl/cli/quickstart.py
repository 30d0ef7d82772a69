"""`dinctl quickstart`: the whole pipeline on the bundled sample data, on CPU, in seconds."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from dinctl.cli.boundary import user_errors


@user_errors
def quickstart(
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("quickstart"),
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Replace --out even if it was not made by quickstart (an earlier quickstart "
            "is always replaced).",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Preprocess the sample Amazon data, train DIN with Dice, evaluate it and draw the plots."""
    from dinctl.cli.report import cli_reporter, stderr_console
    from dinctl.quickstart import run_quickstart

    console = stderr_console()

    @contextlib.contextmanager
    def stage(line: str) -> Iterator[None]:
        console.print(f"[bold cyan]▸[/] {line}")
        yield

    reporter = cli_reporter(lines=not as_json, bars=not as_json, status=stage)
    result = run_quickstart(out, overwrite=overwrite, reporter=reporter)
    console.print(_panel(result))
    console.print(  # outside the panel: a terminal never wraps a command mid-word
        f"next: dinctl evaluate {result.run_dir}\n"
        f"      dinctl visualize attention {result.run_dir}\n"
        "      dinctl experiment table3 --help",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    if as_json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(result.data)
        print(result.run_dir)
        for path in result.plots.values():
            print(path)


def _panel(result: Any) -> Any:
    from rich.panel import Panel
    from rich.table import Table

    from dinctl import runs

    m = result.metrics
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row(
        "test AUC",
        f"[bold green]{m['user_weighted_auc']:.4f}[/]  (user-weighted, Eq. 10;"
        f" global AUC {m['global_auc']:.4f})",
    )
    grid.add_row("test logloss", f"{m['logloss']:.4f}  (best epoch {result.best_epoch})")
    grid.add_row("dataset", str(result.data))
    names = ", ".join((runs.CONFIG_FILE, runs.BEST_FILE, runs.LOG_FILE))
    grid.add_row("run", f"{result.run_dir}  ({names})")
    predictions = result.run_dir / runs.predictions_file("test")
    grid.add_row("predictions", f"{predictions}, {runs.metrics_file('test')}")
    for name, path in result.plots.items():
        grid.add_row(f"{name} plot", str(path))
    return Panel(
        grid,
        title=f"dinctl quickstart: DIN with Dice on the sample data ({result.seconds:.0f} s)",
        title_align="left",
        expand=False,  # as wide as its lines, on a terminal and in a log alike
    )
