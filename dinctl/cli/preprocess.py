"""`dinctl preprocess amazon | movielens | logs | taobao | taobao-ad` (docs/protocols.md)"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from dinctl.cli.boundary import user_errors
from dinctl.cli.download import MaxExtract

app = typer.Typer(
    help="Turn raw logs into a DIN dataset (data/<dataset>/).",
    no_args_is_help=True,
)

Raw = Annotated[
    Path | None,
    typer.Option("--raw", help="Raw input folder.", show_default="data/raw/<dataset>"),
]
Out = Annotated[
    Path | None, typer.Option("--out", help="Output folder.", show_default="data/<dataset>")
]
Seed = Annotated[int, typer.Option("--seed", help="Seed of negatives and user splits.")]
NoValid = Annotated[
    bool, typer.Option("--no-valid", help="No validation split (its rows stay in train).")
]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")]


def _stderr() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _table(summary: dict[str, Any]) -> Any:
    """The paper's Table 2 plus the split sizes and history lengths."""
    from rich.table import Table

    table = Table(title=f"{summary['dataset']} ({summary['protocol']})", title_justify="left")
    table.add_column("statistic")
    table.add_column("value", justify="right")
    for key in ("users", "items", "categories", "behaviours"):
        table.add_row(key, f"{summary[key]:,}")
    for split, n in summary["samples"].items():
        rate = summary["positive_rate"][split]
        table.add_row(f"{split} samples", f"{n:,}  ({rate:.1%} positive)")
    h = summary["hist_len"]
    table.add_row(
        "history length",
        f"mean {h['mean']:.2f} · p50 {h['p50']:g} · p99 {h['p99']:g} · max {h['max']}",
    )
    for key, n in summary.get("dropped", {}).items():
        table.add_row(f"dropped {key}", f"{n:,}")
    return table


def _preprocess(
    dataset: str,
    build: Callable[..., dict[str, Any]],
    raw: Path | None,
    out: Path | None,
    as_json: bool,
    **options: Any,
) -> None:
    """Run `build(raw, out, **options)` (folders default to data/raw/<dataset>, data/<dataset>),
    show its progress (`build` takes the `status` and `warn` callbacks) and summary table on
    stderr, print the folder (or the JSON) on stdout."""
    raw = raw if raw is not None else Path(f"data/raw/{dataset}")
    out = out if out is not None else Path(f"data/{dataset}")
    console = _stderr()
    callbacks = {"status": lambda msg: console.status(msg + " …"), "warn": _warn}
    summary = build(raw, out, **options, **callbacks)
    console.print(_table(summary))
    if as_json:
        print(json.dumps({"out": str(out), **summary}, indent=2))
    else:
        print(out)


@app.command()
@user_errors
def amazon(
    raw: Raw = None,
    out: Out = None,
    category: Annotated[
        str,
        typer.Option(help="Category of the 2014 release: reads reviews_<C>_5.json, meta_<C>.json."),
    ] = "Electronics",
    seed: Seed = 1234,
    no_valid: NoValid = False,
    overwrite: Overwrite = False,
    as_json: AsJson = False,
) -> None:
    """Amazon 2014 5-core reviews + meta: sliding windows, one negative per positive."""
    from dinctl.data.preprocess import preprocess_amazon

    _preprocess("amazon", preprocess_amazon, raw, out, as_json, category=category, seed=seed,
                valid=not no_valid, overwrite=overwrite)  # fmt: skip


@app.command()
@user_errors
def movielens(
    raw: Annotated[
        Path | None,
        typer.Option(
            help="Folder or release .zip with ratings.csv, movies.csv.",
            show_default="data/raw/movielens",
        ),
    ] = None,
    out: Out = None,
    seed: Seed = 1234,
    no_valid: NoValid = False,
    overwrite: Overwrite = False,
    as_json: AsJson = False,
    max_extract_bytes: MaxExtract = None,
) -> None:
    """MovieLens (20M, 25M, latest-small): label = rating ≥ 4, users split at random."""
    from dinctl.data.archives import MAX_EXTRACT_BYTES
    from dinctl.data.preprocess import preprocess_movielens

    _preprocess("movielens", preprocess_movielens, raw, out, as_json, seed=seed,
                valid=not no_valid, overwrite=overwrite,
                max_extract_bytes=max_extract_bytes or MAX_EXTRACT_BYTES)  # fmt: skip


def _names(text: str | None) -> tuple[str, ...]:
    """a,b,c → ("a", "b", "c"); empty parts dropped."""
    return tuple(p.strip() for p in (text or "").split(",") if p.strip())


