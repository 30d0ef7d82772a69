"""`dinctl visualize attention | tsne | curves`: the paper's §6.8 figures for a trained run.

A run is positional, as in every command (`dinctl visualize attention RUN`); `--run RUN` is
still accepted. `--out FILE.png` says where the figure goes (its numbers are written beside it).
"""

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

RunArg = Annotated[
    Path | None,
    typer.Argument(
        metavar="RUN",
        help="Run folder written by `dinctl train` (runs/<name>).",
        show_default=False,
    ),
]
RunAlias = Annotated[
    Path | None,
    typer.Option("--run", help="The same as RUN (the older spelling).", show_default=False),
]


def _out(default: str) -> object:
    return typer.Option(
        "--out", help="PNG to write; its numbers go beside it.", show_default=default
    )


AttentionOut = Annotated[Path | None, _out("<run>/plots/attention_<user>.png")]
TsneOut = Annotated[Path | None, _out("<run>/plots/tsne[_<settings>].png")]
CurvesOut = Annotated[Path | None, _out("<first run>/plots/curves.png")]


def one_run(run: Path | None, alias: Path | None) -> Path:
    """The run given positionally or as `--run` (once)."""
    if run is None and alias is None:
        raise typer.BadParameter("missing the run folder", param_hint="'RUN'")
    if run is not None and alias is not None and run != alias:
        raise typer.BadParameter(
            f"got RUN {run} and --run {alias}; give one run", param_hint="'RUN'"
        )
    return run if run is not None else alias  # type: ignore[return-value]


@app.command()
@user_errors
def attention(
    run: RunArg = None,
    run_alias: RunAlias = None,
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
    out: AttentionOut = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the numbers as JSON.")] = False,
) -> None:
    """Fig. 5: activation weights of a user's behaviours for candidate ads (DIN runs)."""
    from dinctl.plots.attention import compute_attention, write_attention

    amap = compute_attention(one_run(run, run_alias), user, candidate or None, max_behaviours)
    png, js = write_attention(amap, out)
    if as_json:
        print(json.dumps(amap.to_json(), indent=2))
    else:
        print(png)
        print(js)


@app.command()
@user_errors
def tsne(
    run: RunArg = None,
    run_alias: RunAlias = None,
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
    out: TsneOut = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the points as JSON.")] = False,
) -> None:
    """Fig. 6: t-SNE of learned item embeddings, coloured by predicted CTR for one user.

    Without --out the file is plots/tsne.png for the default settings, and names the others
    (plots/tsne_c5_p30_s1.png), so a second map never replaces the first.
    """
    from dinctl.plots.tsne import compute_tsne, write_tsne

    tmap = compute_tsne(one_run(run, run_alias), categories, per_category, user, seed)
    png, table = write_tsne(tmap, out)
    if as_json:
        print(json.dumps({"user": tmap.user, "seed": tmap.seed, "points": tmap.rows()}, indent=2))
    else:
        print(png)
        print(table)


@app.command()
@user_errors
def curves(
    run_dirs: Annotated[
        list[Path] | None,
        typer.Argument(
            metavar="RUN...",
            help="Run folders, or experiment folders (run subfolders or a manifest.json).",
            show_default=False,
        ),
    ] = None,
    run_alias: Annotated[
        list[Path] | None,
        typer.Option("--run", help="The same as RUN; repeat for several.", show_default=False),
    ] = None,
    out: CurvesOut = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the numbers as JSON.")] = False,
) -> None:
    """Fig. 4 style: training loss and validation AUC (user-weighted, Eq. 10) per epoch."""
    from dinctl.plots.curves import compute_curves, write_curves

    named = [*(run_dirs or []), *(run_alias or [])]
    if not named:
        raise typer.BadParameter("missing the run folder(s)", param_hint="'RUN...'")
    found = compute_curves(list(dict.fromkeys(named)))
    png, js = write_curves(found, out)
    if as_json:
        print(js.read_text(), end="")
    else:
        print(png)
        print(js)
