"""`dinctl experiment table3 | table4 | table5`: the paper's comparisons, resumable."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from dinctl.choices import Device as DeviceName
from dinctl.choices import Recipe
from dinctl.cli.boundary import user_errors

app = typer.Typer(
    help="Reproduce the paper's tables: every run trained, evaluated on test and tabulated.",
    no_args_is_help=True,
)


Data = Annotated[
    Path, typer.Option("--data", help="Preprocessed dataset folder (from `dinctl preprocess`).")
]
Seeds = Annotated[int, typer.Option("--seeds", min=1, help="Runs per model, seeds 0..N-1.")]
Epochs = Annotated[
    int | None, typer.Option("--epochs", min=1, help="Epochs per run.", show_default="the recipe's")
]
RecipeOpt = Annotated[
    Recipe | None,
    typer.Option(
        "--recipe",
        help="paper: the paper's SGD; fast: Adam, large batch.",
        show_default="the trainer's",
    ),
]
BatchSize = Annotated[
    int | None, typer.Option("--batch-size", min=1, help="Batch size.", show_default="the recipe's")
]
Device = Annotated[
    DeviceName | None,
    typer.Option("--device", help="Device to train on.", show_default="the trainer's"),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="TOML training config (the keys of `dinctl train --config`) applied to every run; "
        "the options above override it, the table's rows set model, act, reg and seed.",
        show_default=False,
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the table and runs as JSON on stdout.")]


def _run(
    name: str,
    data: Path,
    out: Path,
    seeds: int,
    epochs: int | None,
    recipe: Recipe | None,
    batch_size: int | None,
    device: DeviceName | None,
    config: Path | None,
    as_json: bool,
) -> None:
    from dinctl.cli.report import cli_reporter, stderr_console
    from dinctl.experiment import EXPERIMENTS, ExperimentSettings, run_experiment
    from dinctl.tables import render_rich
    from dinctl.training.config import read_toml

    settings = ExperimentSettings(
        data=data,
        out=out,
        seeds=seeds,
        epochs=epochs,
        recipe=recipe.value if recipe is not None else None,
        batch_size=batch_size,
        device=device.value if device is not None else None,
        train=read_toml(config) if config is not None else {},
    )
    spec = EXPERIMENTS[name]
    console = stderr_console()
    reporter = cli_reporter(bars=not as_json)
    reporter = replace(
        reporter,
        line=lambda line: console.print(line, markup=False, highlight=False, soft_wrap=True),
    )
    result = run_experiment(spec, settings, reporter=reporter, progress=not as_json)
    console.print(render_rich(result.table))
    if as_json:
        payload: dict[str, Any] = {
            "experiment": name,
            "out": str(out),
            "files": {k: str(v) for k, v in result.files.items()},
            "table": result.table.to_json(),
            "runs": [
                {"name": r["name"], "seed": r["seed"], "metrics": r["metrics"]}
                for r in result.manifest["runs"]
            ],
        }
        print(json.dumps(payload, indent=2))
    else:
        for key in ("markdown", "json", "curves"):
            if key in result.files:
                print(result.files[key])


def _table_command(name: str, doc: str, default_data: str = "data/amazon") -> None:
    """Register `dinctl experiment <name>`: every table command takes the same options."""

    def command(
        data: Data = Path(default_data),
        seeds: Seeds = 5,
        epochs: Epochs = None,
        recipe: RecipeOpt = None,
        batch_size: BatchSize = None,
        device: Device = None,
        config: ConfigOpt = None,
        out: Annotated[Path, typer.Option("--out", help="Experiment folder.")] = Path(
            f"runs/{name}"
        ),
        as_json: AsJson = False,
    ) -> None:
        _run(name, data, out, seeds, epochs, recipe, batch_size, device, config, as_json)

    command.__doc__ = doc
    command.__name__ = name
    app.command(name)(user_errors(command))


_table_command(
    "table3", "Table 3: LR, BaseModel, Wide&Deep, PNN, DeepFM, DIN, DIN+Dice, DIN+MBA+Dice."
)
_table_command(
    "table4",
    "Table 4 + Fig. 4: BaseModel without item ids, and with none/dropout/filter/DiFacto/MBA.",
)
_table_command(
    "table5",
    "Table 5 on the Alimama display-ad data: Table 3's models plus DIN+MBA.",
    default_data="data/taobao-ad",
)