def _from_command_line(ctx: typer.Context, name: str) -> bool:
    """Whether option `name` was typed (Typer's ParameterSource: compared by name, as Typer
    ships its own copy of click)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


def _log_columns(schema: Path | None, base: dict[str, Any], extra: dict[str, Any],
                 given: list[str]) -> Any:  # fmt: skip
    """LogColumns from the flags, or from the --schema file (then no column flag may be
    `given` on the command line: one source of truth, never a silent mix)."""
    from dinctl.data.readers import LogColumns, columns_from_toml
    from dinctl.errors import DinctlError

    if schema is not None:
        if given:
            raise DinctlError(
                f"{', '.join(given)} cannot be combined with --schema {schema}",
                hint="list every field in the schema file",
            )
        return columns_from_toml(schema)
    behaviour = _names(extra["behaviour_cols"])
    if behaviour and len(behaviour) < 2:
        raise DinctlError(
            f"--behaviour-cols needs the item and the category column first, got {list(behaviour)}",
            hint="e.g. --behaviour-cols item,cate,brand",
        )
    if extra["user_feature_cols"] and extra["user_features"] is None:
        raise DinctlError("--user-feature-cols needs --user-features FILE")
    if behaviour:
        base = {**base, "item": behaviour[0], "category": behaviour[1]}
    return LogColumns(
        **base,
        behaviour=behaviour[2:],
        context=_names(extra["context_cols"]),
        numeric=_names(extra["numeric_cols"]),
        user_features=extra["user_features"],
        user_feature_cols=_names(extra["user_feature_cols"]),
    )


@app.command()
@user_errors
def logs(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="Your log: a Parquet or CSV file.")],
    out: Out = None,
    user_col: Annotated[str, typer.Option(help="Column holding the user id.")] = "user",
    item_col: Annotated[str, typer.Option(help="Column holding the item id.")] = "item",
    category_col: Annotated[
        str, typer.Option(help="Column holding the item's category.")
    ] = "category",
    time_col: Annotated[
        str, typer.Option(help="Column holding the time (numeric or datetime).")
    ] = "timestamp",
    label_col: Annotated[
        str | None,
        typer.Option(help="Optional 0/1 label column: every row becomes a sample, users split."),
    ] = None,
    behaviour_cols: Annotated[
        str | None,
        typer.Option(
            metavar="ITEM,CATE,...",
            help="A behaviour's id columns: item, category, then more (brand, shop, ...); "
            "replaces --item-col/--category-col.",
        ),
    ] = None,
    context_cols: Annotated[
        str | None,
        typer.Option(metavar="A,B", help="Categorical columns of the sample (ad slot, hour)."),
    ] = None,
    numeric_cols: Annotated[
        str | None, typer.Option(metavar="A,B", help="Numeric columns of the sample.")
    ] = None,
    user_features: Annotated[
        Path | None,
        typer.Option(help="Parquet/CSV user profile file: one row per user (--user-col)."),
    ] = None,
    user_feature_cols: Annotated[
        str | None, typer.Option(metavar="A,B", help="Profile columns used as user fields.")
    ] = None,
    schema: Annotated[
        Path | None,
        typer.Option(help="TOML schema file naming every column (docs/formats.md)."),
    ] = None,
    seed: Seed = 1234,
    no_valid: NoValid = False,
    overwrite: Overwrite = False,
    as_json: AsJson = False,
) -> None:
    """Your own log: windows + negatives (Amazon protocol); with --label-col, the MovieLens one.
    More behaviour fields, user, context and numeric fields join with the field options."""
    from dinctl.data.preprocess import preprocess_logs

    base = {
        "user": user_col,
        "item": item_col,
        "category": category_col,
        "time": time_col,
        "label": label_col,
    }
    extra = {
        "behaviour_cols": behaviour_cols,
        "context_cols": context_cols,
        "numeric_cols": numeric_cols,
        "user_features": user_features,
        "user_feature_cols": user_feature_cols,
    }
    given = [f"--{name.replace('_', '-')}" for name in (*(f"{k}_col" for k in base), *extra)
             if _from_command_line(ctx, name)]  # fmt: skip
    columns = _log_columns(schema, base, extra, given)
    _preprocess("logs", preprocess_logs, path, out, as_json, columns=columns, seed=seed,
                valid=not no_valid, overwrite=overwrite)  # fmt: skip


MaxLen = Annotated[
    int, typer.Option("--max-len", min=1, help="Keep at most this many behaviours per history.")
]


@app.command()
@user_errors
def taobao(
    raw: Annotated[
        Path | None,
        typer.Option("--raw", help="UserBehavior.csv or its folder.",
                     show_default="data/raw/taobao"),
    ] = None,
    out: Out = None,
    max_len: MaxLen = 200,
    seed: Seed = 1234,
    no_valid: NoValid = False,
    overwrite: Overwrite = False,
    as_json: AsJson = False,
) -> None:
    """Taobao UserBehavior: last behaviour vs a drawn negative, test = latest 30% of users."""
    from dinctl.data.taobao import preprocess_taobao

    _preprocess("taobao", preprocess_taobao, raw, out, as_json, max_len=max_len, seed=seed,
                valid=not no_valid, overwrite=overwrite)  # fmt: skip


@app.command("taobao-ad")
@user_errors
def taobao_ad(
    raw: Annotated[
        Path | None,
        typer.Option("--raw", help="Folder with raw_sample, ad_feature, user_profile, "
                     "behavior_log .csv.", show_default="data/raw/taobao-ad"),
    ] = None,
    out: Out = None,
    max_len: MaxLen = 50,
    shards: Annotated[
        int | None,
        typer.Option("--shards", min=1, help="User shards of the behaviour join (default: by "
                     "file size, ~20M behaviours each)."),
    ] = None,
    seed: Seed = 1234,
    no_valid: NoValid = False,
    overwrite: Overwrite = False,
    as_json: AsJson = False,
) -> None:
    """Alimama display ads: days 1-7 train (day 7 validation), day 8 test; history = the
    user's behaviours strictly before each impression."""
    from dinctl.data.taobao import preprocess_taobao_ad

    _preprocess("taobao-ad", preprocess_taobao_ad, raw, out, as_json, max_len=max_len, seed=seed,
                valid=not no_valid, overwrite=overwrite, shards=shards)  # fmt: skip
