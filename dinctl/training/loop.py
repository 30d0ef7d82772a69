"""The training loop: read it top to bottom.

dataset → model → optimiser → for each epoch: seeded permutation → batches gathered from the
CSR store → BCE + regulariser → step → (log) → validation → best.pt → checkpoint.pt.
Under torchrun the same loop runs on every rank with DistributedDataParallel; only rank 0
writes files.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dinctl.data.batching import Batch, SplitTensors, WindowGatherer
from dinctl.data.store import Dataset, load_dataset
from dinctl.errors import DinctlError
from dinctl.models import ModelConfig
from dinctl.training import distributed as D
from dinctl.training.checkpoint import (
    BEST_FILE,
    CHECKPOINT_FILE,
    CONFIG_FILE,
    LOG_FILE,
    RunConfig,
    build_run_model,
    load_checkpoint,
    read_run_config,
    save_checkpoint,
    write_run_config,
)
from dinctl.training.config import TrainConfig
from dinctl.training.regularizers import (
    behaviour_dropout,
    difacto_penalty,
    filter_item_map,
    l2_penalty,
    mba_penalty,
)

CHECKPOINT_FORMAT = 1
BUCKET_BATCHES = 64  # --length-buckets sorts rows by history length within 64-batch chunks
# settings that may change when a run is resumed; anything else must match config.json
RESUMABLE = ("epochs", "device", "amp", "log_every", "eval_batch_size", "out")


@dataclass(frozen=True)
class TrainResult:
    """What `train` returns: where the run is and how good its best epoch was."""

    run_dir: Path
    best_epoch: int  # 1-based; 0 when no epoch finished
    best_valid: dict[str, float]
    epochs_run: int
    rank: int = 0  # this process's rank under torchrun


def bce_loss(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy on logits (B,) against labels (B,)."""
    return F.binary_cross_entropy_with_logits(logits.float(), label)


