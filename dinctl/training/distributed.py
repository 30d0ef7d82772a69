"""torchrun integration: process group from torchrun's environment, rank sharding, gathers.

`torchrun --nproc-per-node N -m dinctl train ...` sets RANK, WORLD_SIZE, LOCAL_RANK and
MASTER_ADDR/PORT; when they are present, training joins a process group (NCCL on CUDA, gloo on
CPU), even at world size 1. A plain `dinctl train` never touches torch.distributed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from dinctl.errors import DinctlError


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    enabled: bool = False  # a process group is initialised

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return all(
        k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    )


def init_from_env(device_type: str) -> DistInfo:
    """Join the torchrun process group if launched by torchrun; else a single-process DistInfo."""
    if not launched_by_torchrun():
        return DistInfo()
    if dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ["LOCAL_RANK"]), True)
    backend = "nccl" if device_type == "cuda" else "gloo"
    if backend == "nccl" and not dist.is_nccl_available():
        raise DinctlError(
            "torchrun on CUDA needs NCCL, which this torch build lacks",
            hint="use --device cpu (gloo)",
        )
    local_rank = int(os.environ["LOCAL_RANK"])
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, True)


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def rank_slice(index: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """This rank's rows of a global batch: every world_size-th row, starting at the rank."""
    return index[info.rank :: info.world_size]


def all_gather_rows(local: torch.Tensor, n_total: int, info: DistInfo) -> torch.Tensor:
    """Inverse of `rank_slice` over a whole split: rank r holds rows r::W; returns all n rows."""
    if not info.enabled or info.world_size == 1:
        return local
    per_rank = (n_total + info.world_size - 1) // info.world_size
    padded = local.new_zeros((per_rank, *local.shape[1:]))
    padded[: local.shape[0]] = local
    parts = [torch.empty_like(padded) for _ in range(info.world_size)]
    dist.all_gather(parts, padded)
    out = local.new_empty((n_total, *local.shape[1:]))
    for r, part in enumerate(parts):
        count = len(range(r, n_total, info.world_size))
        out[r :: info.world_size] = part[:count]
    return out


def all_gather_tensors(local: torch.Tensor, info: DistInfo) -> list[torch.Tensor]:
    """Every rank's copy of an equally shaped tensor (e.g. RNG states), in rank order."""
    if not info.enabled or info.world_size == 1:
        return [local]
    parts = [torch.empty_like(local) for _ in range(info.world_size)]
    dist.all_gather(parts, local)
    return parts


def union_ids(ids: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The sorted distinct ids present on any rank (so MBA penalises the global batch's rows)."""
    if not info.enabled or info.world_size == 1:
        return ids
    size = torch.tensor([ids.shape[0]], device=ids.device)
    sizes = [torch.empty_like(size) for _ in range(info.world_size)]
    dist.all_gather(sizes, size)
    longest = int(max(int(s) for s in sizes))
    padded = ids.new_zeros(longest)
    padded[: ids.shape[0]] = ids
    parts = [torch.empty_like(padded) for _ in range(info.world_size)]
    dist.all_gather(parts, padded)
    merged = torch.cat(parts)
    return torch.unique(merged[merged > 0])


def any_flag(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True when `flag` is True on any rank (a collective: every rank must call it)."""
    if not info.enabled or info.world_size == 1:
        return flag
    t = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()
