"""`dinctl train`: parse flags, resolve the config, call `dinctl.training.loop.train`, print."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from dinctl.cli.boundary import user_errors


class ModelName(str, Enum):
    din = "din"
    base = "base"
    lr = "lr"
    wide_deep = "wide-deep"
    pnn = "pnn"
    deepfm = "deepfm"


class Act(str, Enum):
    prelu = "prelu"
    dice = "dice"
    sigmoid = "sigmoid"


class Reg(str, Enum):
    none = "none"
    mba = "mba"
    l2 = "l2"
    dropout = "dropout"
    filter = "filter"
    difacto = "difacto"


class Optimizer(str, Enum):
    sgd = "sgd"
    adam = "adam"
    adagrad = "adagrad"


class Recipe(str, Enum):
    paper = "paper"
    fast = "fast"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


@user_errors
def train(
    data: Annotated[
        Path | None,
        typer.Option(help="Dataset folder written by `dinctl preprocess`. (default: data/amazon)"),
    ] = None,
    model: Annotated[ModelName | None, typer.Option(help="Model. (default: din)")] = None,
    act: Annotated[
        Act | None,
        typer.Option(help="Activation in the MLPs and the activation unit. (default: prelu)"),
    ] = None,
    reg: Annotated[
        Reg | None, typer.Option(help="Regulariser (Table 4 of the paper). (default: none)")
    ] = None,
    reg_lambda: Annotated[
        float | None,
        typer.Option(min=0.0, help="λ of mba / l2 / difacto. (default: per regulariser)"),
    ] = None,
    filter_top_k: Annotated[
        int | None,
        typer.Option(
            min=1, help="--reg filter: item ids kept; the rest share one bucket. (default: 10000)"
        ),
    ] = None,
    recipe: Annotated[
        Recipe | None,
        typer.Option(
            help="paper: SGD lr 1.0→0.1, batch 32, clip 5; fast: Adam, batch 1024. (default: fast)"
        ),
    ] = None,
    optimizer: Annotated[
        Optimizer | None, typer.Option(help="Optimiser. (default: from the recipe)")
    ] = None,
    lr: Annotated[
        float | None, typer.Option(min=0.0, help="Learning rate. (default: from the recipe)")
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(min=1, help="Epochs. (default: from the recipe)")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="Global batch size. (default: from the recipe)")
    ] = None,
    emb_dim: Annotated[
        int | None,
        typer.Option(min=1, help="Embedding size per id (item ⊕ category = 2×). (default: 64)"),
    ] = None,
    emb_init_std: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="Std of the N(0, std²) embedding init; ~1 suits tiny data. (default: 0.01)",
        ),
    ] = None,
    max_len: Annotated[
        int | None,
        typer.Option(min=1, help="Most recent behaviours kept per sample. (default: 100)"),
    ] = None,
    attn_softmax: Annotated[
        bool | None,
        typer.Option(
            "--attn-softmax/--no-attn-softmax",
            help="Softmax-normalise attention (the authors' code). (default: off)",
        ),
    ] = None,
    no_item_ids: Annotated[
        bool,
        typer.Option(
            "--no-item-ids", help="Category embeddings only (Table 4's 'without goods ids')."
        ),
    ] = False,
    length_buckets: Annotated[
        bool | None,
        typer.Option(
            "--length-buckets/--no-length-buckets",
            help="Batch rows of similar history length together. (default: off)",
        ),
    ] = None,
    device: Annotated[
        Device | None, typer.Option(help="auto = cuda when available. (default: auto)")
    ] = None,
    amp: Annotated[
        bool | None,
        typer.Option(
            "--amp/--no-amp", help="bf16 autocast on CUDA (ignored on CPU). (default: off)"
        ),
    ] = None,
    compile: Annotated[
        bool | None,
        typer.Option("--compile/--no-compile", help="torch.compile the model. (default: off)"),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed of initialisation, order and dropout. (default: 1234)")
    ] = None,
    log_every: Annotated[
        int | None,
        typer.Option(min=1, help="Write a log.jsonl step line every N steps. (default: 100)"),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Run folder. (default: runs/<model>-<act>-<reg>-<UTC time>)")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out from its checkpoint.pt.")
    ] = False,
    config: Annotated[
        Path | None, typer.Option("--config", help="TOML file of settings (flags override it).")
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the result as JSON on stdout; no progress bar.")
    ] = False,
    threads: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Torch CPU threads. (default: OMP_NUM_THREADS if set, else the cores not "
            "busy with other jobs, by the load average)",
        ),
    ] = None,
) -> None:
    """Train DIN or a competitor on a preprocessed dataset; writes runs/<name>/."""
    from dinctl.errors import DinctlError
    from dinctl.training.config import resolve_config
    from dinctl.training.loop import resume_config
    from dinctl.training.loop import train as run_training

    def value(v: Any) -> Any:
        return v.value if isinstance(v, Enum) else v

    overrides: dict[str, Any] = {
        "data": str(data) if data is not None else None,
        "model": value(model),
        "act": value(act),
        "reg": value(reg),
        "reg_lambda": reg_lambda,
        "filter_top_k": filter_top_k,
        "recipe": value(recipe),
        "optimizer": value(optimizer),
        "lr": lr,
        "epochs": epochs,
        "batch_size": batch_size,
        "emb_dim": emb_dim,
        "emb_init_std": emb_init_std,
        "max_len": max_len,
        "attn_softmax": attn_softmax,
        "use_item_ids": False if no_item_ids else None,
        "length_buckets": length_buckets,
        "device": value(device),
        "amp": amp,
        "compile": compile,
        "seed": seed,
        "log_every": log_every,
        "out": str(out) if out is not None else None,
    }
    if resume:
        if out is None:
            raise DinctlError("--resume needs --out RUN_DIR naming the run to continue")
        if config is not None:
            raise DinctlError(
                "--resume takes its settings from the run's config.json, not --config"
            )
        cfg = resume_config(out, overrides)
    else:
        cfg = resolve_config(overrides, config)
    result = _with_threads(threads, lambda: run_training(cfg, resume=resume, progress=not json_out))
    if result.rank != 0:  # under torchrun only rank 0 prints
        return
    if json_out:
        payload = {
            "run_dir": str(result.run_dir),
            "best_epoch": result.best_epoch,
            "best_valid": result.best_valid,
            "epochs_run": result.epochs_run,
        }
        print(json.dumps(payload))
        return
    best = result.best_valid
    if best:
        summary = "  ".join(f"{k.removeprefix('valid_')} {v:.4f}" for k, v in best.items())
        print(f"best epoch {result.best_epoch}: {summary}", file=sys.stderr)
    print(result.run_dir)


def _with_threads(threads: int | None, job: Any) -> Any:
    """Run `job` with `threads` torch threads; None = `auto_threads()` unless OMP_NUM_THREADS is
    set or torchrun started us (then torch's own choice stands)."""
    import os

    import torch

    from dinctl.training.loop import auto_threads

    if threads is None and ("OMP_NUM_THREADS" in os.environ or "WORLD_SIZE" in os.environ):
        return job()
    before = torch.get_num_threads()
    torch.set_num_threads(threads if threads is not None else auto_threads())
    try:
        return job()
    finally:
        torch.set_num_threads(before)
