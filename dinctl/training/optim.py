"""Optimisers: SGD, Adagrad, Adam, and LazyAdam for sparse embedding gradients."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from dinctl.training import distributed as D
from dinctl.training.config import TrainConfig
from dinctl.training.regularizers import Regularizer


def use_sparse_grads(cfg: TrainConfig, info: D.DistInfo, reg: Regularizer) -> bool:
    """Sparse embedding gradients (only the batch's rows are updated) wherever they are exact:
    not with global-norm clipping, a regulariser that needs dense gradients (whole-table L2),
    DDP or compile."""
    return (
        cfg.sparse_grads
        and cfg.grad_clip == 0
        and not reg.dense_grads
        and not info.enabled
        and not cfg.compile
    )


def make_optimizers(
    cfg: TrainConfig, model: nn.Module, sparse: bool
) -> list[torch.optim.Optimizer]:
    """The optimiser(s): with sparse gradients Adam becomes LazyAdam on the embedding tables +
    Adam on the dense weights; SGD and Adagrad take sparse gradients as is."""
    tables = [m for m in model.modules() if isinstance(m, nn.Embedding)]
    for table in tables:
        table.sparse = sparse
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return [torch.optim.SGD(params, lr=cfg.lr)]
    if cfg.optimizer == "adagrad":
        # torch's sparse Adagrad warns unless sparse-invariant checks are chosen explicitly;
        # they are off by default and stay off (the sparse gradients are torch's own)
        torch.sparse.check_sparse_tensor_invariants.disable()
        return [torch.optim.Adagrad(params, lr=cfg.lr)]
    if not sparse:
        return [adam(params, cfg.lr)]
    sparse_ids = {id(t.weight) for t in tables}
    return [
        LazyAdam([t.weight for t in tables], lr=cfg.lr),
        adam([p for p in params if id(p) not in sparse_ids], cfg.lr),
    ]


def set_lr(optimizers: list[torch.optim.Optimizer], lr: float) -> None:
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = lr


def adam(params: list[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
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
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, group)
        return loss

    def _update(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        beta1, beta2 = group["betas"]
        lr, eps = float(group["lr"]), group["eps"]
        if not p.grad.is_sparse:  # type: ignore[union-attr]
            raise RuntimeError("LazyAdam takes sparse gradients only")
        state = self.state[p]
        if len(state) == 0:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] += 1
        grad = p.grad if not group.get("maximize", False) else -p.grad  # type: ignore[operator]
        grad = grad.coalesce()  # type: ignore[union-attr]  # unique, sorted row ids
        values = grad._values()  # (K, D)
        if values.numel() == 0:
            return
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
