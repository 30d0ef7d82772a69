"""`dinctl download amazon | movielens | taobao | taobao-ad`: raw files into data/raw/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from dinctl.cli.boundary import user_errors

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


def _run(
    source: Any,
    out: Path,
    from_path: Path | None,
    force: bool,
    tries: int,
    timeout: float,
    no_progress: bool,
    as_json: bool,
    max_extract_bytes: int | None = None,
    *,
    tianchi: bool = False,
) -> None:
    """Fetch (or register `--from`) `source` into `out`; print the folder or the manifest."""
    from dinctl.cli.report import print_line, rich_bar
    from dinctl.data import download as dl
    from dinctl.data.archives import MAX_EXTRACT_BYTES
    from dinctl.reporting import no_bar

    limit = max_extract_bytes or MAX_EXTRACT_BYTES
    policy = dl.RetryPolicy(tries=tries, timeout_s=timeout)
    bar = no_bar if no_progress else rich_bar
    if from_path is not None and tianchi:
        manifest = dl.register_tianchi(
            source, out, from_path, max_extract_bytes=limit, log=print_line
        )
    elif from_path is not None:
        manifest = dl.register_local(
            source, out, from_path, force=force, max_extract_bytes=limit, log=print_line
        )
    elif tianchi:
        manifest = dl.download_tianchi(
            source, out, force=force, policy=policy, bar=bar, log=print_line
        )
    else:
        manifest = dl.download(
            source, out, force=force, policy=policy, bar=bar, log=print_line,
            max_extract_bytes=limit,
        )  # fmt: skip
    print(json.dumps(manifest, indent=2, sort_keys=True) if as_json else out)


@app.command()
@user_errors
def amazon(
    category: Annotated[
        str, typer.Option("--category", help="A 2014 5-core category, e.g. Books.")
    ] = "Electronics",
    out: Out = None,
    mirror: Mirror = None,
    url: Url = None,
    from_path: From = None,
    force: Force = False,
    tries: Retries = 5,
    timeout: Timeout = 30.0,
    no_progress: NoProgress = False,
    as_json: AsJson = False,
) -> None:
    """Amazon 2014 release: reviews_<Category>_5.json.gz and meta_<Category>.json.gz."""
    from dinctl.data.sources import amazon_source, with_urls

    source = with_urls(amazon_source(category, tuple(mirror or ())), tuple(url or ()))
    target = out or Path("data/raw/amazon")
    _run(source, target, from_path, force, tries, timeout, no_progress, as_json)


@app.command()
@user_errors
def movielens(
    variant: Annotated[
        str, typer.Option("--variant", help="20m, 25m, latest-small or 1m.")
    ] = "20m",
    out: Out = None,
    mirror: Mirror = None,
    url: Url = None,
    from_path: From = None,
    force: Force = False,
    tries: Retries = 5,
    timeout: Timeout = 30.0,
    no_progress: NoProgress = False,
    as_json: AsJson = False,
    max_extract_bytes: MaxExtract = None,
) -> None:
    """GroupLens MovieLens zip → ratings.csv + movies.csv (ml-1m's .dat files are converted)."""
    from dinctl.data.sources import movielens_source, with_urls

    source = with_urls(movielens_source(variant, tuple(mirror or ())), tuple(url or ()))
    target = out or Path("data/raw/movielens")
    _run(source, target, from_path, force, tries, timeout, no_progress, as_json, max_extract_bytes)


def _tianchi_command(dataset: str, doc: str) -> None:
    """Register `dinctl download <dataset>` for a Tianchi dataset (behind a login)."""

    def command(
        out: Out = None,
        mirror: Mirror = None,
        from_path: From = None,
        force: Force = False,
        tries: Retries = 5,
        timeout: Timeout = 30.0,
        no_progress: NoProgress = False,
        as_json: AsJson = False,
        max_extract_bytes: MaxExtract = None,
    ) -> None:
        from dinctl.data.sources import tianchi_source

        source = tianchi_source(dataset, tuple(mirror or ()))
        target = out or Path(f"data/raw/{dataset}")
        _run(source, target, from_path, force, tries, timeout, no_progress, as_json,
             max_extract_bytes, tianchi=True)  # fmt: skip

    command.__doc__ = doc
    command.__name__ = dataset.replace("-", "_")
    app.command(dataset)(user_errors(command))


_tianchi_command(
    "taobao",
    "Taobao UserBehavior (Tianchi 649, behind a login): --from the file, its zip or folder.",
)
_tianchi_command(
    "taobao-ad",
    "Alimama display ads (Tianchi 56, behind a login): --from the 4 CSVs, .tar.gz or a folder.",
)
