"""Resuming: the run folder check, checkpoint.pt's contents (snapshot) and their restore.

checkpoint.pt holds only tensors and plain values (configs and records as JSON strings, RNG
states as uint8 tensors), so it loads with `weights_only=True`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from dinctl.errors import DinctlError
from dinctl.fsutil import check_output_kind
from dinctl.reporting import SILENT, Reporter
from dinctl.runs import BEST_FILE, CHECKPOINT_FILE, CONFIG_FILE, LOG_FILE
from dinctl.training import distributed
from dinctl.training.checkpoint import (
    load_checkpoint,
    read_run_config,
    save_checkpoint,
)
from dinctl.training.config import TrainConfig
from dinctl.training.selection import selection_key, selection_score
from dinctl.training.sharded import load_parts_weights, parts_weights
from dinctl.training.state import Best, Data, LossSums, Parts, Run, TrainState

CHECKPOINT_FORMAT = 1

# what a run folder holds before its first checkpoint: a start that failed there may restart
STARTED_FILES = frozenset({CONFIG_FILE, LOG_FILE})
OTHER_RUN_HINT = (
    f"it belongs to another run; start a new run, or restore the run's own {CHECKPOINT_FILE}"
)


def prepare_run_dir(
    run_dir: Path, resume: bool, info: distributed.DistInfo, reporter: Reporter = SILENT
) -> None:
    """Check the run folder; it is created with config.json, once the dataset has loaded.

    A folder of a run that stopped before its first checkpoint (a NaN loss in epoch 1, a bad
    split) cannot be resumed, and starting it again with the same command starts afresh."""
    check_output_kind(run_dir, "folder")  # a file, FIFO or device named as --out
    never_saved = run_dir.is_dir() and not (run_dir / CHECKPOINT_FILE).exists()
    if resume:
        if never_saved and (run_dir / CONFIG_FILE).exists():
            raise DinctlError(
                f"cannot resume: {run_dir} stopped before its first checkpoint "
                f"({CHECKPOINT_FILE} does not exist)",
                hint="run the same command without --resume: the run starts again from the "
                "beginning",
            )
        if not (run_dir / CHECKPOINT_FILE).exists():
            raise DinctlError(
                f"cannot resume: {run_dir / CHECKPOINT_FILE} does not exist",
                hint="start the run without --resume",
            )
        return
    if run_dir.exists() and any(run_dir.iterdir()):
        names = {p.name for p in run_dir.iterdir()}
        if not (never_saved and names <= STARTED_FILES):
            raise DinctlError(
                f"run folder {run_dir} already exists",
                hint="pass --resume to continue it, or choose another --out",
            )
        distributed.barrier(info)  # every rank has looked before rank 0 clears the failed start
        if info.is_main:
            for name in names:
                (run_dir / name).unlink()
        reporter.line(f"{run_dir} stopped before its first checkpoint; starting it again")
    distributed.barrier(info)  # every rank has checked before rank 0 writes config.json into it


def restore(
    run_dir: Path,
    cfg: TrainConfig,
    data: Data,
    parts: Parts,
    device: torch.device,
    info: distributed.DistInfo,
) -> TrainState:
    """Load checkpoint.pt into the model, optimisers and RNGs; return the saved state."""
    saved = read_run_config(run_dir)
    if saved.dataset_checksum != data.ds.checksum:
        raise DinctlError(
            f"the dataset {cfg.data} changed since {run_dir} was started (checksum differs)",
            hint="resume with the same dataset, or start a new run",
        )
    # on CPU: RNG states must stay there; mapped when sharded: a rank reads only its rows
    state = load_checkpoint(run_dir / CHECKPOINT_FILE, mmap=parts.sharded is not None)
    check_resume_state(state, run_dir / CHECKPOINT_FILE, cfg)
    if int(state["world_size"]) != info.world_size and not cfg.shard_embeddings:
        raise DinctlError(
            f"{run_dir / CHECKPOINT_FILE} was written by {state['world_size']} process(es), "
            f"this run has {info.world_size}",
            hint="resume with the same torchrun --nproc-per-node × --nnodes",
        )
    try:
        load_parts_weights(parts, state["model"])
        for opt, opt_state in zip(parts.optimizers, state["optimizers"], strict=True):
            opt.load_state_dict(opt_state)
    except (RuntimeError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DinctlError(
            f"{run_dir / CHECKPOINT_FILE} does not fit this run's {cfg.model} model ({first})",
            hint=OTHER_RUN_HINT,
        ) from None
    saved_best = json.loads(state["best"])  # older runs also hold "auc"; the score is re-read
    valid = dict(saved_best["valid"])
    best = Best(int(saved_best["epoch"]), selection_score(valid, selection_key(cfg)), valid)
    saved_rank = info.rank % len(state["rng_cpu"])  # sharded runs resume on any world size
    torch.set_rng_state(state["rng_cpu"][saved_rank])
    parts.reg_rng.set_state(state["rng_dropout"][saved_rank])
    if device.type == "cuda" and state["rng_cuda"]:
        torch.cuda.set_rng_state(state["rng_cuda"][saved_rank].cpu(), device)
    return TrainState(
        step=int(state["step"]),
        epoch=int(state["epoch"]),
        batch_pos=int(state["batch"]),
        sums=LossSums.unpack(state["sums"]),
        best=best,
        history=json.loads(state["history"]),
        keep_lines=int(state["log_lines"]),
    )


RESUME_KEYS = (
    "format",
    "config",
    "model",
    "optimizers",
    "step",
    "epoch",
    "batch",
    "sums",
    "best",
    "history",
    "log_lines",
    "world_size",
    "rng_cpu",
    "rng_dropout",
    "rng_cuda",
)


def check_resume_state(state: dict[str, Any], path: Path, cfg: TrainConfig) -> None:
    """One line when `path` is not a resume checkpoint of this format, or of another model."""
    missing = [k for k in RESUME_KEYS if k not in state]
    if state.get("format") != CHECKPOINT_FORMAT or missing:
        raise DinctlError(
            f"{path} has checkpoint format {state.get('format')!r}, expected {CHECKPOINT_FORMAT}"
            + (f" (it lacks {', '.join(missing)})" if missing else ""),
            hint=f"it is not a resume checkpoint of this dinctl ({BEST_FILE} holds weights "
            "only); start a new run",
        )
    try:
        saved = json.loads(state["config"])
        saved_model = saved["model"]
    except (TypeError, ValueError, KeyError):
        saved_model = None
    if saved_model != cfg.model:
        raise DinctlError(
            f"{path} is a checkpoint of model {saved_model!r}, this run trains {cfg.model!r}",
            hint=OTHER_RUN_HINT,
        )


def save_latest(run: Run) -> None:
    """checkpoint.pt from the current state (a collective under DDP: every rank calls it)."""
    save_checkpoint(run.run_dir / CHECKPOINT_FILE, snapshot(run), write=run.info.is_main)


def snapshot(run: Run) -> dict[str, Any]:
    """The resume state: weights, optimisers, counters, best, history and every RNG."""
    info, device, state = run.info, run.device, run.state

    def gathered(t: torch.Tensor) -> list[torch.Tensor]:
        return [x.cpu() for x in distributed.all_gather_tensors(t.to(device), info)]

    cuda_rng = gathered(torch.cuda.get_rng_state(device)) if device.type == "cuda" else []
    return {
        "format": CHECKPOINT_FORMAT,
        "config": run.cfg.to_json(),
        "model": parts_weights(run.parts, info),
        "optimizers": [opt.state_dict() for opt in run.parts.optimizers],
        "step": state.step,
        "epoch": state.epoch,
        "batch": state.batch_pos,
        "sums": state.sums.packed(),
        "best": state.best.to_json(),
        "best_epoch": state.best.epoch,
        "best_valid": dict(state.best.valid),
        "select_metric": selection_key(run.cfg),
        "history": json.dumps(state.history),
        "log_lines": run.log.lines,
        "world_size": info.world_size,
        "rng_cpu": gathered(torch.get_rng_state()),
        "rng_dropout": gathered(run.parts.reg_rng.get_state()),
        "rng_cuda": cuda_rng,
    }
