"""Embedding tables sharded over ranks with TorchRec (`dinctl train --shard-embeddings`).

Under torchrun every id table of the model (items, categories, every field of the feature
schema) becomes a one-table TorchRec `EmbeddingCollection` (unpooled), sharded row-wise or
table-wise as TorchRec's planner chooses, and updated by TorchRec's fused optimiser inside the
backward; the dense part (activation unit, MLP) stays data-parallel (DDP, through
`DistributedModelParallel`). The model's forward is untouched: each `nn.Embedding` is replaced
by a `ShardedTable` that is called the same way. TorchRec has no padding index, so id 0 never
reaches it: padding positions are empty jagged positions and read as zeros.

Checkpoints hold the full tables under the unsharded model's keys (streamed into rank 0's file
block by block, never gathered whole: `stream_rows`),
so `evaluate`, `export`, `serve` and `visualize` read a sharded run unchanged, and a resume may
use another world size (each rank copies its rows back out of the full tables).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from dinctl.data.batching import Batch
from dinctl.errors import DinctlError
from dinctl.models.config import ModelConfig
from dinctl.training import distributed as D
from dinctl.training.checkpoint import StreamedTensor, load_model_state
from dinctl.training.config import TrainConfig
from dinctl.training.initial import block_init, starting_model, table_key
from dinctl.training.optim import adam
from dinctl.training.regularizers import (
    NoPenalty,
    Regularizer,
    Tables,
    make_regularizer,
    unique_batch_ids,
    vocab_base,
)
from dinctl.training.state import Parts

# what TorchRec's fused (FBGEMM) kernels offer per device; "adagrad" is row-wise Adagrad there
SHARDED_OPTIMIZERS = {"cpu": ("sgd", "adagrad"), "cuda": ("sgd", "adagrad", "adam")}
SHARDED_REGULARIZERS = ("none", "mba", "dropout")
INSTALL_HINT = "install the scale extra: `make install-scale` (see docs/scale.md)"


def require_torchrec() -> None:
    """One line when TorchRec (the `scale` extra) is missing or does not load."""
    try:
        import torchrec  # noqa: F401
    except (ImportError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DinctlError(
            f"--shard-embeddings needs TorchRec, which does not load here ({first})",
            hint=INSTALL_HINT,
        ) from None


def check_sharded_config(cfg: TrainConfig, device: torch.device, info: D.DistInfo) -> None:
    """Refuse, in one line, a setting TorchRec's sharded tables cannot train."""
    if not info.enabled:
        raise DinctlError(
            "--shard-embeddings shards the tables over torchrun's processes, and this is no "
            "torchrun job",
            hint="run `torchrun --nproc-per-node N -m dinctl train --shard-embeddings ...`",
        )
    allowed = SHARDED_OPTIMIZERS.get(device.type, ())
    if cfg.optimizer not in allowed:
        raise DinctlError(
            f"--optimizer {cfg.optimizer} has no fused sharded kernel on {device.type}; "
            f"expected one of {', '.join(allowed)}",
            hint="sharded tables on CPU take sgd or adagrad (row-wise); CUDA also adam",
        )
    if cfg.reg not in SHARDED_REGULARIZERS:
        raise DinctlError(
            f"--reg {cfg.reg} is not available with --shard-embeddings; expected one of "
            f"{', '.join(SHARDED_REGULARIZERS)}",
            hint="whole-table penalties and the item filter need the tables in one process",
        )
    for flag, on in (("--grad-clip", cfg.grad_clip > 0), ("--compile", cfg.compile)):
        if on:
            raise DinctlError(
                f"{flag} is not available with --shard-embeddings",
                hint="the tables are updated inside the backward; drop the flag",
            )


