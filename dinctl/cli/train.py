"""`dinctl train`: parse flags, resolve the config, call `dinctl.training.loop.train`, print.

Every option is one row of `OPTIONS` (its help and its --help panel); its choices come from
`dinctl.choices`, its least value from the config's range tables and its shown default from
`TrainConfig` or the recipes, so nothing here repeats them.
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from dinctl import choices
from dinctl.cli.boundary import user_errors
from dinctl.training.config import (
    FLOAT_LIMITS,
    INT_RANGES,
    RECIPE_DEFAULTS,
    REG_LAMBDA_DEFAULTS,
    TrainConfig,
)

DATA, MODEL, REG, OPTIM, RUN, PERF = (
    "Data",
    "Model",
    "Regularisation",
    "Optimisation",
    "Run and output",
    "Performance",
)
_RECIPES = (
    "paper: the authors' code (SGD lr 1.0, ×0.1 after 4 epochs, batch 32, clip 5, whole "
    "histories: add --max-len 100 on long-history data such as MovieLens); fast: Adam 1e-3, "
    "batch 256. Both train up to --epochs with --patience."
)
_LAMBDAS = "; ".join(
    f"{recipe}: " + ", ".join(f"{k} {v:g}" for k, v in lambdas.items() if v)
    for recipe, lambdas in REG_LAMBDA_DEFAULTS.items()
)

# name → (panel, help, shown default when it is not the config's or the recipes')
OPTIONS: dict[str, tuple[str, str, str | None]] = {
    "data": (DATA, "Dataset folder written by `dinctl preprocess`.", None),
    "max_len": (DATA, "Most recent behaviours kept per sample.", None),
    "model": (MODEL, "Model.", None),
    "act": (
        MODEL,
        "Activation of the activation unit. dice: Dice in the unit and a ReLU tower (the peers' "
        "layout, the more accurate on real Amazon rows); the paper's DIN with Dice in both: add "
        "--mlp-act same; the authors' code (sigmoid unit, Dice tower): --act sigmoid --mlp-act "
        "dice.",
        None,
    ),
    "mlp_act": (
        MODEL,
        "The MLP tower's activation (auto = relu after a Dice unit, else --act; same = --act).",
        None,
    ),
    "dice_alpha_init": (MODEL, "Where Dice's / PReLU's α starts (the peers: 0).", None),
    "emb_dim": (MODEL, "Embedding size per id (item ⊕ category = 2×).", None),
    "emb_init_std": (MODEL, "Std of the N(0, std²) embedding init; ~1 suits tiny data.", None),
    "linear_init": (MODEL, "Linear layers' init (xavier: Xavier-normal, zero bias).", None),
    "attn_softmax": (MODEL, "Softmax-normalise attention (the authors' code).", None),
    "no_item_ids": (MODEL, "Category embeddings only (Table 4's 'without goods ids').", None),
    "reg": (REG, "Regulariser (Table 4 of the paper).", None),
    "reg_lambda": (REG, "λ of mba / l2 / difacto.", _LAMBDAS),
    "filter_top_k": (
        REG,
        "--reg filter: the K most frequent item ids are kept, the rest become padding (§6.5); "
        "0 = the paper's share, 20M of 0.6B, of the item vocabulary.",
        None,
    ),
    "recipe": (OPTIM, _RECIPES, None),
    "optimizer": (OPTIM, "Optimiser.", None),
    "lr": (OPTIM, "Learning rate.", None),
    "batch_size": (OPTIM, "Global batch size.", None),
    "epochs": (
        OPTIM,
        "The most epochs; training stops earlier once --patience epochs pass without a better "
        "validation --select-metric, and best.pt keeps the best epoch.",
        None,
    ),
    "patience": (
        OPTIM,
        "Early stopping: stop after this many epochs without a better validation score "
        "(0 = run all --epochs).",
        None,
    ),
    "select_metric": (
        OPTIM,
        "Validation metric that picks the best epoch: the paper's AUC (user-weighted, Eq. 10) "
        "or the global AUC.",
        None,
    ),
    "seed": (RUN, "Seed of initialisation, order and dropout.", None),
    "out": (RUN, "Run folder.", "runs/<model>-<act>-<reg>-<UTC time>"),
    "resume": (RUN, "Continue the run in --out from its checkpoint.pt.", None),
    "config": (RUN, "TOML file of settings (flags override it).", None),
    "log_every": (RUN, "Write a log.jsonl step line every N steps.", None),
    "json_out": (RUN, "Print the result as JSON on stdout; no progress bar.", None),
    "device": (PERF, "auto = cuda when available.", None),
    "threads": (
        PERF,
        "Torch CPU threads.",
        "OMP_NUM_THREADS if set, else the cores not busy with other jobs, by the load average",
    ),
    "amp": (
        PERF,
        "bf16 autocast on CUDA, or on a CPU with avx512_bf16/AMX (else a warning and float32); "
        "on CPU it pays at batch ≥ 1024.",
        None,
    ),
    "compile": (PERF, "torch.compile the model.", None),
    "shard_embeddings": (
        PERF,
        "Under torchrun: shard the id tables over the processes with TorchRec (the scale "
        "extra, docs/scale.md); --optimizer sgd or adagrad (row-wise) on CPU, also adam on "
        "CUDA; --reg none, mba or dropout.",
        None,
    ),
    "length_buckets": (PERF, "Batch rows of similar history length together.", None),
}
FLAGS = ("no_item_ids", "resume", "json_out")  # on/off, no value and no default shown


def shown_default(name: str) -> str | None:
    """What --help shows as the option's default: the recipes' values for the settings they
    set, else TrainConfig's (None for flags and options without one)."""
    explicit = OPTIONS[name][2]
    if explicit is not None or name in FLAGS or name == "config":
        return explicit
    default = getattr(TrainConfig, name)
    if any(name in values for values in RECIPE_DEFAULTS.values()):
        per = (f"{r} {RECIPE_DEFAULTS[r].get(name, default)}" for r in choices.RECIPES)
        return "from the recipe: " + ", ".join(per)
    if isinstance(default, bool):
        return "on" if default else "off"
    return str(default)


