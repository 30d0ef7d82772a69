"""The training loop: read `train` top to bottom (state in state.py, resume in resume.py).

setup data → setup model → restore (resume) → for each epoch: seeded permutation → batches
gathered from the CSR store → BCE + regulariser → step → (log) → validate, keep the best by
`valid_<select_metric>` (best.pt), checkpoint (checkpoint.pt) → stop at --epochs, or earlier once
--patience epochs pass without a better one. Under torchrun the same loop runs on every rank with
DistributedDataParallel, each rank holding its share of the rows (`store.load_share`) and training
on the part of each global batch that falls in it; only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dinctl.data.batching import Batch, SplitTensors, WindowGatherer
from dinctl.data.store import Dataset, check_trainable, load_dataset, load_share
from dinctl.errors import DinctlError
from dinctl.locks import folder_lock
from dinctl.model_settings import model_settings
from dinctl.models import ModelConfig
from dinctl.models.config import schema_fields
from dinctl.reporting import SILENT, Reporter
from dinctl.runs import BEST_FILE, CHECKPOINT_FILE, CONFIG_FILE, LOG_FILE, METRIC_LABELS
from dinctl.training import distributed, sharded
from dinctl.training.checkpoint import (
    RunConfig,
    read_run_config,
    save_checkpoint,
    write_run_config,
)
from dinctl.training.config import TrainConfig, resolve_config
from dinctl.training.device import amp_device, resolve_device, thread_policy
from dinctl.training.initial import seeded_model
from dinctl.training.optim import make_optimizers, set_lr, use_sparse_grads
from dinctl.training.predict import predict_proba, to_device
from dinctl.training.progress import Progress, epoch_line
from dinctl.training.regularizers import fill_item_filter, make_regularizer, model_item_vocab
from dinctl.training.resume import prepare_run_dir, restore, save_latest
from dinctl.training.runlog import RunLog
from dinctl.training.selection import (
    patience_ran_out,
    selection_key,
    selection_score,
    truth,
    valid_metrics,
)
from dinctl.training.state import Best, Data, Parts, Run, TrainState
from dinctl.training.stop import StopFlag

BUCKET_BATCHES = 64  # --length-buckets sorts rows by history length within 64-batch chunks


@dataclass(frozen=True)
class TrainResult:
    """What `train` returns: where the run is and how good its best epoch was."""

    run_dir: Path
    best_epoch: int  # 1-based; 0 when no epoch finished
    best_valid: dict[str, float]
    epochs_run: int
    rank: int = 0  # this process's rank under torchrun
    select_metric: str = "valid_user_weighted_auc"  # the key of best_valid that chose the epoch
    stopped_early: bool = False  # the patience ran out before --epochs


def bce_loss(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy on logits (B,) against labels (B,)."""
    return F.binary_cross_entropy_with_logits(logits.float(), label)


def resume_config(run_dir: Path, overrides: dict[str, Any]) -> TrainConfig:
    """The saved config of `run_dir`, with the flags that may change on resume applied."""
    saved = read_run_config(run_dir).train
    flags = {**overrides, "out": str(run_dir)}
    return resolve_config(flags, saved=saved, source=str(Path(run_dir) / CONFIG_FILE))


# ---------------------------------------------------------------- small pieces of the loop


def epoch_order(n: int, epoch: int, cfg: TrainConfig, hist_len: torch.Tensor) -> torch.Tensor:
    """A seeded permutation of n rows for `epoch`, the same on every rank; optionally bucketed."""
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=g)  # (n,)
    if not cfg.length_buckets:
        return order
    b = cfg.batch_size
    chunk = torch.arange(n) // (BUCKET_BATCHES * b)  # (n,)
    key = chunk * (int(hist_len.max()) + 1) + hist_len[order]  # (n,)
    order = order[torch.sort(key, stable=True).indices]  # sorted by length within each chunk
    n_full = n // b
    shuffled = torch.randperm(n_full, generator=g)  # (n_full,) order of the full batches
    full = order[: n_full * b].view(n_full, b)[shuffled].reshape(-1)
    return torch.cat([full, order[n_full * b :]])


def n_global_batches(n: int, batch_size: int, world_size: int) -> int:
    """Batches per epoch; a last batch too small to give every rank a row is dropped."""
    count = (n + batch_size - 1) // batch_size
    if count and world_size > 1 and n - (count - 1) * batch_size < world_size:
        count -= 1
    return count