class ShardedTable(nn.Embedding):
    """One id table as a one-table TorchRec `EmbeddingCollection`, called like the
    `nn.Embedding` it replaces: ids of any shape (...,) in, (..., D) out, zeros at id 0.

    It subclasses `nn.Embedding` (without its weight) so the model's table lists keep it."""

    def __init__(self, key: str, num_embeddings: int, dim: int) -> None:
        from torchrec import EmbeddingCollection, EmbeddingConfig

        nn.Module.__init__(self)
        self.key = key
        self.num_embeddings, self.embedding_dim, self.padding_idx = num_embeddings, dim, 0
        self.max_norm, self.norm_type = None, 2.0
        self.scale_grad_by_freq, self.sparse = False, False
        config = EmbeddingConfig(
            name=key, embedding_dim=dim, num_embeddings=num_embeddings, feature_names=[key]
        )
        # on the meta device: no rank ever allocates the whole table; sharding allocates shards
        self.ec: Any = EmbeddingCollection(tables=[config], device=torch.device("meta"))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        from torchrec import KeyedJaggedTensor

        flat = ids.reshape(-1)  # (n,)
        where = (flat > 0).nonzero().squeeze(1)  # (K,) real ids; padding is not looked up
        kjt = KeyedJaggedTensor(  # one jagged sequence of the K real ids: stride 1 on every rank
            keys=[self.key],
            values=flat.index_select(0, where),
            lengths=torch.tensor([where.shape[0]], dtype=torch.int32, device=flat.device),
        )
        found = self.ec(kjt)[self.key].values()  # (K, D)
        out = found.new_zeros(flat.shape[0], self.embedding_dim)  # (n, D)
        return out.index_copy(0, where, found).view(*ids.shape, self.embedding_dim)


def swap_tables(model: nn.Module, shapes: dict[str, tuple[int, int]]) -> None:
    """Replace the `nn.Embedding` at each path of `shapes` by a `ShardedTable` of that shape."""
    for path, (rows, dim) in shapes.items():
        parent_path, _, name = path.rpartition(".")
        parent = model.get_submodule(parent_path) if parent_path else model
        setattr(parent, name, ShardedTable(table_key(path), rows, dim))


def build_for_sharding(
    config: ModelConfig, seed: int
) -> tuple[nn.Module, dict[str, tuple[int, int]], dict[str, torch.Tensor] | None]:
    """The model to shard, its tables' shapes, and their initial weights: those of the model
    built whole from `seed` when its tables are small enough (`initial.starting_model`), else
    None, and each rank draws its own rows (`block_init`), as the unsharded run starts too."""
    model, shapes, whole = starting_model(config, seed)
    if not whole:
        return model, shapes, None
    return model, shapes, {p: model.get_submodule(p).state_dict()["weight"] for p in shapes}


def fused_optimizer_class(name: str) -> tuple[type[torch.optim.Optimizer], dict[str, Any]]:
    """The optimiser class TorchRec fuses into its kernels for `--optimizer name`."""
    if name == "sgd":
        return torch.optim.SGD, {}
    if name == "adagrad":
        from torchrec.optim import RowWiseAdagrad

        return RowWiseAdagrad, {"eps": 1e-10}
    return torch.optim.Adam, {}


@dataclass
class ShardedModel:
    """The sharded model: `dmp` is what the loop steps, `module` the model inside it."""

    dmp: nn.Module
    module: nn.Module
    tables: dict[str, ShardedTable]  # by the unsharded model's module path

    def dense_parameters(self) -> list[nn.Parameter]:
        """The parameters outside the tables (the fused optimiser updates those)."""
        from torchrec.optim.optimizers import in_backward_optimizer_filter

        return [p for _, p in in_backward_optimizer_filter(self.dmp.named_parameters())]


def shard_model(
    model: nn.Module,
    shapes: dict[str, tuple[int, int]],
    weights: dict[str, torch.Tensor] | None,
    cfg: TrainConfig,
    device: torch.device,
    info: D.DistInfo,
) -> ShardedModel:
    """`model` with the tables at `shapes` swapped for TorchRec ones, sharded by the planner
    over the process group and initialised from `weights` (else by `block_init`)."""
    from torchrec.distributed.embedding import EmbeddingCollectionSharder
    from torchrec.distributed.model_parallel import DistributedModelParallel
    from torchrec.distributed.types import ShardingEnv
    from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward

    swap_tables(model, shapes)
    tables = dict(_tables_of(model, shapes))
    opt_class, opt_kwargs = fused_optimizer_class(cfg.optimizer)
    for table in tables.values():
        apply_optimizer_in_backward(opt_class, table.ec.parameters(), {"lr": cfg.lr, **opt_kwargs})
    sharder = EmbeddingCollectionSharder()
    pg = dist.GroupMember.WORLD
    assert pg is not None
    with quiet_torchrec():
        plan = sharding_plan(model, tables, sharder, device, info)
        dmp = DistributedModelParallel(
            model,
            env=ShardingEnv.from_process_group(pg),
            device=device,
            plan=plan,
            sharders=[sharder],  # type: ignore[list-item]
        )
    sharded = ShardedModel(dmp, dmp.module, dict(_tables_of(dmp.module, shapes)))
    for path, table in sharded.tables.items():
        if weights is not None:
            scatter_rows(table_shards(table), weights[path], f"table {path}")
        else:
            block_init(table_shards(table), table.key, cfg.emb_init_std, cfg.seed)
    return sharded


