"""`dinctl evaluate` (alias `dinctl eval`): score runs and print the paper's Table 3 layout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from dinctl.choices import Device
from dinctl.choices import SelectMetric as FailMetric
from dinctl.choices import Split as SplitName
from dinctl.cli.boundary import user_errors
from dinctl.cli.report import stderr_console


@user_errors
def evaluate(
    runs: Annotated[
        list[Path] | None,
        typer.Argument(
            metavar="[RUN_DIR]...",
            help="Run folders, or experiment folders holding runs.",
            show_default="the most recent run under --runs-root",
        ),
    ] = None,
    split: Annotated[SplitName, typer.Option(help="Split to score.")] = SplitName.test,
    baseline: Annotated[
        Path | None,
        typer.Option(
            help="Run that RelaImpr is relative to.",
            show_default="the run whose model is `base`",
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
            help="Exit 1 when any run's --fail-metric is below this value (CI gating).",
            show_default=False,
        ),
    ] = None,
    fail_metric: Annotated[
        FailMetric,
        typer.Option(
            help="Metric --fail-under gates: the paper's AUC (user-weighted, Eq. 10) or the "
            "global AUC."
        ),
    ] = FailMetric.user_weighted_auc,
    runs_root: Annotated[
        Path, typer.Option(help="Where to look for the most recent run when none is given.")
    ] = Path("runs"),
    device: Annotated[Device, typer.Option(help="Device to score on.")] = Device.cpu,
) -> None:
    """Score runs: AUC (user-weighted, Eq. 10), global AUC, logloss, RelaImpr. Alias: eval."""
    from dinctl.evaluation import check_fail_under, evaluate_runs
    from dinctl.tables import render_rich

    result = evaluate_runs(
        runs or [],
        split=split.value,
        baseline=baseline,
        runs_root=runs_root,
        device=device.value,
    )
    title = f"{result.table.title}, {result.seconds:.1f}s"
    stderr_console().print(render_rich(result.table, title=title))
    if as_json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        for m in result.results:
            print(m.metrics_file)
    if fail_under is not None:
        check_fail_under(result.results, fail_under, fail_metric.value)
