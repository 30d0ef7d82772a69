"""`dinctl predict`: batch-score a Parquet/CSV/JSONL file of requests into Parquet."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from dinctl.cli.boundary import user_errors


@user_errors
def predict(
    source: Annotated[
        Path, typer.Argument(metavar="RUN|BUNDLE", help="Run folder or export bundle.")
    ],
    input_path: Annotated[
        Path,
        typer.Option("--input", help="Requests: .parquet, .csv or .jsonl.", show_default=False),
    ],
    out: Annotated[
        Path | None,
        typer.Option(help="Output Parquet.", show_default="INPUT.scores.parquet"),
    ] = None,
    attention: Annotated[
        bool, typer.Option("--attention", help="Add each candidate's attention weights.")
    ] = False,
    batch_rows: Annotated[
        int, typer.Option(min=1, help="Requests read per batch (bounds memory).")
    ] = 4096,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output file.")] = False,
    bf16: Annotated[
        bool, typer.Option("--bf16", help="bfloat16 matmuls (RUN only; scores within 1e-3).")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar on stderr.")] = True,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON summary on stdout.")
    ] = False,
) -> None:
    """Score every request of a file: one output row per (request, candidate)."""
    from dinctl.serving.cpu_threads import wait_passively

    wait_passively()  # before anything imports torch
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from dinctl.errors import DinctlError
    from dinctl.fsutil import check_output_kind
    from dinctl.serving.predict import count_rows, predict_file
    from dinctl.serving.runtime import describe_engine, open_serving

    if out is None:
        out = input_path.with_name(input_path.name.split(".")[0] + ".scores.parquet")
        if out.resolve() == input_path.resolve():
            raise DinctlError(f"the default output {out} is the input file",
                              hint="name the output with --out")  # fmt: skip
    check_output_kind(out, "file")
    if out.exists() and not overwrite:
        raise DinctlError(f"{out} already exists", hint="pass --overwrite to replace it")
    model = open_serving(source, bf16=bf16)
    typer.echo(f"dinctl: {describe_engine(model)}", err=True)
    bar = Progress(
        TextColumn("scoring"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("requests"),
        console=Console(stderr=True),
        disable=not progress,
        transient=True,
    )
    with bar:
        task = bar.add_task("scoring", total=count_rows(input_path))
        summary = predict_file(
            model,
            input_path,
            out,
            attention=attention,
            batch_rows=batch_rows,
            on_rows=lambda n: bar.advance(task, n),
        )
    if as_json:
        print(json.dumps(summary.to_json(), indent=2))
    else:
        print(summary.output)
