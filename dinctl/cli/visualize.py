"""`dinctl visualize attention | tsne | curves`: the paper's §6.8 figures for a trained run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from dinctl.cli.boundary import user_errors

app = typer.Typer(
    help="Plot a trained run: attention weights (Fig. 5), t-SNE of embeddings (Fig. 6), curves.",
    no_args_is_help=True,
)

RunOpt = Annotated[
    Path, typer.Option("--run", help="Run folder written by `dinctl train` (runs/<name>).")
]


@app.command()
@user_errors
def attention(
    run: RunOpt,
    user: Annotated[
        str | None,
        typer.Option(
            "--user",
            help="Raw user id as in the source data.",
            show_default="the most active user",
        ),
    ] = None,
    candidate: Annotated[
        list[str] | None,
        typer.Option(
            "--candidate",
            help="Raw item id of a candidate ad; repeat for several.",
            show_default="the user's test target + the top item of 3 other categories",
        ),
    ] = None,
    max_behaviours: Annotated[
        int, typer.Option("--max-behaviours", min=1, help="Show at most this many recent ones.")
    ] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print the numbers as JSON.")] = False,
) -> None:
    """Fig. 5: activation weights of a user's behaviours for candidate ads (DIN runs)."""
    from dinctl.plots.attention import compute_attention, write_attention

    amap = compute_attention(run, user, candidate or None, max_behaviours)
    png, js = write_attention(amap)
    if as_json:
        print(json.dumps(amap.to_json(), indent=2))
    else:
        print(png)
        print(js)


@app.command()
@user_errors
def tsne(
    run: RunOpt,
    categories: Annotated[
        int, typer.Option("--categories", min=1, help="The most frequent categories to show.")
    ] = 9,
    per_category: Annotated[
        int, typer.Option("--per-category", min=1, help="Most frequent items per category.")
    ] = 100,
    user: Annotated[
        str | None,
        typer.Option(
            "--user",
            help="Colour by predicted CTR for this raw user id.",
            show_default="the most active user",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="t-SNE random state.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the points as JSON.")] = False,
) -> None:
    """Fig. 6: t-SNE of learned item embeddings, coloured by predicted CTR for one user."""
    from dinctl.plots.tsne import compute_tsne, write_tsne

    tmap = compute_tsne(run, categories, per_category, user, seed)
    png, table = write_tsne(tmap)
    if as_json:
        print(json.dumps({"user": tmap.user, "seed": tmap.seed, "points": tmap.rows()}, indent=2))
    else:
        print(png)
        print(table)


@app.command()
@user_errors
def curves(
    run_dirs: Annotated[
        list[Path],
        typer.Argument(
            help="Run folders, or experiment folders (run subfolders or a manifest.json).",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="PNG to write.", show_default="<first run>/plots/curves.png"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the numbers as JSON.")] = False,
) -> None:
    """Fig. 4 style: training loss and validation AUC (user-weighted, Eq. 10) per epoch."""
    from dinctl.plots.curves import compute_curves, write_curves

    found = compute_curves(list(run_dirs))
    png, js = write_curves(found, out)
    if as_json:
        print(js.read_text(), end="")
    else:
        print(png)
        print(js)