def sharding_plan(
    model: nn.Module,
    tables: dict[str, ShardedTable],
    sharder: Any,
    device: torch.device,
    info: D.DistInfo,
) -> Any:
    """TorchRec's planner's plan, row-wise or table-wise per table (the same on every rank)."""
    from torchrec.distributed.planner import EmbeddingShardingPlanner
    from torchrec.distributed.planner.types import (
        KernelConfig,
        ParameterConstraints,
        TopologyFactory,
        TrainerConfig,
    )

    kinds = ["row_wise", "table_wise"]
    planner = EmbeddingShardingPlanner(
        topology=TopologyFactory.create_topology(
            TrainerConfig(world_size=info.world_size),
            kernel_config=KernelConfig(compute_device=device.type),
        ),
        constraints={t.key: ParameterConstraints(sharding_types=kinds) for t in tables.values()},
    )
    return planner.collective_plan(model, [sharder], dist.GroupMember.WORLD)


@contextlib.contextmanager
def quiet_torchrec() -> Iterator[None]:
    """TorchRec's planner logs its plan and warnings; the library stays silent."""
    logger = logging.getLogger("torchrec")
    level = logger.level
    logger.setLevel(logging.ERROR)
    # torch.fx warns at each process's first sharded forward that TorchRec traces; not ours
    logging.getLogger("torch.fx._symbolic_trace").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _tables_of(module: nn.Module, paths: Any) -> Iterator[tuple[str, ShardedTable]]:
    for path in paths:
        table = module.get_submodule(path)
        assert isinstance(table, ShardedTable)
        yield path, table


# ---------------------------------------------------------------- full tables in and out


def sharded_size(tensor: Any) -> tuple[int, ...]:
    """The global shape of a ShardedTensor (which warns that it is deprecated when asked)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tuple(tensor.size())


def row_shards(tensor: Any, what: str) -> list[tuple[int, torch.Tensor]]:
    """(first row, rows) of each shard of a row-sharded ShardedTensor this rank holds."""
    out = []
    size = list(sharded_size(tensor)[1:])
    for shard in tensor.local_shards():
        row, *cols = shard.metadata.shard_offsets
        if any(int(c) != 0 for c in cols) or list(shard.metadata.shard_sizes[1:]) != size:
            raise DinctlError(
                f"{what} was sharded column-wise, which dinctl cannot save",
                hint="this is a bug: the planner is limited to row-wise and table-wise",
            )
        out.append((int(row), shard.tensor))
    return out


def table_shards(table: ShardedTable) -> list[tuple[int, torch.Tensor]]:
    """(first row, rows) of each shard of `table`'s weight this rank holds."""
    weight = table.ec.state_dict()[f"embeddings.{table.key}.weight"]
    return row_shards(weight, f"table {table.key}")


@torch.no_grad()
def scatter_rows(shards: list[tuple[int, torch.Tensor]], full: torch.Tensor, what: str) -> None:
    """Copy this rank's rows of the full tensor `full` into its shards."""
    for row, rows in shards:
        if row + rows.shape[0] > full.shape[0] or full.shape[1:] != rows.shape[1:]:
            raise DinctlError(
                f"{what} has shape {tuple(full.shape)} in the checkpoint, which does not fit "
                "this model",
                hint="resume the run with the dataset and settings it was started with",
            )
        rows.copy_(full[row : row + rows.shape[0]])


STREAM_BLOCK_BYTES = 1 << 24  # a checkpoint's full tables pass through rank 0 16 MiB at a time


