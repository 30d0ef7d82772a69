"""`dinctl download <dataset>`: raw files into data/raw/, one command per registered dataset with a
source (dinctl/data/datasets/)."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from dinctl.cli.boundary import user_errors
from dinctl.data.datasets import DATASETS, Download, Setting, resolve

app = typer.Typer(
    help="Fetch a raw public dataset into data/raw/<dataset>/ (verified, resumable).",
    no_args_is_help=True,
)

Out = Annotated[
    Path | None, typer.Option("--out", help="Target folder.", show_default="data/raw/<dataset>")
]
Mirror = Annotated[
    list[str] | None,
    typer.Option(
        "--mirror",
        metavar="BASE_URL",
        help="Base URL to fetch from instead of the built-in mirrors (repeat to try several).",
    ),
]
Url = Annotated[
    list[str] | None,
    typer.Option("--url", help="Exact URL of a file, ending in its name (repeatable)."),
]
From = Annotated[
    Path | None,
    typer.Option(
        "--from",
        metavar="FILE_OR_DIR",
        help="Register files you already have: verified, then hard-linked (or copied) in.",
    ),
]
Force = Annotated[bool, typer.Option("--force", help="Download again even if complete.")]
Retries = Annotated[
    int, typer.Option("--tries", min=1, max=100, help="Attempts per URL on transient errors.")
]
Timeout = Annotated[
    float, typer.Option("--timeout", min=0.01, help="Seconds to wait for the server to answer.")
]
NoProgress = Annotated[bool, typer.Option("--no-progress", help="No progress bar on stderr.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print MANIFEST.json on stdout.")]
MaxExtract = Annotated[
    int | None,
    typer.Option(
        "--max-extract-bytes",
        min=1,
        metavar="N",
        help="Refuse a zip whose members expand to more than N bytes in all (default 8 GiB).",
    ),
]


def parameter(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    """A keyword parameter of a command built at import time (typer reads its signature)."""
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
    )


def setting_parameter(setting: Setting) -> inspect.Parameter:
    """A dataset's setting as a keyword parameter carrying its `--<name>` option."""
    kind: Any = setting.kind | None if setting.optional else setting.kind
    option = typer.Option(f"--{setting.name.replace('_', '-')}", help=setting.help, min=setting.min)
    return parameter(setting.name, Annotated[kind, option], setting.default)


def _run(spec: Download, name: str, values: dict[str, Any]) -> None:
    """Fetch (or register `--from`) the dataset's files with its `fetch`, as the command's
    option `values` say; print the folder or the manifest."""
    from dinctl.cli.report import print_line, rich_bar
    from dinctl.data.archives import MAX_EXTRACT_BYTES
    from dinctl.data.download import RetryPolicy
    from dinctl.data.sources import with_urls
    from dinctl.reporting import no_bar

    settings = {s.name: values[s.name] for s in spec.settings}
    source = resolve(spec.source)(mirrors=tuple(values["mirror"] or ()), **settings)
    source = with_urls(source, tuple(values.get("url") or ()))
    out = values["out"] or Path(f"data/raw/{name}")
    manifest = resolve(spec.fetch)(
        source,
        out,
        from_path=values["from_path"],
        force=values["force"],
        policy=RetryPolicy(tries=values["tries"], timeout_s=values["timeout"]),
        bar=no_bar if values["no_progress"] else rich_bar,
        log=print_line,
        max_extract_bytes=values.get("max_extract_bytes") or MAX_EXTRACT_BYTES,
    )
    print(json.dumps(manifest, indent=2, sort_keys=True) if values["as_json"] else out)


# the options every `dinctl download <dataset>` takes after --out, --mirror (and --url)
_COMMON: tuple[tuple[str, Any, Any], ...] = (
    ("from_path", From, None),
    ("force", Force, False),
    ("tries", Retries, 5),
    ("timeout", Timeout, 30.0),
    ("no_progress", NoProgress, False),
    ("as_json", AsJson, False),
)


def _download_command(name: str, spec: Download) -> None:
    """Register `dinctl download <name>`: its settings first, then the common options."""
    params = [setting_parameter(setting) for setting in spec.settings]
    params += [parameter("out", Out, None), parameter("mirror", Mirror, None)]
    if spec.urls:
        params.append(parameter("url", Url, None))
    params += [parameter(*common) for common in _COMMON]
    if spec.max_extract:
        params.append(parameter("max_extract_bytes", MaxExtract, None))

    def command(**values: Any) -> None:
        _run(spec, name, values)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__doc__ = spec.help
    command.__name__ = name.replace("-", "_")
    app.command(name)(user_errors(command))


for _dataset in DATASETS:
    if _dataset.download is not None:
        _download_command(_dataset.name, _dataset.download)