def _least(name: str) -> dict[str, Any]:
    """click's `min` from the config's range tables (the config checks the most)."""
    if name in INT_RANGES:
        return {"min": INT_RANGES[name][0]}
    return {"min": 0.0} if name in FLOAT_LIMITS else {}


def option(name: str, *decls: str, metavar: str | None = None) -> Any:
    """The typer.Option of OPTIONS[name]: help, panel, least value, shown default."""
    panel, text, _ = OPTIONS[name]
    default = shown_default(name)
    if default is not None:  # escaped: "[default: x]" is rich markup otherwise
        text += f" [dim]\\[default: {default}][/dim]"
    if name in FLAGS or (decls and "/" in decls[0]):
        metavar = ""  # a flag: no `<bool>` value column
    return typer.Option(
        *decls,
        help=text,
        rich_help_panel=panel,
        show_default=False,
        metavar=metavar,
        **_least(name),
    )


DataOpt = Annotated[Path | None, option("data", metavar="DIR")]
MaxLenOpt = Annotated[int | None, option("max_len", metavar="N")]
ModelOpt = Annotated[choices.Model | None, option("model")]
ActOpt = Annotated[choices.Activation | None, option("act")]
MlpActOpt = Annotated[choices.MlpActivation | None, option("mlp_act")]
AlphaOpt = Annotated[float | None, option("dice_alpha_init", metavar="X")]
EmbDimOpt = Annotated[int | None, option("emb_dim", metavar="N")]
InitOpt = Annotated[float | None, option("emb_init_std", metavar="X")]
LinearInitOpt = Annotated[choices.LinearInit | None, option("linear_init")]
SoftmaxOpt = Annotated[bool | None, option("attn_softmax", "--attn-softmax/--no-attn-softmax")]
NoItemIdsOpt = Annotated[bool, option("no_item_ids", "--no-item-ids")]
RegOpt = Annotated[choices.Regularizer | None, option("reg")]
LambdaOpt = Annotated[float | None, option("reg_lambda", metavar="X")]
TopKOpt = Annotated[int | None, option("filter_top_k", metavar="K")]
RecipeOpt = Annotated[choices.Recipe | None, option("recipe")]
OptimizerOpt = Annotated[choices.Optimizer | None, option("optimizer")]
LrOpt = Annotated[float | None, option("lr", metavar="X")]
BatchOpt = Annotated[int | None, option("batch_size", metavar="N")]
EpochsOpt = Annotated[int | None, option("epochs", metavar="N")]
PatienceOpt = Annotated[int | None, option("patience", metavar="N")]
SelectOpt = Annotated[choices.SelectMetric | None, option("select_metric")]
SeedOpt = Annotated[int | None, option("seed", metavar="N")]
OutOpt = Annotated[Path | None, option("out", metavar="DIR")]
ResumeOpt = Annotated[bool, option("resume", "--resume")]
ConfigOpt = Annotated[Path | None, option("config", "--config", metavar="FILE")]
LogEveryOpt = Annotated[int | None, option("log_every", metavar="N")]
JsonOpt = Annotated[bool, option("json_out", "--json")]
DeviceOpt = Annotated[choices.Device | None, option("device")]
ThreadsOpt = Annotated[int | None, option("threads", metavar="N")]
AmpOpt = Annotated[bool | None, option("amp", "--amp/--no-amp")]
CompileOpt = Annotated[bool | None, option("compile", "--compile/--no-compile")]
ShardOpt = Annotated[
    bool | None, option("shard_embeddings", "--shard-embeddings/--no-shard-embeddings")
]
BucketsOpt = Annotated[
    bool | None, option("length_buckets", "--length-buckets/--no-length-buckets")
]