def resolve_device(name: str) -> torch.device:
    """`auto` → cuda when available, else cpu; `cuda` without CUDA is an error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise DinctlError(
            "--device cuda was asked for but CUDA is not available", hint="use --device cpu or auto"
        )
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resume_config(run_dir: Path, overrides: dict[str, Any]) -> TrainConfig:
    """The saved config of `run_dir`, with the flags that may change on resume applied."""
    saved = read_run_config(run_dir).train
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        if value is None or key in ("out", "recipe"):
            continue
        if key in RESUMABLE:
            changes[key] = value
        elif getattr(saved, key) != value:
            flag = "--" + key.replace("_", "-")
            raise DinctlError(
                f"{flag} {value} differs from the run's {getattr(saved, key)} "
                f"in {Path(run_dir) / CONFIG_FILE}",
                hint="a resumed run keeps its config; drop the flag or start a new run",
            )
    return replace(saved, out=str(run_dir), **changes)


# ---------------------------------------------------------------- small pieces of the loop


def use_sparse_grads(cfg: TrainConfig, info: D.DistInfo) -> bool:
    """Sparse embedding gradients (only the batch's rows are updated) wherever they are exact:
    not with global-norm clipping or whole-table L2 (dense by definition), DDP or compile."""
    return (
        cfg.sparse_grads
        and cfg.grad_clip == 0
        and cfg.reg != "l2"
        and not info.enabled
        and not cfg.compile
    )


def auto_threads(
    cores: int | None = None, load: float | None = None, most: int | None = None
) -> int:
    """Intra-op torch threads for a CPU run: the cores this process may use minus those other
    jobs keep busy (the 1-minute load average, rounded), at least 1 and at most `most` (torch's
    default). DIN's thin matmuls gain little from a second thread on a quiet machine (+16%,
    2 cores) and lose much when it has to wait for a busy core (2 threads: 31 s, 1 thread:
    17.5 s per epoch, 2 cores at load 2.7)."""
    import os

    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if load is None:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if most is None:
        most = torch.get_num_threads()
    return max(1, min(int(most), int(cores or 1) - int(math.floor(load + 0.5))))


def make_optimizers(
    cfg: TrainConfig, model: nn.Module, sparse: bool
) -> list[torch.optim.Optimizer]:
    """The optimiser(s): with sparse gradients Adam becomes SparseAdam (lazy Adam) on the
    embedding tables + Adam on the dense weights; SGD and Adagrad take sparse gradients as is."""
    tables = [m for m in model.modules() if isinstance(m, nn.Embedding)]
    for table in tables:
        table.sparse = sparse
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return [torch.optim.SGD(params, lr=cfg.lr)]
    if cfg.optimizer == "adagrad":
        return [torch.optim.Adagrad(params, lr=cfg.lr)]
    if not sparse:
        return [_adam(params, cfg.lr)]
    sparse_ids = {id(t.weight) for t in tables}
    return [
        LazyAdam([t.weight for t in tables], lr=cfg.lr),
        _adam([p for p in params if id(p) not in sparse_ids], cfg.lr),
    ]


def _adam(params: list[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """Adam, fused into one kernel per step where this torch has it (CPU from 2.4, CUDA)."""
    major, minor = (int(x) for x in torch.__version__.split(".")[:2])
    on_cuda = bool(params) and params[0].is_cuda
    return torch.optim.Adam(params, lr=lr, fused=on_cuda or (major, minor) >= (2, 4))


class LazyAdam(torch.optim.SparseAdam):
    """`torch.optim.SparseAdam` with the same arithmetic, state and results (bit for bit), but
    the batch's rows are read with `index_select` and written with `index_add_` instead of
    `sparse_mask` and sparse additions: ~20 ms less per DIN step at batch 1024 on CPU."""

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps = float(group["lr"]), group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if not p.grad.is_sparse:
                    raise RuntimeError("LazyAdam takes sparse gradients only")
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                grad = p.grad if not group.get("maximize", False) else -p.grad
                grad = grad.coalesce()  # unique, sorted row ids; duplicates summed
                values = grad._values()  # (K, D)
                if values.numel() == 0:
                    continue
                rows = grad._indices()[0]  # (K,)
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                old_avg = exp_avg.index_select(0, rows)  # (K, D)
                avg_update = values.sub(old_avg).mul_(1 - beta1)
                exp_avg.index_add_(0, rows, avg_update)  # rows unique: exp_avg[rows] += update
                old_sq = exp_avg_sq.index_select(0, rows)
                sq_update = values.pow(2).sub_(old_sq).mul_(1 - beta2)
                exp_avg_sq.index_add_(0, rows, sq_update)
                numer = avg_update.add_(old_avg)
                denom = sq_update.add_(old_sq).sqrt_().add_(eps)
                step = state["step"]
                step_size = lr * math.sqrt(1 - beta2**step) / (1 - beta1**step)
                p.index_add_(0, rows, numer.div_(denom).mul_(-step_size))
        return loss


def penalty(
    cfg: TrainConfig,
    tables: list[tuple[str, nn.Embedding, str]],
    batch: Batch,
    freqs: dict[str, torch.Tensor],
    union: Callable[[torch.Tensor], torch.Tensor] | None,
) -> torch.Tensor | float:
    """The regulariser's term added to the loss (0 for none / dropout / filter)."""
    if cfg.reg == "mba":
        return mba_penalty(tables, batch, freqs, cfg.reg_lambda, union)
    if cfg.reg == "l2":
        return l2_penalty(tables, cfg.reg_lambda)
    if cfg.reg == "difacto":
        return difacto_penalty(tables, batch, cfg.reg_lambda)
    return 0.0


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


def to_device(rows: SplitTensors, gatherer: WindowGatherer, device: torch.device) -> None:
    """Move a split's rows and the behaviour CSR to `device`, so batches are gathered there."""
    for name in ("user", "hist_len", "item", "cate", "label"):
        setattr(rows, name, getattr(rows, name).to(device))
    for name in ("offsets", "seq_items", "seq_cates"):
        setattr(gatherer, name, getattr(gatherer, name).to(device))


