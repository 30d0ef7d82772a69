"""`dinctl evaluate` (alias `dinctl eval`): score runs and print the paper's Table 3 layout."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from dinctl.cli.boundary import user_errors


class SplitName(str, Enum):
    test = "test"
    valid = "valid"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


@user_errors
def evaluate(
    runs: Annotated[
        list[Path] | None,
        typer.Argument(
            metavar="[RUN_DIR]...",
            help="Run folders, or experiment folders holding runs. (default: the most recent "
            "run under --runs-root)",
            show_default=False,
        ),
    ] = None,
    split: Annotated[SplitName, typer.Option(help="Split to score.")] = SplitName.test,
    baseline: Annotated[
        Path | None,
        typer.Option(
            help="Run that RelaImpr is relative to. (default: the run whose model is `base`)",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the table rows as JSON on stdout.")
    ] = False,
    fail_under: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Exit 1 when any run's AUC is below this value (CI gating).",
            show_default=False,
        ),
    ] = None,
    runs_root: Annotated[
        Path, typer.Option(help="Where to look for the most recent run when none is given.")
    ] = Path("runs"),
    device: Annotated[Device, typer.Option(help="Device to score on.")] = Device.cpu,
) -> None:
    """Score trained runs: AUC, user-weighted AUC, logloss and RelaImpr, as in Table 3."""
    from rich.console import Console
    from rich.table import Table

    from dinctl.evaluation import TABLE_HEADER, check_fail_under, evaluate_runs

    result = evaluate_runs(
        runs or [],
        split=split.value,
        baseline=baseline,
        runs_root=runs_root,
        device=device.value,
    )
    comparison = result.comparison
    if comparison.baseline_run is None:
        caption = "RelaImpr: no baseline (no run with model `base`; pass --baseline)"
    else:
        caption = f"RelaImpr vs {comparison.baseline_run} (AUC {comparison.baseline_auc:.4f})"
    table = Table(
        title=f"{split.value} split, {len(comparison.rows)} run(s), {result.seconds:.1f}s",
        title_justify="left",
        caption=caption,
        caption_justify="left",
    )
    for i, col in enumerate(TABLE_HEADER):
        table.add_column(col, justify="left" if i < 4 else "right")
    for row in comparison.rows:
        table.add_row(*row.cells())
    console = Console(stderr=True)
    if not console.is_terminal:  # logs and pipes: never squeeze the table into 80 columns
        console = Console(stderr=True, width=160)
    console.print(table)

    if as_json:
        print(json.dumps(comparison.to_json(), indent=2))
    else:
        for row in comparison.rows:
            print(row.metrics_file)
    if fail_under is not None:
        check_fail_under(comparison, fail_under)
