"""Where training starts: the seeded model, the same with or without `--shard-embeddings`.

Up to `EXACT_INIT_BYTES` of id tables, the model is built whole from the seed (`build_model`
after `torch.manual_seed`). Beyond, no process of a sharded run may hold a whole table, so
every run, sharded on any number of ranks or not, starts from the same numbers drawn another
way: the dense layers from the seeded model with one-row tables (`one_row_config`), and each
table's rows N(0, std²) per block of `INIT_BLOCK_ROWS` rows from a generator of (seed, table,
block) (`block_init`), which a rank can draw for its own rows alone.
"""

from __future__ import annotations

import zlib
from dataclasses import replace

import torch
from torch import nn

from dinctl.models import ModelConfig, build_model

EXACT_INIT_BYTES = 1 << 28  # tables up to 256 MiB are drawn by the model itself
INIT_BLOCK_ROWS = 1 << 20  # beyond, rows are drawn per block of this many (block_init)
INIT_PIECE_ROWS = 1 << 14  # ... a piece of this many rows at a time (divides INIT_BLOCK_ROWS)


def table_key(path: str) -> str:
    """TorchRec's table/feature name for the module at `path` ("emb.item" → "emb__item"); it
    also salts the table's `block_init` generator."""
    return path.replace(".", "__")


def table_shapes(model: nn.Module) -> dict[str, tuple[int, int]]:
    """(rows, dim) of every `nn.Embedding` of `model`, by module path."""
    return {
        path: (m.num_embeddings, m.embedding_dim)
        for path, m in model.named_modules()
        if type(m) is nn.Embedding and path
    }


def config_table_shapes(config: ModelConfig) -> dict[str, tuple[int, int]]:
    """`table_shapes` of the model `config` builds, without allocating it."""
    with torch.device("meta"):
        return table_shapes(build_model(config))


def drawn_whole(shapes: dict[str, tuple[int, int]]) -> bool:
    """Whether tables of these shapes are small enough to be drawn by the model itself."""
    return sum(rows * dim * 4 for rows, dim in shapes.values()) <= EXACT_INIT_BYTES


def one_row_config(config: ModelConfig) -> ModelConfig:
    """`config` with one-row tables: its model draws the dense layers' start, not the tables'."""
    return replace(
        config,
        n_items=1,
        n_cates=1,
        wide_buckets=1,
        behaviour_fields=tuple((name, 1) for name, _ in config.behaviour_fields),
        user_fields=tuple((name, 1) for name, _ in config.user_fields),
        context_fields=tuple((name, 1) for name, _ in config.context_fields),
    )


def starting_model(
    config: ModelConfig, seed: int
) -> tuple[nn.Module, dict[str, tuple[int, int]], bool]:
    """(the model a run starts from, its tables' shapes, whether its tables are drawn with it):
    the whole model built from `seed`, or beyond `EXACT_INIT_BYTES` the seeded model with
    one-row tables, whose dense layers are the start (the tables are then `block_init`'s)."""
    shapes = config_table_shapes(config)
    torch.manual_seed(seed)
    if drawn_whole(shapes):
        return build_model(config), shapes, True
    return build_model(one_row_config(config)), shapes, False


def seeded_model(config: ModelConfig, seed: int, emb_init_std: float) -> nn.Module:
    """The unsharded run's starting model: the sharded runs' start (see the module's text)."""
    start, shapes, whole = starting_model(config, seed)
    if whole:
        return start
    model = build_model(config)  # its own draws are replaced: dense from `start`, tables below
    own, tables = model.state_dict(), {f"{path}.weight" for path in shapes}
    dense = {k: v for k, v in start.state_dict().items() if k not in tables}
    # vocabulary-sized buffers (the item filter's map) keep the full model's
    model.load_state_dict({k: v for k, v in dense.items() if v.shape == own[k].shape}, strict=False)
    with torch.no_grad():
        for path in shapes:
            table = model.get_submodule(path)
            assert isinstance(table, nn.Embedding)
            block_init([(0, table.weight)], table_key(path), emb_init_std, seed)
    return model


@torch.no_grad()
def block_init(shards: list[tuple[int, torch.Tensor]], key: str, std: float, seed: int) -> None:
    """N(0, std²) rows drawn per block of `INIT_BLOCK_ROWS` rows from a generator of (seed,
    table, block), so a row's start does not depend on the world size; row 0 (padding) zero.
    A block is drawn `INIT_PIECE_ROWS` rows at a time (the same numbers as drawing it whole:
    torch draws normals in groups of 16 values), so the transient memory is one piece."""
    salt = zlib.crc32(key.encode())
    drawn = torch.empty(0)
    for first, rows in shards:
        end = first + rows.shape[0]
        for block in range(first // INIT_BLOCK_ROWS, (end - 1) // INIT_BLOCK_ROWS + 1):
            g = torch.Generator().manual_seed((seed * 1_000_003 + salt) * 65_537 + block)
            lo = block * INIT_BLOCK_ROWS
            for piece in range(lo, min(end, lo + INIT_BLOCK_ROWS), INIT_PIECE_ROWS):
                # drawn even before `first`: the generator must pass those rows' numbers
                drawn = torch.randn(INIT_PIECE_ROWS, rows.shape[1], generator=g, out=drawn)
                a, b = max(first, piece), min(end, piece + INIT_PIECE_ROWS)
                if a < b:
                    rows[a - first : b - first].copy_(drawn[a - piece : b - piece]).mul_(std)
        if first == 0 and rows.shape[0]:
            rows[0].zero_()
