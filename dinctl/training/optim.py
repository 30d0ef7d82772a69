"""Optimisers: SGD, Adagrad, Adam, and LazyAdam for sparse embedding gradients."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from dinctl.training import distributed
from dinctl.training.config import TrainConfig
from dinctl.training.regularizers import Regularizer


def use_sparse_grads(cfg: TrainConfig, info: distributed.DistInfo, reg: Regularizer) -> bool:
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
    """Adam on the rows a batch touched (`torch.optim.SparseAdam`'s rule and state, so
    checkpoints stay interchangeable), cheaper on CPU: the sparse gradient is summed per row
    through a vocabulary-sized position map instead of a sort (`coalesce`), and each state row
    is read once, updated in place (`lerp_`, `addcmul_`, `addcdiv_`) and written back with
    `index_copy_`. Same results as SparseAdam to float rounding (summation order)."""

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
        grad = p.grad
        if grad is None or not grad.is_sparse:
            raise RuntimeError("LazyAdam takes sparse gradients only")
        state = self.state[p]
        if len(state) == 0:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] += 1
        if group.get("maximize", False):
            grad = -grad
        rows, values = sum_rows(grad)  # (K,), (K, D)
        if rows.numel() == 0:
            return
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        avg = exp_avg.index_select(0, rows).lerp_(values, 1 - beta1)  # (K, D)
        sq = exp_avg_sq.index_select(0, rows).mul_(beta2).addcmul_(values, values, value=1 - beta2)
        exp_avg.index_copy_(0, rows, avg)
        exp_avg_sq.index_copy_(0, rows, sq)
        step = state["step"]
        step_size = lr * math.sqrt(1 - beta2**step) / (1 - beta1**step)
        weight = p.index_select(0, rows).addcdiv_(avg, sq.sqrt_().add_(eps), value=-step_size)
        p.index_copy_(0, rows, weight)


def sum_rows(grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct rows (K,) of a sparse row gradient, ascending, and their summed values
    (K, D): one pass through a position map the size of the table, no sort."""
    if grad.is_coalesced():
        return grad._indices()[0], grad._values()
    ids, values = grad._indices()[0], grad._values()  # (nnz,), (nnz, D)
    seen = torch.zeros(grad.shape[0], dtype=torch.bool, device=ids.device)  # (V,)
    seen[ids] = True
    rows = seen.nonzero().squeeze(1)  # (K,)
    slot = torch.empty(grad.shape[0], dtype=torch.long, device=ids.device)  # (V,)
    slot[rows] = torch.arange(rows.shape[0], device=ids.device)
    summed = values.new_zeros(rows.shape[0], values.shape[1]).index_add_(0, slot[ids], values)
    return rows, summed
