"""torchrun integration: process group from torchrun's environment, rank sharding, gathers.

`torchrun --nproc-per-node N -m dinctl train ...` sets RANK, WORLD_SIZE, LOCAL_RANK and
MASTER_ADDR/PORT; when they are present, training joins a process group (NCCL on CUDA, gloo on
CPU), even at world size 1. A plain `dinctl train` never touches torch.distributed.
"""

from __future__ import annotations

import gc
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


def shutdown(info: DistInfo, *, finished: bool = False) -> None:
    """Leave the process group. After a run that `finished` on every rank, the ranks first
    meet (no rank tears its connections down while another still sends), and on every path
    the job's objects are collected first: DDP's and TorchRec's modules hold the group and
    its pending work, and gloo aborts the process ("terminate called without an active
    exception") when those die during interpreter finalisation instead."""
    if info.enabled and dist.is_initialized():
        if finished:
            dist.barrier()
        gc.collect()
        dist.destroy_process_group()


def gather_shares(local: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Every rank's `local` rows (as many as it has) concatenated in rank order: a split whose
    rank r holds the r-th contiguous share, whole again."""
    if not info.enabled or info.world_size == 1:
        return local
    size = torch.tensor([local.shape[0]], device=local.device)
    sizes = [torch.empty_like(size) for _ in range(info.world_size)]
    dist.all_gather(sizes, size)
    padded = local.new_zeros((max(int(s) for s in sizes), *local.shape[1:]))
    padded[: local.shape[0]] = local
    parts = [torch.empty_like(padded) for _ in range(info.world_size)]
    dist.all_gather(parts, padded)
    return torch.cat([part[: int(s)] for part, s in zip(parts, sizes, strict=True)])


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
    merged = gather_shares(ids, info)
    return torch.unique(merged[merged > 0])


def all_sum(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """`values` summed over the ranks (a collective; the tensor itself when alone)."""
    if info.enabled and info.world_size > 1:
        values = values.clone()
        dist.all_reduce(values)
    return values


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