@torch.no_grad()
def predict(
    model: nn.Module,
    rows: SplitTensors,
    gatherer: WindowGatherer,
    batch_size: int,
    info: D.DistInfo,
    amp: bool,
) -> torch.Tensor:
    """Click probabilities (n,) float32 on CPU for all rows of a split, rows sharded over ranks."""
    was_training = model.training
    model.eval()
    n = len(rows)
    mine = torch.arange(info.rank, n, info.world_size, device=rows.user.device)  # (n_r,)
    out = []
    for lo in range(0, mine.shape[0], batch_size):
        batch = gatherer.gather(*rows.rows(mine[lo : lo + batch_size]))
        with torch.autocast(device_type=rows.user.device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(batch).logits  # (b,)
        out.append(torch.sigmoid(logits.float()))
    local = torch.cat(out) if out else torch.zeros(0, device=rows.user.device)  # (n_r,)
    model.train(was_training)
    return D.all_gather_rows(local, n, info).cpu()


def valid_metrics(prob: torch.Tensor, rows: SplitTensors) -> dict[str, float]:
    """AUC, user-weighted AUC (Eq. 10) and log loss of validation predictions."""
    from dinctl.metrics import auc_score, log_loss, user_weighted_auc_score

    y = rows.label.cpu().numpy()
    p = prob.numpy().astype(np.float64)
    user = rows.user.cpu().numpy()
    return {
        "valid_auc": auc_score(y, p),
        "valid_gauc": user_weighted_auc_score(y, p, user),
        "valid_logloss": log_loss(y, p),
    }


def unused_parameters(model: nn.Module, batch: Batch) -> bool:
    """Whether a forward/backward leaves some trainable parameter without a gradient (for DDP).

    Runs on a copy, so buffers (Dice moving averages), RNG and gradients are untouched.
    """
    rng = torch.get_rng_state()
    probe = copy.deepcopy(model)
    probe(batch).logits.sum().backward()
    torch.set_rng_state(rng)
    return any(p.requires_grad and p.grad is None for p in probe.parameters())


class StopFlag:
    """Ctrl-C asks the loop to stop at the next step boundary; a second Ctrl-C stops at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class RunLog:
    """log.jsonl, written by rank 0 only, one flushed JSON object per line."""

    def __init__(self, path: Path, enabled: bool, keep_lines: int | None) -> None:
        self.path = path
        self.enabled = enabled
        self.lines = 0
        if not enabled:
            return
        if keep_lines is None:
            path.write_text("")
        else:  # resume: drop lines written after the checkpoint
            old = path.read_text().splitlines(keepends=True) if path.exists() else []
            path.write_text("".join(old[:keep_lines]))
            self.lines = min(keep_lines, len(old))
        self._f = open(path, "a")  # noqa: SIM115 - closed in close()

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            self._f.write(json.dumps(record) + "\n")
            self._f.flush()
        self.lines += 1

    def close(self) -> None:
        if self.enabled:
            self._f.close()


def make_progress(enabled: bool) -> Any:
    """A rich progress bar on stderr, or None when quiet / not a terminal."""
    if not enabled or not sys.stderr.isatty():
        return None
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[speed]} samples/s  loss {task.fields[loss]}"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )


def say(info: D.DistInfo, message: str) -> None:
    if info.is_main:
        print(message, file=sys.stderr)


# ---------------------------------------------------------------- the loop


def train(
    cfg: TrainConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    on_step: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train `cfg` into its run folder (or continue it with `resume`); see the module docstring.

    `on_step(step)` is called after every optimiser step (tests use it to interrupt a run).
    """
    device = resolve_device(cfg.device)
    info = D.init_from_env(device.type)
    try:
        if cfg.batch_size < info.world_size:  # a rank would get an empty share (a NaN loss)
            raise DinctlError(
                f"--batch-size {cfg.batch_size} is smaller than the {info.world_size} processes",
                hint="the batch size is global: give each process at least one row",
            )
        if info.enabled and device.type == "cuda":
            device = torch.device("cuda", info.local_rank)
        if info.enabled:  # every rank must use rank 0's run folder name (it holds a timestamp)
            shared = [cfg.out]
            torch.distributed.broadcast_object_list(shared, src=0)
            cfg = replace(cfg, out=shared[0])
        return _train(cfg, device, info, resume, progress, on_step)
    finally:
        D.shutdown(info)


def _prepare_run_dir(run_dir: Path, resume: bool, info: D.DistInfo) -> None:
    """Check the run folder; it is created with config.json, once the dataset has loaded."""
    if resume:
        if not (run_dir / CHECKPOINT_FILE).exists():
            raise DinctlError(
                f"cannot resume: {run_dir / CHECKPOINT_FILE} does not exist",
                hint="start the run without --resume",
            )
        return
    if run_dir.exists() and any(run_dir.iterdir()):
        raise DinctlError(
            f"run folder {run_dir} already exists",
            hint="pass --resume to continue it, or choose another --out",
        )
    D.barrier(info)  # every rank has checked before rank 0 writes config.json into it


def _train(
    cfg: TrainConfig,
    device: torch.device,
    info: D.DistInfo,
    resume: bool,
    progress: bool,
    on_step: Callable[[int], None] | None,
) -> TrainResult:
    run_dir = Path(cfg.out)
    _prepare_run_dir(run_dir, resume, info)

    # ---- data
    ds: Dataset = load_dataset(cfg.data)
    train_rows = SplitTensors(ds.split("train"))
    valid_rows = SplitTensors(ds.split("valid")) if ds.has_split("valid") else None
    if valid_rows is None:
        say(info, f"warning: {cfg.data} has no valid split; the last epoch is kept as best.pt")
    gatherer = WindowGatherer(ds, cfg.max_len)
    to_device(train_rows, gatherer, device)
    if valid_rows is not None:
        to_device(valid_rows, gatherer, device)
    if len(train_rows) == 0:
        raise DinctlError(
            f"the train split of {cfg.data} has no rows", hint="re-run `dinctl preprocess`"
        )
    freqs = {
        "item": torch.from_numpy(ds.item_freq).to(device),
        "cate": torch.from_numpy(ds.cate_sample_freq()).to(device),
    }

    # ---- model
    n_items_model = ds.n_items
    item_map = None
    if cfg.reg == "filter":
        item_map, n_items_model = filter_item_map(torch.from_numpy(ds.item_freq), cfg.filter_top_k)
    rc = RunConfig(
        train=cfg,
        model=ModelConfig(
            model=cfg.model,
            n_users=ds.n_users,
            n_items=n_items_model,
            n_cates=ds.n_cates,
            emb_dim=cfg.emb_dim,
            init_std=cfg.emb_init_std,
            act=cfg.act,
            attn_softmax=cfg.attn_softmax,
            use_item_ids=cfg.use_item_ids,
        ),
        dataset_path=Path(cfg.data).resolve(),
        dataset_checksum=ds.checksum,
        dataset_n_items=ds.n_items,
        dataset_meta={
            k: ds.meta.get(k) for k in ("dataset", "protocol", "seed", "valid", "counts", "vocab")
        },
    )
    torch.manual_seed(cfg.seed)
    model = build_run_model(rc)
    if item_map is not None:
        model.item_map.copy_(item_map)  # type: ignore[operator]
    model.to(device).train()
    optimizers = make_optimizers(cfg, model, use_sparse_grads(cfg, info))
    tables = model.sparse_tables()  # type: ignore[operator]
    dropout_gen = torch.Generator().manual_seed(cfg.seed * 7919 + info.rank)
    use_amp = cfg.amp and device.type == "cuda"
    if cfg.amp and not use_amp:
        say(info, "warning: --amp has no effect on CPU; training in float32")

    # ---- state (fresh, or restored from checkpoint.pt)
    step, epoch, batch_pos = 0, 0, 0
    # loss sum and step count since the last log line, then the same over the epoch
    sums = torch.zeros(4, dtype=torch.float64, device=device)
    best: dict[str, Any] = {"epoch": 0, "auc": -math.inf, "valid": {}}
    history: list[dict[str, Any]] = []
    keep_lines = None
    if resume:
        saved = read_run_config(run_dir)
        if saved.dataset_checksum != ds.checksum:
            raise DinctlError(
                f"the dataset {cfg.data} changed since {run_dir} was started (checksum differs)",
                hint="resume with the same dataset, or start a new run",
            )
        state = load_checkpoint(run_dir / CHECKPOINT_FILE)  # on CPU: RNG states must stay there
        if int(state["world_size"]) != info.world_size:
            raise DinctlError(
                f"{run_dir / CHECKPOINT_FILE} was written by {state['world_size']} process(es), "
                f"this run has {info.world_size}",
                hint="resume with the same torchrun --nproc-per-node × --nnodes",
            )
        model.load_state_dict(state["model"])
        for opt, opt_state in zip(optimizers, state["optimizers"], strict=True):
            opt.load_state_dict(opt_state)
        step, epoch, batch_pos = int(state["step"]), int(state["epoch"]), int(state["batch"])
        sums = state["sums"].to(device=device, dtype=torch.float64)
        best = json.loads(state["best"])
        best["auc"] = -math.inf if best["auc"] is None else best["auc"]
        history = json.loads(state["history"])
        keep_lines = int(state["log_lines"])
        torch.set_rng_state(state["rng_cpu"][info.rank])
        dropout_gen.set_state(state["rng_dropout"][info.rank])
        if device.type == "cuda" and state["rng_cuda"]:
            torch.cuda.set_rng_state(state["rng_cuda"][info.rank].cpu(), device)
    if info.is_main:  # on resume too: --epochs may have grown, and config.json must say so
        write_run_config(run_dir, rc)

    # ---- DDP / compile wrappers (state dicts always come from `model`)
    n_train = len(train_rows)
    step_model: nn.Module = model
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        probe = train_rows.rows(torch.arange(min(n_train, 8), device=device))
        find_unused = unused_parameters(model, gatherer.gather(*probe))
        step_model = DDP(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=find_unused,
        )
    if cfg.compile:
        step_model = torch.compile(step_model, dynamic=True)  # type: ignore[assignment]
    union = (lambda ids: D.union_ids(ids, info)) if info.enabled else None

    log = RunLog(run_dir / LOG_FILE, info.is_main, keep_lines)

    def snapshot() -> dict[str, Any]:
        rng_cuda: list[torch.Tensor] = []
        if device.type == "cuda":
            rng_cuda = [
                t.cpu()
                for t in D.all_gather_tensors(torch.cuda.get_rng_state(device).to(device), info)
            ]
        return {
            "format": CHECKPOINT_FORMAT,
            "config": cfg.to_json(),
            "model": model.state_dict(),
            "optimizers": [opt.state_dict() for opt in optimizers],
            "step": step,
            "epoch": epoch,
            "batch": batch_pos,
            "sums": sums.cpu(),
            "best": json.dumps({**best, "auc": None if best["auc"] == -math.inf else best["auc"]}),
            "best_epoch": int(best["epoch"]),
            "best_valid": dict(best["valid"]),
            "history": json.dumps(history),
            "log_lines": log.lines,
            "world_size": info.world_size,
            "rng_cpu": [
                t.cpu() for t in D.all_gather_tensors(torch.get_rng_state().to(device), info)
            ],
            "rng_dropout": [
                t.cpu() for t in D.all_gather_tensors(dropout_gen.get_state().to(device), info)
            ],
            "rng_cuda": rng_cuda,
        }

    def save_latest() -> None:
        state = snapshot()  # a collective under DDP: every rank calls it
        if info.is_main:
            save_checkpoint(run_dir / CHECKPOINT_FILE, state)

    def log_window() -> None:
        """Write a step line with the mean loss since the last one; stop on a non-finite loss."""
        window = sums[:2].clone()
        if info.enabled:
            torch.distributed.all_reduce(window)
        loss_sum, count = window.tolist()
        if not math.isfinite(loss_sum):
            raise DinctlError(
                f"the training loss became {loss_sum} at step {int(bad_step.item())} "
                f"(epoch {epoch + 1})",
                hint=f"lower --lr (now {cfg.lr:g}); {run_dir / CHECKPOINT_FILE} "
                "keeps the last good state",
            )
        if count:
            elapsed = max(time.perf_counter() - window_start[0], 1e-9)
            log.write(
                {
                    "event": "step",
                    "epoch": epoch + 1,
                    "step": step,
                    "loss": loss_sum / count,
                    "lr": cfg.lr_at(step - 1),
                    "samples_per_s": round(window_samples[0] / elapsed, 1),
                }
            )
            bar_fields["loss"] = f"{loss_sum / count:.4f}"
            bar_fields["speed"] = f"{window_samples[0] / elapsed:,.0f}"
        sums[:2] = 0
        window_start[0] = time.perf_counter()
        window_samples[0] = 0

    bad_step = torch.full((), -1, dtype=torch.long, device=device)
    window_start = [time.perf_counter()]
    window_samples = [0]
    bar_fields = {"loss": "-", "speed": "-"}
    bar = make_progress(progress and info.is_main)
    epochs_run = 0

    try:
        with StopFlag() as stop, bar if bar is not None else contextlib.nullcontext():
            while epoch < cfg.epochs:
                t0 = time.perf_counter()
                order = epoch_order(n_train, epoch, cfg, train_rows.hist_len.cpu()).to(
                    device
                )  # (n,)
                n_batches = n_global_batches(n_train, cfg.batch_size, info.world_size)
                task = (
                    bar.add_task(
                        f"epoch {epoch + 1}/{cfg.epochs}",
                        total=n_batches,
                        completed=batch_pos,
                        **bar_fields,
                    )
                    if bar
                    else None
                )
                model.train()
                while batch_pos < n_batches:
                    index = order[batch_pos * cfg.batch_size : (batch_pos + 1) * cfg.batch_size]
                    index = D.rank_slice(index, info)  # (b,)
                    batch = gatherer.gather(*train_rows.rows(index))
                    if cfg.reg == "dropout":
                        batch = behaviour_dropout(batch, cfg.dropout_rate, dropout_gen)
                    for opt in optimizers:
                        for group in opt.param_groups:
                            group["lr"] = cfg.lr_at(step)
                    with torch.autocast(
                        device_type=device.type, dtype=torch.bfloat16, enabled=use_amp
                    ):
                        logits = step_model(batch).logits  # (b,)
                    loss = bce_loss(logits, batch.label)
                    total = loss + penalty(cfg, tables, batch, freqs, union)
                    for opt in optimizers:
                        opt.zero_grad(set_to_none=True)
                    total.backward()
                    if cfg.grad_clip > 0:
                        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                    for opt in optimizers:
                        opt.step()

                    detached = loss.detach().double()
                    bad_step = torch.where(
                        (bad_step < 0) & ~torch.isfinite(detached), step + 1, bad_step
                    )
                    sums += torch.stack(
                        [detached, detached.new_ones(()), detached, detached.new_ones(())]
                    )
                    step += 1
                    batch_pos += 1
                    window_samples[0] += int(index.shape[0]) * info.world_size
                    if step % cfg.log_every == 0:
                        log_window()
                    if bar is not None:
                        bar.update(task, advance=1, **bar_fields)
                    if on_step is not None:
                        on_step(step)
                    check = not info.enabled or step % cfg.log_every == 0
                    if check and D.any_flag(stop.requested, info, device):
                        save_latest()
                        raise KeyboardInterrupt

                # ---- end of epoch: flush, validate, keep the best, checkpoint
                log_window()
                ep = sums[2:].clone()
                if info.enabled:
                    torch.distributed.all_reduce(ep)
                train_loss = float(ep[0] / ep[1]) if float(ep[1]) else float("nan")
                record: dict[str, Any] = {
                    "event": "epoch",
                    "epoch": epoch + 1,
                    "step": step,
                    "train_loss": train_loss,
                }
                if valid_rows is not None:
                    prob = predict(model, valid_rows, gatherer, cfg.eval_batch_size, info, use_amp)
                    record.update(valid_metrics(prob, valid_rows))
                    better = record["valid_auc"] > best["auc"]
                else:
                    better = True
                record["seconds"] = round(time.perf_counter() - t0, 3)
                if better:
                    best = {
                        "epoch": epoch + 1,
                        "auc": record.get("valid_auc", -math.inf),
                        "valid": {k: v for k, v in record.items() if k.startswith("valid_")},
                    }
                    if info.is_main:
                        save_checkpoint(
                            run_dir / BEST_FILE,
                            {
                                "model": model.state_dict(),
                                "epoch": epoch + 1,
                                "best_epoch": epoch + 1,
                                "best_valid": dict(best["valid"]),
                                "config": cfg.to_json(),
                            },
                        )
                record["best_epoch"] = best["epoch"]
                log.write(record)
                history.append(record)
                if progress:
                    say(info, _epoch_line(record))
                epoch += 1
                epochs_run += 1
                batch_pos = 0
                sums.zero_()
                if bar is not None:
                    bar.remove_task(task)
                save_latest()
                if D.any_flag(stop.requested, info, device):
                    raise KeyboardInterrupt
    finally:
        log.close()
    return TrainResult(
        run_dir=run_dir,
        best_epoch=int(best["epoch"]),
        best_valid=dict(best["valid"]),
        epochs_run=epochs_run,
        rank=info.rank,
    )


def _epoch_line(record: dict[str, Any]) -> str:
    parts = [f"epoch {record['epoch']}", f"train loss {record['train_loss']:.4f}"]
    if "valid_auc" in record:
        parts += [
            f"valid auc {record['valid_auc']:.4f}",
            f"gauc {record['valid_gauc']:.4f}",
            f"logloss {record['valid_logloss']:.4f}",
        ]
    parts.append(f"{record['seconds']:.1f}s")
    return "  ".join(parts)