def unused_parameters(model: nn.Module, batch: Batch) -> bool:
    """Whether a forward/backward leaves some trainable parameter without a gradient (for DDP).

    Runs on a copy, so buffers (Dice moving averages), RNG and gradients are untouched.
    """
    rng = torch.get_rng_state()
    probe = copy.deepcopy(model)
    probe(batch).logits.sum().backward()
    torch.set_rng_state(rng)
    return any(p.requires_grad and p.grad is None for p in probe.parameters())


# ---------------------------------------------------------------- the loop


def train(
    cfg: TrainConfig,
    *,
    resume: bool = False,
    reporter: Reporter = SILENT,
    on_step: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train `cfg` into its run folder (or continue it with `resume`); see the module docstring.

    `reporter` hears the epoch lines, warnings and the batch bar (rank 0 only); `on_step(step)`
    is called after every optimiser step (tests use it to interrupt a run).
    """
    device = resolve_device(cfg.device)
    info = distributed.init_from_env(device.type)
    finished = False
    try:
        with thread_policy(cfg.threads):
            cfg, device = _join_job(cfg, device, info)
            with _run_lock(Path(cfg.out), info):
                report = reporter if info.is_main else SILENT
                result = _train(cfg, device, info, resume, report, on_step)
                finished = True
                return result
    finally:
        distributed.shutdown(info, finished=finished)


def _run_lock(run_dir: Path, info: distributed.DistInfo) -> contextlib.AbstractContextManager[Any]:
    """One writer per run folder: rank 0 holds its lock (the other ranks only read)."""
    if info.rank != 0:
        return contextlib.nullcontext()
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    return folder_lock(run_dir, what="run")


def _join_job(
    cfg: TrainConfig, device: torch.device, info: distributed.DistInfo
) -> tuple[TrainConfig, torch.device]:
    """This rank's device, and rank 0's run folder name (it holds a timestamp)."""
    if cfg.batch_size < info.world_size:  # a rank would get an empty share (a NaN loss)
        raise DinctlError(
            f"--batch-size {cfg.batch_size} is smaller than the {info.world_size} processes",
            hint="the batch size is global: give each process at least one row",
        )
    if info.enabled and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
    if cfg.shard_embeddings:
        sharded.require_torchrec()
        sharded.check_sharded_config(cfg, device, info)
    if info.enabled:
        shared = [cfg.out]
        torch.distributed.broadcast_object_list(shared, src=0)
        cfg = replace(cfg, out=shared[0])
    return cfg, device


def _train(
    cfg: TrainConfig,
    device: torch.device,
    info: distributed.DistInfo,
    resume: bool,
    reporter: Reporter,
    on_step: Callable[[int], None] | None,
) -> TrainResult:
    run_dir = Path(cfg.out)
    prepare_run_dir(run_dir, resume, info, reporter)
    data = setup_data(cfg, device, reporter, info)
    parts = setup_model(cfg, data, device, info)
    state = restore(run_dir, cfg, data, parts, device, info) if resume else TrainState()
    state.sums = state.sums.to(device)
    state.bad_step = state.bad_step.to(device)
    if info.is_main:  # on resume too: --epochs may have grown, and config.json must say so
        write_run_config(run_dir, parts.rc)
    if parts.sharded is None:  # sharded: DistributedModelParallel already
        parts.step_model = wrap_for_job(cfg, parts.model, data, device, info)
    use_amp, why_not = amp_device(device) if cfg.amp else (False, "")
    if cfg.amp and not use_amp:
        reporter.warn(f"--amp has no effect: {why_not}; training in float32")
    log = RunLog(run_dir / LOG_FILE, info.is_main, state.keep_lines)
    steps = n_global_batches(data.train_rows.total, cfg.batch_size, info.world_size)
    run = Run(
        cfg=cfg,
        device=device,
        info=info,
        data=data,
        parts=parts,
        state=state,
        log=log,
        bar=Progress(reporter),
        reporter=reporter,
        use_amp=use_amp,
        steps_per_epoch=steps,
        on_step=on_step,
    )
    try:
        with StopFlag() as stop:
            while state.epoch < cfg.epochs and not patience_ran_out(
                cfg.patience, state.epoch, state.best.epoch
            ):
                one_epoch(run, stop)
            stopped_early = state.epoch < cfg.epochs
            if stopped_early and state.epochs_run:
                log.write({"event": "early_stop", "epoch": state.epoch, **_best_fields(cfg, state)})
                reporter.line(
                    f"early stop: no better valid {METRIC_LABELS[cfg.select_metric]}"
                    f" in {cfg.patience} epochs"
                )
    finally:
        run.bar.end_epoch()
        log.close()
    return TrainResult(
        run_dir=run_dir,
        best_epoch=state.best.epoch,
        best_valid=dict(state.best.valid),
        epochs_run=state.epochs_run,
        rank=info.rank,
        select_metric=selection_key(cfg),
        stopped_early=stopped_early,
    )


def _best_fields(cfg: TrainConfig, state: TrainState) -> dict[str, Any]:
    return {"best_epoch": state.best.epoch, "select_metric": selection_key(cfg)}


def setup_data(
    cfg: TrainConfig,
    device: torch.device,
    reporter: Reporter = SILENT,
    info: distributed.DistInfo | None = None,
) -> Data:
    """Load the dataset (under torchrun: this rank's share of it) and move the train / valid
    rows and the behaviour CSR to `device`."""
    info = info or distributed.DistInfo()
    whole = not info.enabled
    ds = load_dataset(cfg.data) if whole else load_share(cfg.data, info.rank, info.world_size)
    for split in ("train", "valid") if ds.has_split("valid") else ("train",):
        rows = ds.split(split)
        counts = torch.tensor([len(rows), int(rows.label.sum())])
        total, positives = distributed.all_sum(counts, info).tolist()
        check_trainable(ds, split, (total, positives))  # before the run folder is written
    train_rows = SplitTensors(ds.split("train"))
    valid_rows = SplitTensors(ds.split("valid")) if ds.has_split("valid") else None
    if valid_rows is None:
        reporter.warn(f"{cfg.data} has no valid split; the last epoch is kept as best.pt")
    gatherer = WindowGatherer(ds, cfg.max_len)
    to_device(train_rows, gatherer, device)
    if valid_rows is not None:
        to_device(valid_rows, gatherer, device)
    freqs = {"item": torch.from_numpy(ds.item_freq).to(device)}
    for name in ds.schema.categorical[1:]:  # n_j of every other field, counted the same way
        counted = torch.from_numpy(ds.field_sample_freq(name))  # of this rank's rows
        freqs[name] = distributed.all_sum(counted, info).to(device)
    return Data(ds, train_rows, valid_rows, gatherer, freqs)


def run_config(cfg: TrainConfig, ds: Dataset) -> RunConfig:
    """What config.json records: the train config, the model it builds, the dataset identity."""
    meta_keys = ("dataset", "protocol", "seed", "valid", "counts", "vocab", "schema")
    return RunConfig(
        train=cfg,
        model=ModelConfig(
            **model_settings(cfg),
            n_users=ds.n_users,
            n_items=model_item_vocab(cfg, ds.n_items),
            n_cates=ds.n_cates,
            item_filter=ds.n_items if cfg.reg == "filter" else 0,
            **schema_fields(ds.schema, ds.meta["vocab"]),
        ),
        dataset_path=Path(cfg.data).resolve(),
        dataset_checksum=ds.checksum,
        dataset_n_items=ds.n_items,
        dataset_meta={k: ds.meta.get(k) for k in meta_keys},
    )


def setup_model(
    cfg: TrainConfig, data: Data, device: torch.device, info: distributed.DistInfo
) -> Parts:
    """The seeded model (a `--reg filter` map filled), its optimisers and regulariser."""
    rc = run_config(cfg, data.ds)
    if cfg.shard_embeddings:  # builds the model without whole tables (training/sharded.py)
        reg_rng = torch.Generator().manual_seed(cfg.seed * 7919 + info.rank)
        shards, optimizers, reg = sharded.sharded_parts(
            rc.model, cfg, data.freqs, reg_rng, device, info
        )
        return Parts(
            rc=rc,
            model=shards.module,
            step_model=shards.dmp,  # DistributedModelParallel: DDP for the dense part
            optimizers=optimizers,
            reg=reg,
            reg_rng=reg_rng,
            sharded=shards,
        )
    model = seeded_model(rc.model, cfg.seed, cfg.emb_init_std)  # as a sharded run starts
    fill_item_filter(model, cfg, torch.from_numpy(data.ds.item_freq))
    model.to(device).train()
    reg_rng = torch.Generator().manual_seed(cfg.seed * 7919 + info.rank)
    union = (lambda ids: distributed.union_ids(ids, info)) if info.enabled else None
    reg = make_regularizer(cfg, data.freqs, reg_rng, union)
    optimizers = make_optimizers(cfg, model, use_sparse_grads(cfg, info, reg))
    return Parts(
        rc=rc,
        model=model,
        step_model=model,  # wrap_for_job puts it behind DDP / torch.compile
        optimizers=optimizers,
        reg=reg,
        reg_rng=reg_rng,
    )


def wrap_for_job(
    cfg: TrainConfig, model: nn.Module, data: Data, device: torch.device, info: distributed.DistInfo
) -> nn.Module:
    """`model` behind DistributedDataParallel (under torchrun) and torch.compile (--compile)."""
    step_model: nn.Module = model
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        n_probe = min(len(data.train_rows), 8)
        probe = data.train_rows.rows(torch.arange(n_probe, device=device))
        step_model = DDP(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=unused_parameters(model, data.gatherer.gather(*probe)),
        )
    if cfg.compile:
        step_model = torch.compile(step_model, dynamic=True)  # type: ignore[assignment]
    return step_model


def one_epoch(run: Run, stop: StopFlag) -> None:
    """Train the rest of the current epoch, then validate, keep the best and checkpoint."""
    cfg, info, state, data = run.cfg, run.info, run.state, run.data
    t0 = time.perf_counter()
    hist_len = data.train_rows.hist_len  # only --length-buckets reads it: the whole split's
    if cfg.length_buckets and data.train_rows.is_share:
        hist_len = distributed.gather_shares(hist_len, info)
    order = epoch_order(data.train_rows.total, state.epoch, cfg, hist_len.cpu())  # (n,)
    order = order.to(run.device)
    n_batches = run.steps_per_epoch
    run.bar.start_epoch(f"epoch {state.epoch + 1}/{cfg.epochs}", n_batches, state.batch_pos)
    run.parts.model.train()
    while state.batch_pos < n_batches:
        lo = state.batch_pos * cfg.batch_size
        rows = order[lo : lo + cfg.batch_size]  # (B,) the global batch's rows
        train_step(run, own_rows(rows, data.train_rows), int(rows.shape[0]))
        check = not info.enabled or state.step % cfg.log_every == 0
        if check and distributed.any_flag(stop.requested, info, run.device):
            save_latest(run)
            raise KeyboardInterrupt
    log_window(run)
    record = validate_and_save(run, t0)
    run.bar.end_epoch()
    run.reporter.line(epoch_line(record))
    save_latest(run)
    if distributed.any_flag(stop.requested, info, run.device):
        raise KeyboardInterrupt


def own_rows(rows: torch.Tensor, share: SplitTensors) -> torch.Tensor:
    """(b,) indices into `share` of the global rows `rows` that lie in this rank's share."""
    local = rows - share.offset  # (B,)
    return local[(local >= 0) & (local < len(share))]


def batch_loss(
    logits: torch.Tensor, label: torch.Tensor, batch_rows: int, info: distributed.DistInfo
) -> torch.Tensor:
    """This rank's part of the global batch's mean BCE. The ranks hold unequal parts of a
    batch and DDP (TorchRec too) averages gradients over the W ranks, so rank r gives
    W/B·Σ over its b_r rows: the average is the mean over the B rows, as in one process."""
    if info.world_size == 1:
        return bce_loss(logits, label)
    total = F.binary_cross_entropy_with_logits(logits.float(), label, reduction="sum")
    return total * (info.world_size / batch_rows)


def train_step(run: Run, index: torch.Tensor, batch_rows: int) -> None:
    """One optimiser step on the rows `index` (this rank's part of the global batch of
    `batch_rows` rows; maybe none: the rank still steps, the collectives need it)."""
    cfg, state, parts = run.cfg, run.state, run.parts
    stand_in = index.shape[0] == 0  # no rows here: step on row 0, weighed 0
    batch = run.data.gatherer.gather(
        *run.data.train_rows.rows(index.new_zeros(1) if stand_in else index)
    )
    batch = parts.reg.training_batch(batch)
    set_lr(parts.optimizers, cfg.lr_at(state.step, run.steps_per_epoch))
    with torch.autocast(device_type=run.device.type, dtype=torch.bfloat16, enabled=run.use_amp):
        logits = parts.step_model(batch).logits  # (b,)
    loss = batch_loss(logits, batch.label, batch_rows, run.info) * (0.0 if stand_in else 1.0)
    total = loss + parts.reg.penalty(parts.model.sparse_tables(), batch)  # type: ignore[operator]
    for opt in parts.optimizers:
        opt.zero_grad(set_to_none=True)
    total.backward()
    if cfg.grad_clip > 0:
        nn.utils.clip_grad_norm_(parts.model.parameters(), cfg.grad_clip)
    for opt in parts.optimizers:
        opt.step()

    state.bad_step = torch.where(
        (state.bad_step < 0) & ~torch.isfinite(loss.detach()), state.step + 1, state.bad_step
    )
    state.sums.add(loss)
    state.step += 1
    state.batch_pos += 1
    state.window_samples += batch_rows
    if state.step % cfg.log_every == 0:
        log_window(run)
    run.bar.advance(batch_rows, state.sums.epoch_mean)
    if run.on_step is not None:
        run.on_step(state.step)


def log_window(run: Run) -> None:
    """Write a step line with the mean loss since the last one; stop on a non-finite loss."""
    state, cfg = run.state, run.cfg
    window = state.sums.window.clone()
    if run.info.enabled:
        torch.distributed.all_reduce(window)
    loss_sum, count = window.tolist()
    if not math.isfinite(loss_sum):
        raise DinctlError(
            f"the training loss became {loss_sum} at step {int(state.bad_step.item())} "
            f"(epoch {state.epoch + 1})",
            hint=_diverged_hint(run),
        )
    if count:
        elapsed = max(time.perf_counter() - state.window_start, 1e-9)
        speed = state.window_samples / elapsed
        run.log.write(
            {
                "event": "step",
                "epoch": state.epoch + 1,
                "step": state.step,
                "loss": loss_sum / count,
                "lr": cfg.lr_at(state.step - 1, run.steps_per_epoch),
                "samples_per_s": round(speed, 1),
            }
        )
    state.sums.window.zero_()
    state.window_start = time.perf_counter()
    state.window_samples = 0


def _diverged_hint(run: Run) -> str:
    """The way out of a non-finite loss that exists: a resume would replay it."""
    lower = f"lower --lr (now {run.cfg.lr:g})"
    checkpoint = run.run_dir / CHECKPOINT_FILE
    if checkpoint.exists():
        return (
            f"{lower} and train into another --out; {checkpoint} keeps this run's last good "
            f"state (epoch {run.state.epoch})"
        )
    return (
        f"{lower} and run the command again with the same --out: {run.run_dir} holds no "
        "checkpoint yet, so it starts afresh"
    )


def validate_and_save(run: Run, t0: float) -> dict[str, Any]:
    """Close the epoch: its log record, validation metrics, best.pt when it is the best."""
    cfg, info, state, data = run.cfg, run.info, run.state, run.data
    ep = state.sums.epoch.clone()
    if info.enabled:
        torch.distributed.all_reduce(ep)
    loss_sum, batches = ep.tolist()
    train_loss = loss_sum / batches if batches else float("nan")
    record: dict[str, Any] = {
        "event": "epoch",
        "epoch": state.epoch + 1,
        "step": state.step,
        "train_loss": train_loss,
    }
    if data.valid_rows is not None:
        model = run.parts.model
        t_valid = time.perf_counter()
        prob = predict_proba(
            model, data.valid_rows, data.gatherer, cfg.eval_batch_size, info, run.use_amp
        )
        record.update(valid_metrics(prob, truth(data.valid_rows, info)))
        record["validation_seconds"] = round(time.perf_counter() - t_valid, 3)  # of `seconds`
    score = selection_score(record, selection_key(cfg))  # -inf without a valid split
    better = data.valid_rows is None or score > state.best.score
    record["seconds"] = round(time.perf_counter() - t0, 3)
    if better:
        valid = {k: v for k, v in record.items() if k.startswith("valid_")}
        state.best = Best(state.epoch + 1, score, valid)
        weights = sharded.parts_weights(run.parts, info)  # a collective when sharded
        save_checkpoint(  # every rank: a sharded run's tables stream into rank 0's file
            run.run_dir / BEST_FILE,
            {
                "model": weights,
                "epoch": state.epoch + 1,
                **_best_fields(cfg, state),
                "best_valid": dict(state.best.valid),
                "config": cfg.to_json(),
            },
            write=info.is_main,
        )
    record.update(_best_fields(cfg, state))
    run.log.write(record)
    state.history.append(record)
    state.epoch += 1
    state.epochs_run += 1
    state.batch_pos = 0
    state.sums.epoch.zero_()
    state.sums.window.zero_()
    return record


__all__ = ["TrainResult", "resume_config", "train"]
