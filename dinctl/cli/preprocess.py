"""`dinctl preprocess <dataset>` (docs/protocols.md): one command per registered dataset, built from
its entry in dinctl/data/datasets/, and `logs` for your own log."""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from dinctl.cli.boundary import user_errors
from dinctl.cli.download import MaxExtract, parameter, setting_parameter
from dinctl.data.datasets import DATASETS, Dataset, resolve

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
    from dinctl.cli.report import stderr_console

    return stderr_console()


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _table(summary: dict[str, Any]) -> Any:
    """The paper's Table 2 plus the split sizes and history lengths."""
    from rich.table import Table

    title = f"{summary['dataset']}, protocol {summary['protocol']} (docs/protocols.md)"
    table = Table(title=title, title_justify="left")
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


# the options every `dinctl preprocess <dataset>` takes after its settings
_COMMON: tuple[tuple[str, Any, Any], ...] = (
    ("seed", Seed, 1234),
    ("no_valid", NoValid, False),
    ("overwrite", Overwrite, False),
    ("as_json", AsJson, False),
)


def _dataset_command(dataset: Dataset) -> None:
    """Register `dinctl preprocess <dataset>` with its settings between --out and --seed."""
    raw: Any = Raw
    if dataset.raw_help is not None:
        where = f"data/raw/{dataset.name}"
        raw = Annotated[
            Path | None, typer.Option("--raw", help=dataset.raw_help, show_default=where)
        ]
    params = [parameter("raw", raw, None), parameter("out", Out, None)]
    params += [setting_parameter(setting) for setting in dataset.settings]
    params += [parameter(*common) for common in _COMMON]
    if dataset.max_extract:
        params.append(parameter("max_extract_bytes", MaxExtract, None))

    def command(**values: Any) -> None:
        from dinctl.data.archives import MAX_EXTRACT_BYTES

        options = {s.name: values[s.name] for s in dataset.settings}
        if dataset.max_extract:
            options["max_extract_bytes"] = values["max_extract_bytes"] or MAX_EXTRACT_BYTES
        options.update(seed=values["seed"], valid=not values["no_valid"])
        options.update(overwrite=values["overwrite"])
        build = resolve(dataset.preprocess)
        _preprocess(dataset.name, build, values["raw"], values["out"], values["as_json"], **options)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__doc__ = dataset.help
    command.__name__ = dataset.name.replace("-", "_")
    app.command(dataset.name)(user_errors(command))


for _dataset in DATASETS:
    _dataset_command(_dataset)


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
    from dinctl.data.datasets.logs import LogColumns, split_behaviour
    from dinctl.data.schema_file import columns_from_toml
    from dinctl.errors import DinctlError

    if schema is not None:
        if given:
            raise DinctlError(
                f"{', '.join(given)} cannot be combined with --schema {schema}",
                hint="list every field in the schema file",
            )
        return columns_from_toml(schema)
    behaviour = _names(extra["behaviour_cols"])
    split = split_behaviour(behaviour)
    if behaviour and split is None:
        raise DinctlError(
            f"--behaviour-cols needs the item and the category column first, got {list(behaviour)}",
            hint="e.g. --behaviour-cols item,cate,brand",
        )
    if extra["user_feature_cols"] and extra["user_features"] is None:
        raise DinctlError("--user-feature-cols needs --user-features FILE")
    if split is not None:
        base = {**base, "item": split[0], "category": split[1]}
    return LogColumns(
        **base,
        behaviour=split[2] if split is not None else (),
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
    from dinctl.data.datasets.logs import preprocess_logs

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
