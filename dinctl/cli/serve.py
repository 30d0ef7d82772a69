"""`dinctl serve`: an HTTP JSON scoring service (FastAPI + uvicorn, the `serve` extra)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dinctl.cli.boundary import user_errors

if TYPE_CHECKING:
    from dinctl.serving.runtime import ServingModel


@user_errors
def serve(
    source: Annotated[
        Path, typer.Argument(metavar="RUN|BUNDLE", help="Run folder or export bundle.")
    ],
    host: Annotated[str, typer.Option(help="Address to bind (loopback unless told).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    max_candidates: Annotated[
        int, typer.Option(min=1, help="Most candidates a request may send.")
    ] = (1000),
    max_history: Annotated[int, typer.Option(min=0, help="Longest history a request may send.")] = (
        1000
    ),
    batch_window_ms: Annotated[
        float, typer.Option(min=0.0, help="Merge requests arriving within this window (0 = off).")
    ] = 0.0,
    max_batch: Annotated[int, typer.Option(min=1, help="Most requests merged per forward.")] = 32,
    threads: Annotated[
        int, typer.Option(min=0, help="Intra-op threads per forward (0 = library default).")
    ] = 0,
    lanes: Annotated[
        int,
        typer.Option(
            min=1, help="Forward passes that run at once (threads); they share --threads."
        ),
    ] = 1,
    bf16: Annotated[
        bool, typer.Option("--bf16", help="bfloat16 matmuls (RUN only; scores within 1e-3).")
    ] = False,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve POST /score, GET /health and GET /metadata until SIGTERM or Ctrl-C."""
    from dinctl.serving.cpu_threads import wait_passively

    wait_passively()  # before anything imports torch
    from dinctl.serving.engines import missing_extra

    try:
        from dinctl.serving.server import Limits
        from dinctl.serving.server import serve as run_server
    except ImportError as err:
        raise missing_extra(err.name or "fastapi") from None
    from dinctl.serving.address import check_bindable, every_interface

    check_bindable(host, port)
    if every_interface(host):
        print(
            f"warning: --host {host!r} listens on every network interface, with no "
            "authentication: anyone who can reach this machine can query the model",
            file=sys.stderr,
        )
    limits = Limits(
        max_candidates=max_candidates,
        max_history=max_history,
        batch_window_ms=batch_window_ms,
        max_batch=max_batch,
        lanes=lanes,
    )
    run_server(
        source,
        host=host,
        port=port,
        workers=workers,
        limits=limits,
        bf16=bf16,
        threads=threads,
        log_level=log_level,
        on_open=report_engine,
    )


def report_engine(model: ServingModel) -> None:
    """The engine that serves and its start-up speed against the floor, on stderr."""
    from dinctl.serving.runtime import describe_engine, measure_speed

    typer.echo(f"dinctl: {describe_engine(model, measure_speed(model))}", err=True)