def stream_rows(
    shards: list[tuple[int, torch.Tensor]], shape: tuple[int, ...], info: D.DistInfo
) -> StreamedTensor:
    """The full tensor of `shape` from every rank's row shards, as a checkpoint streams it:
    rank 0 yields the rows in order, block by block (its own, and each other rank's sent point
    to point into one block buffer); the other ranks send theirs. No rank holds more than its
    shards and one block. A collective when consumed: every rank's `blocks()` runs."""
    listing: list[Any] = [None] * info.world_size
    dist.all_gather_object(listing, [(row, int(rows.shape[0])) for row, rows in shards])
    spans = sorted((row, count, rank, k) for rank, got in enumerate(listing)
                   for k, (row, count) in enumerate(got) if count)  # fmt: skip
    dtype = shards[0][1].dtype if shards else torch.float32
    row_bytes = max(1, math.prod(shape[1:]) * dtype.itemsize)
    step = max(1, STREAM_BLOCK_BYTES // row_bytes)
    starts = [row for row, *_ in spans]
    ends = list(itertools.accumulate(count for _, count, *_ in spans))
    if starts != [0, *ends[:-1]] or (ends[-1] if ends else 0) != shape[0]:
        raise DinctlError(
            f"the shards of a {tuple(shape)} tensor do not tile its rows",
            hint="this is a bug: the planner is limited to row-wise and table-wise",
        )

    def blocks() -> Iterator[torch.Tensor]:
        buffer = torch.empty((step, *shape[1:]), dtype=dtype) if info.is_main else None
        for _, count, rank, k in spans:
            for lo in range(0, count, step):
                n = min(step, count - lo)
                if rank == info.rank:
                    block = shards[k][1][lo : lo + n].detach().cpu()
                    if buffer is not None:
                        yield block
                    else:
                        dist.send(block.contiguous(), dst=0)
                elif buffer is not None:
                    dist.recv(buffer[:n], src=rank)
                    yield buffer[:n]

    return StreamedTensor(tuple(shape), dtype, blocks)


def full_state_dict(sharded: ShardedModel, info: D.DistInfo) -> dict[str, Any]:
    """The unsharded model's state dict, the full tables (`<path>.weight`) as `StreamedTensor`s
    that `save_checkpoint` writes without gathering them: a collective, every rank calls it
    and saves it. Rank 0's buffers (the Dice running statistics) go to every rank first, as
    DDP's broadcast does."""
    broadcast_buffers(sharded, info)
    out: dict[str, Any] = {}
    for path, table in sharded.tables.items():
        shape = (table.num_embeddings, table.embedding_dim)
        out[f"{path}.weight"] = stream_rows(table_shards(table), shape, info)
    for key, value in sharded.module.state_dict().items():
        if not any(key.startswith(f"{path}.") for path in sharded.tables):
            out[key] = value.detach().cpu()
    return out


def broadcast_buffers(sharded: ShardedModel, info: D.DistInfo) -> None:
    """Rank 0's buffers to every rank (TorchRec's DDP does not broadcast them)."""
    for buffer in sharded.module.buffers():
        dist.broadcast(buffer, src=0)


def load_full_state_dict(sharded: ShardedModel, state: dict[str, torch.Tensor]) -> None:
    """Inverse of `full_state_dict`: dense weights into the module, table rows into shards."""
    paths = set(sharded.tables)
    current = sharded.module.state_dict()  # its table entries are this rank's shards
    dense = {k for k in current if k.partition(".ec.")[0] not in paths}
    missing = sorted(dense - set(state)) + [
        f"{p}.weight" for p in sorted(paths) if f"{p}.weight" not in state
    ]
    unexpected = sorted(set(state) - dense - {f"{p}.weight" for p in paths})
    if missing or unexpected:
        raise DinctlError(
            f"the checkpoint does not fit this model (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]})",
            hint="resume the run with the settings it was started with",
        )
    sharded.module.load_state_dict({**current, **{k: state[k] for k in dense}})
    for path, table in sharded.tables.items():
        scatter_rows(table_shards(table), state[f"{path}.weight"], f"table {path}")


class FusedTableOptimizer:
    """TorchRec's fused table optimiser as the loop sees an optimiser. The update happens
    inside the backward, so `zero_grad` (called before it) pushes the lr set through
    `param_groups` into the kernels; `state_dict` holds the full per-row state (a collective).
    """

    def __init__(self, sharded: ShardedModel, info: D.DistInfo) -> None:
        self.fused: Any = sharded.dmp.fused_optimizer
        self.sharded, self.info = sharded, info

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.fused.param_groups  # type: ignore[no-any-return]

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.fused.step()  # only sets each kernel's lr: the rows were updated in the backward

    def step(self) -> None:
        self.fused.step()

    def _shards(self) -> Iterator[tuple[str, Any]]:
        for key, entry in self.fused.state_dict()["state"].items():
            for name, value in sorted(entry.items()):
                if hasattr(value, "local_shards"):
                    yield f"{key}/{name}", value

    def state_dict(self) -> dict[str, Any]:
        """{"<param>/<state>": `StreamedTensor`} of the full per-row state: a collective."""
        return {
            key: stream_rows(row_shards(value, key), sharded_size(value), self.info)
            for key, value in self._shards()
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in self._shards():
            if key not in state:
                raise KeyError(f"the checkpoint lacks the optimiser state {key}")
            scatter_rows(row_shards(value, key), state[key], key)


# ---------------------------------------------------------------- MBA on sharded tables


def sharded_mba_penalty(
    tables: list[tuple[str, nn.Embedding, str]],
    batch: Batch,
    freqs: dict[str, torch.Tensor],
    lam: float,
    info: D.DistInfo,
) -> torch.Tensor:
    """MBA, Eq. (7), on sharded tables: (λ/2)·Σ_{j in the global batch} ‖w_j‖²/n_j.

    The distinct ids of all ranks' shares are merged; rank r looks up those with j mod W = r
    (each once in the whole job) and weighs its term by W, since TorchRec averages the table
    gradients over the ranks as DDP does: the rows get exactly λ·w_j/n_j, as unsharded."""
    total = batch.label.new_zeros(())
    w = info.world_size
    for _, table, vocab in tables:
        ids = D.union_ids(unique_batch_ids(batch, vocab), info)  # (K,)
        mine = ids[ids % w == info.rank]  # (K_r,)
        n = freqs[vocab_base(vocab)][mine].clamp(min=1).to(total.dtype)  # (K_r,)
        rows = table(mine)  # (K_r, D); a collective: every rank looks up, maybe nothing
        total = total + (rows.pow(2).sum(dim=1) / n).sum()
    return 0.5 * lam * w * total  # Eq. (7): gradient λ·w_j/n_j after TorchRec's 1/W


@dataclass
class ShardedMiniBatchAware(NoPenalty):
    """`mba` on sharded tables (see `sharded_mba_penalty`)."""

    lam: float
    freqs: dict[str, torch.Tensor]
    info: D.DistInfo

    def penalty(self, tables: Tables, batch: Batch) -> torch.Tensor | float:
        return sharded_mba_penalty(tables, batch, self.freqs, self.lam, self.info)


# ---------------------------------------------------------------- the loop's parts


def sharded_parts(
    config: ModelConfig,
    cfg: TrainConfig,
    freqs: dict[str, torch.Tensor],
    reg_rng: torch.Generator,
    device: torch.device,
    info: D.DistInfo,
) -> tuple[ShardedModel, list[Any], Regularizer]:
    """The sharded model, its optimisers (dense + fused tables) and regulariser."""
    reg: Regularizer = make_regularizer(cfg, freqs, reg_rng)
    if cfg.reg == "mba":
        reg = ShardedMiniBatchAware(cfg.reg_lambda, freqs, info)
    model, shapes, weights = build_for_sharding(config, cfg.seed)
    sharded = shard_model(model.to(device).train(), shapes, weights, cfg, device, info)
    dense = sharded.dense_parameters()
    dense_opt: torch.optim.Optimizer
    if cfg.optimizer == "sgd":
        dense_opt = torch.optim.SGD(dense, lr=cfg.lr)
    elif cfg.optimizer == "adagrad":
        dense_opt = torch.optim.Adagrad(dense, lr=cfg.lr)
    else:
        dense_opt = adam(dense, cfg.lr)
    return sharded, [dense_opt, FusedTableOptimizer(sharded, info)], reg


def parts_weights(parts: Parts, info: D.DistInfo) -> dict[str, Any]:
    """The weights a checkpoint holds, full tables under the unsharded keys; a collective
    under --shard-embeddings (the tables stream into the file: every rank saves it)."""
    if parts.sharded is None:
        return parts.model.state_dict()  # type: ignore[no-any-return]
    return full_state_dict(parts.sharded, info)


def load_parts_weights(parts: Parts, state: dict[str, Any]) -> None:
    """Inverse of `parts_weights`, on every rank."""
    if parts.sharded is None:
        load_model_state(parts.model, state)
    else:
        load_full_state_dict(parts.sharded, state)


__all__ = [
    "SHARDED_OPTIMIZERS",
    "ShardedModel",
    "ShardedTable",
    "check_sharded_config",
    "full_state_dict",
    "load_full_state_dict",
    "require_torchrec",
    "shard_model",
    "sharded_mba_penalty",
]
