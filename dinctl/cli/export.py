"""`dinctl export`: write a run's self-contained serving bundle (ONNX or torch.export)."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from dinctl.cli.boundary import user_errors


class BundleFormat(str, Enum):
    onnx = "onnx"
    torch = "torch"


@user_errors
def export(
    run: Annotated[
        Path, typer.Argument(metavar="RUN", help="Run folder written by `dinctl train`.")
    ],
    fmt: Annotated[
        BundleFormat, typer.Option("--format", help="ONNX graph, or a torch.export program.")
    ] = BundleFormat.onnx,
    out: Annotated[
        Path | None,
        typer.Option(help="Bundle folder.", show_default="RUN/bundle-FORMAT"),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing bundle folder.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON summary on stdout.")
    ] = False,
) -> None:
    """Export a trained run for serving; checks the bundle against the eager model (≤ 1e-5)."""
    from dinctl.serving.export import export_run

    result = export_run(run, fmt.value, out, overwrite=overwrite)
    print(
        f"parity: max |Δ logit| = {result.parity_max_abs_diff:.3g} over {result.parity_rows} "
        f"test rows (tolerance 1e-05): ok",
        file=sys.stderr,
    )
    if as_json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(result.out)