@user_errors
def train(
    data: DataOpt = None,
    max_len: MaxLenOpt = None,
    model: ModelOpt = None,
    act: ActOpt = None,
    mlp_act: MlpActOpt = None,
    dice_alpha_init: AlphaOpt = None,
    emb_dim: EmbDimOpt = None,
    emb_init_std: InitOpt = None,
    linear_init: LinearInitOpt = None,
    attn_softmax: SoftmaxOpt = None,
    no_item_ids: NoItemIdsOpt = False,
    reg: RegOpt = None,
    reg_lambda: LambdaOpt = None,
    filter_top_k: TopKOpt = None,
    recipe: RecipeOpt = None,
    optimizer: OptimizerOpt = None,
    lr: LrOpt = None,
    batch_size: BatchOpt = None,
    epochs: EpochsOpt = None,
    patience: PatienceOpt = None,
    select_metric: SelectOpt = None,
    seed: SeedOpt = None,
    out: OutOpt = None,
    resume: ResumeOpt = False,
    config: ConfigOpt = None,
    log_every: LogEveryOpt = None,
    json_out: JsonOpt = False,
    device: DeviceOpt = None,
    threads: ThreadsOpt = None,
    amp: AmpOpt = None,
    compile: CompileOpt = None,
    shard_embeddings: ShardOpt = None,
    length_buckets: BucketsOpt = None,
) -> None:
    """Train DIN or a competitor on a preprocessed dataset; writes runs/<name>/."""
    settings = dict(locals())
    for name in ("no_item_ids", "resume", "config", "json_out"):
        settings.pop(name)
    settings["use_item_ids"] = False if no_item_ids else None
    overrides = {k: _plain(v) for k, v in settings.items()}
    cfg = _resolve(overrides, resume, out, config)
    from dinctl.cli.report import cli_reporter
    from dinctl.training.loop import train as run_training

    result = run_training(cfg, resume=resume, reporter=cli_reporter(lines=not json_out))
    if result.rank == 0:  # under torchrun only rank 0 prints
        _report(result, json_out)


def _plain(value: Any) -> Any:
    """A flag's value as the config holds it (enum → its string, path → str)."""
    if isinstance(value, Enum):
        return value.value
    return str(value) if isinstance(value, Path) else value


def _resolve(overrides: dict[str, Any], resume: bool, out: Path | None, config: Path | None) -> Any:
    from dinctl.errors import DinctlError
    from dinctl.training.config import resolve_config

    if not resume:
        return resolve_config(overrides, config)
    if out is None:
        raise DinctlError("--resume needs --out RUN_DIR naming the run to continue")
    if config is not None:
        raise DinctlError("--resume takes its settings from the run's config.json, not --config")
    from dinctl.training.loop import resume_config

    return resume_config(out, overrides)


def _report(result: Any, json_out: bool) -> None:
    if json_out:
        payload = {
            "run_dir": str(result.run_dir),
            "best_epoch": result.best_epoch,
            "best_valid": result.best_valid,
            "epochs_run": result.epochs_run,
            "select_metric": result.select_metric,
            "stopped_early": result.stopped_early,
        }
        print(json.dumps(payload))
        return
    best = result.best_valid
    if best:
        summary = "  ".join(f"{k.removeprefix('valid_')} {v:.4f}" for k, v in best.items())
        chosen = result.select_metric.removeprefix("valid_")
        print(f"best epoch {result.best_epoch} (by {chosen}): {summary}", file=sys.stderr)
    print(result.run_dir)
