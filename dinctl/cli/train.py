"""`dinctl train`: parse flags, resolve the config, call `dinctl.training.loop.train`, print.

Option choices come from `dinctl.choices` and defaults in the help from `TrainConfig` and the
recipes, so nothing here repeats them.
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from dinctl import choices
from dinctl.choices import Activation as Act
from dinctl.choices import Device, LinearInit, MlpActivation, Optimizer, Recipe, SelectMetric
from dinctl.choices import Model as ModelName
from dinctl.choices import Regularizer as Reg
from dinctl.cli.boundary import user_errors
from dinctl.training.config import RECIPE_DEFAULTS, REG_LAMBDA_DEFAULTS, TrainConfig


def _default(name: str) -> str:
    value = getattr(TrainConfig, name)
    if isinstance(value, bool):
        value = "on" if value else "off"
    return f"(default: {value})"


def _by_recipe(name: str) -> str:
    per = ", ".join(f"{r} {RECIPE_DEFAULTS[r][name]}" for r in choices.RECIPES)
    return f"(default: from the recipe: {per})"


def _opt(help_text: str, *decls: str, **kw: Any) -> Any:
    """typer.Option whose default, given as a trailing "(default: X)" in the help (None-valued
    options take theirs from the config or the recipe), shows as `[default: X]` like the rest."""
    text, sep, shown = help_text.rpartition(" (default: ")
    if sep and shown.endswith(")"):
        return typer.Option(*decls, help=text, show_default=shown[:-1], **kw)
    return typer.Option(*decls, help=help_text, **kw)


_LAMBDAS = ", ".join(f"{k} {v:g}" for k, v in REG_LAMBDA_DEFAULTS.items() if v)
_RECIPES = (
    "paper: the authors' code (SGD lr 1.0, ×0.1 after 4 epochs, batch 32, clip 5, whole "
    "histories: add --max-len 100 on long-history data such as MovieLens); fast: Adam 1e-3, "
    "batch 256. Both train up to --epochs with --patience."
)

DataOpt = Annotated[
    Path | None, _opt(f"Dataset folder written by `dinctl preprocess`. {_default('data')}")
]
ModelOpt = Annotated[ModelName | None, _opt(f"Model. {_default('model')}")]
ActOpt = Annotated[
    Act | None, _opt(f"Activation of the activation unit (and the tower). {_default('act')}")
]
MlpActOpt = Annotated[
    MlpActivation | None,
    _opt(f"The MLP tower's activation (same = --act; the peers: relu). {_default('mlp_act')}"),
]
AlphaOpt = Annotated[
    float | None,
    _opt(f"Where Dice's / PReLU's α starts (the peers: 0). {_default('dice_alpha_init')}", min=0.0),
]
LinearInitOpt = Annotated[
    LinearInit | None,
    _opt(f"Linear layers' init (xavier: Xavier-normal, zero bias). {_default('linear_init')}"),
]
RegOpt = Annotated[Reg | None, _opt(f"Regulariser (Table 4 of the paper). {_default('reg')}")]
LambdaOpt = Annotated[
    float | None, _opt(f"λ of mba / l2 / difacto. (default: {_LAMBDAS})", min=0.0)
]
TopKOpt = Annotated[
    int | None,
    _opt(
        "--reg filter: the K most frequent item ids are kept, the rest become padding "
        "(§6.5); 0 = the paper's share, 20M of 0.6B, of the item vocabulary. (default: 0)",
        min=0,
    ),
]
RecipeOpt = Annotated[Recipe | None, _opt(f"{_RECIPES} {_default('recipe')}")]
OptimizerOpt = Annotated[Optimizer | None, _opt(f"Optimiser. {_by_recipe('optimizer')}")]
LrOpt = Annotated[float | None, _opt(f"Learning rate. {_by_recipe('lr')}", min=0.0)]
EpochsOpt = Annotated[
    int | None,
    _opt(
        "The most epochs; training stops earlier once --patience epochs pass without a better "
        f"validation --select-metric, and best.pt keeps the best epoch. {_by_recipe('epochs')}",
        min=1,
    ),
]
PatienceOpt = Annotated[
    int | None,
    _opt(
        "Early stopping: stop after this many epochs without a better validation score "
        f"(0 = run all --epochs). {_by_recipe('patience')}",
        min=0,
    ),
]
SelectOpt = Annotated[
    SelectMetric | None,
    _opt(
        "Validation metric that picks the best epoch: the paper's AUC (user-weighted, Eq. 10) "
        f"or the global AUC. {_default('select_metric')}"
    ),
]
BatchOpt = Annotated[int | None, _opt(f"Global batch size. {_by_recipe('batch_size')}", min=1)]
EmbDimOpt = Annotated[
    int | None, _opt(f"Embedding size per id (item ⊕ category = 2×). {_default('emb_dim')}", min=1)
]
InitOpt = Annotated[
    float | None,
    _opt(
        f"Std of the N(0, std²) embedding init; ~1 suits tiny data. {_default('emb_init_std')}",
        min=0.0,
    ),
]
MaxLenOpt = Annotated[
    int | None, _opt(f"Most recent behaviours kept per sample. {_default('max_len')}", min=1)
]
SoftmaxOpt = Annotated[
    bool | None,
    _opt(
        f"Softmax-normalise attention (the authors' code). {_default('attn_softmax')}",
        "--attn-softmax/--no-attn-softmax",
    ),
]
NoItemIdsOpt = Annotated[
    bool,
    typer.Option("--no-item-ids", help="Category embeddings only (Table 4's 'without goods ids')."),
]
BucketsOpt = Annotated[
    bool | None,
    _opt(
        f"Batch rows of similar history length together. {_default('length_buckets')}",
        "--length-buckets/--no-length-buckets",
    ),
]
DeviceOpt = Annotated[Device | None, _opt(f"auto = cuda when available. {_default('device')}")]
AmpOpt = Annotated[
    bool | None,
    _opt(
        "bf16 autocast on CUDA, or on a CPU with avx512_bf16/AMX (else a warning and float32); "
        f"on CPU it pays at batch ≥ 1024. {_default('amp')}",
        "--amp/--no-amp",
    ),
]
CompileOpt = Annotated[
    bool | None,
    _opt(f"torch.compile the model. {_default('compile')}", "--compile/--no-compile"),
]
SeedOpt = Annotated[
    int | None, _opt(f"Seed of initialisation, order and dropout. {_default('seed')}")
]
LogEveryOpt = Annotated[
    int | None, _opt(f"Write a log.jsonl step line every N steps. {_default('log_every')}", min=1)
]
OutOpt = Annotated[Path | None, _opt("Run folder. (default: runs/<model>-<act>-<reg>-<UTC time>)")]
ResumeOpt = Annotated[
    bool, typer.Option("--resume", help="Continue the run in --out from its checkpoint.pt.")
]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="TOML file of settings (flags override it).")
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print the result as JSON on stdout; no progress bar.")
]
ThreadsOpt = Annotated[
    int | None,
    _opt(
        "Torch CPU threads. (default: OMP_NUM_THREADS if set, else the cores not busy with "
        "other jobs, by the load average)",
        min=1,
    ),
]


@user_errors
def train(
    data: DataOpt = None,
    model: ModelOpt = None,
    act: ActOpt = None,
    reg: RegOpt = None,
    reg_lambda: LambdaOpt = None,
    filter_top_k: TopKOpt = None,
    recipe: RecipeOpt = None,
    optimizer: OptimizerOpt = None,
    lr: LrOpt = None,
    epochs: EpochsOpt = None,
    patience: PatienceOpt = None,
    select_metric: SelectOpt = None,
    batch_size: BatchOpt = None,
    emb_dim: EmbDimOpt = None,
    emb_init_std: InitOpt = None,
    mlp_act: MlpActOpt = None,
    dice_alpha_init: AlphaOpt = None,
    linear_init: LinearInitOpt = None,
    max_len: MaxLenOpt = None,
    attn_softmax: SoftmaxOpt = None,
    no_item_ids: NoItemIdsOpt = False,
    length_buckets: BucketsOpt = None,
    device: DeviceOpt = None,
    amp: AmpOpt = None,
    compile: CompileOpt = None,
    seed: SeedOpt = None,
    log_every: LogEveryOpt = None,
    out: OutOpt = None,
    resume: ResumeOpt = False,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    threads: ThreadsOpt = None,
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
