"""Checkpoints and the typed config.json of a run (names in `dinctl.runs`, opening in `inference`).

Checkpoints hold only tensors and plain Python values (configs as JSON strings, RNG states as
uint8 tensors), so they load with `torch.load(..., weights_only=True)`. A tensor too large to
hold whole (a sharded run's full table) is a `StreamedTensor`: `torch.save` lays the archive
out without its bytes (`skip_data`), which are then written into place block by block and the
members' CRC-32s patched, so the file is an ordinary checkpoint that no reader tells apart.
"""

from __future__ import annotations

import json
import pickle
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dinctl.errors import DinctlError
from dinctl.fsutil import atomic_file, check_zip_crc
from dinctl.models import ModelConfig, build_model
from dinctl.models.layers import ItemMap
from dinctl.runs import CONFIG_FILE, read_config
from dinctl.training.config import TrainConfig


@dataclass(frozen=True)
class RunConfig:
    """What config.json holds: the train config, the model config and the dataset identity."""

    train: TrainConfig
    model: ModelConfig
    dataset_path: Path
    dataset_checksum: str
    dataset_n_items: int  # the dataset's item vocabulary (the filter map's input size)
    dataset_meta: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "train": self.train.to_dict(),
            "model": self.model.to_dict(),
            "dataset": {
                "path": str(self.dataset_path),
                "checksum": self.dataset_checksum,
                "n_items": self.dataset_n_items,
                "meta": self.dataset_meta,
            },
        }


def write_run_config(run_dir: Path, rc: RunConfig) -> None:
    with atomic_file(Path(run_dir) / CONFIG_FILE) as tmp:
        tmp.write_text(json.dumps(rc.to_dict(), indent=2) + "\n")


def read_run_config(run_dir: Path) -> RunConfig:
    """Parse config.json of a run folder (read by `runs.read_config`), with one-line errors."""
    path = Path(run_dir) / CONFIG_FILE
    data = read_config(run_dir)
    try:
        ds = data["dataset"]
        return RunConfig(
            train=TrainConfig.from_dict(data["train"], str(path)),
            model=ModelConfig.from_dict(data["model"]),
            dataset_path=Path(ds["path"]),
            dataset_checksum=str(ds["checksum"]),
            dataset_n_items=int(ds["n_items"]),
            dataset_meta=dict(ds.get("meta", {})),
        )
    except (KeyError, TypeError) as err:
        raise DinctlError(
            f"{path} lacks the entry {err}", hint="the run was written by another dinctl version"
        ) from None


def build_run_model(rc: RunConfig) -> nn.Module:
    """The model a run trains (a `--reg filter` run's item map is a buffer of its tables)."""
    cfg = rc.model
    if rc.train.reg == "filter" and not cfg.item_filter:  # a run written before item_filter
        cfg = replace(cfg, item_filter=rc.dataset_n_items)
    return build_model(cfg)


def load_model_state(model: nn.Module, state: dict[str, Any]) -> None:
    """Load a checkpoint's model weights; a `--reg filter` run written when the filter wrapped
    the model (`inner.*` weights and a top-level `item_map`) loads too."""
    if "item_map" in state:
        item_map = state["item_map"]
        state = {k.removeprefix("inner."): v for k, v in state.items() if k != "item_map"}
        for name, module in model.named_modules():
            if isinstance(module, ItemMap):
                state[f"{name}.ids"] = item_map
    model.load_state_dict(state)


@dataclass(frozen=True)
class StreamedTensor:
    """A tensor of `shape` a checkpoint holds but no process holds whole: `blocks()` yields
    its rows in order, block by block, on the writing process (elsewhere, where it may send
    them to the writer, it yields nothing)."""

    shape: tuple[int, ...]
    dtype: torch.dtype
    blocks: Callable[[], Iterator[torch.Tensor]]


def _walk(value: Any) -> Iterator[Any]:
    """The leaves of nested dicts, lists and tuples, in the order pickle visits them."""
    if isinstance(value, dict):
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _walk(item)
    else:
        yield value


def _map(value: Any, fn: Callable[[Any], Any]) -> Any:
    """`value` with every leaf replaced by `fn(leaf)`, containers kept."""
    if isinstance(value, dict):
        return type(value)((k, _map(v, fn)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(_map(v, fn) for v in value)
    return fn(value)


def save_checkpoint(path: Path, state: dict[str, Any], *, write: bool = True) -> None:
    """torch.save through a temporary file + rename, so a crash never leaves half a file.

    With `StreamedTensor`s in `state` every process that holds rows calls it (a collective
    when their `blocks` are); only the one with `write` writes the file."""
    streamed = [leaf for leaf in _walk(state) if isinstance(leaf, StreamedTensor)]
    if not write:
        for tensor in streamed:  # send this process's rows, in the writer's order
            for _ in tensor.blocks():
                pass
        return
    with atomic_file(Path(path)) as tmp:
        if streamed:
            _save_streamed(tmp, state)
        else:
            torch.save(state, tmp)


def _save_streamed(tmp: Path, state: dict[str, Any]) -> None:
    """Lay the archive out without any storage's bytes, then write each into place."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode() as fake:

        def placeholder(leaf: Any) -> Any:
            if isinstance(leaf, StreamedTensor):
                return torch.empty(leaf.shape, dtype=leaf.dtype)
            return fake.from_tensor(leaf) if isinstance(leaf, torch.Tensor) else leaf

        skeleton = _map(state, placeholder)
    with torch.serialization.skip_data(materialize_fake_tensors=True):
        torch.save(skeleton, tmp)
    del skeleton
    layout = torch.load(tmp, map_location="meta", weights_only=True)  # offsets, no bytes
    crcs: dict[int, int] = {}
    with open(tmp, "r+b") as f:
        for leaf, meta in zip(_walk(state), _walk(layout), strict=True):
            if not isinstance(leaf, (torch.Tensor, StreamedTensor)):
                continue
            storage = meta.untyped_storage()
            offset, nbytes = int(storage._checkpoint_offset), int(storage.nbytes())
            if offset in crcs:  # a storage two tensors share: written once
                continue
            f.seek(offset)
            crcs[offset] = _write_blocks(f, _byte_blocks(leaf), nbytes)
    _patch_crcs(tmp, crcs)


def _byte_blocks(leaf: torch.Tensor | StreamedTensor) -> Iterator[memoryview]:
    """The bytes of the storage torch.save writes for `leaf`, block by block."""
    if isinstance(leaf, StreamedTensor):
        for block in leaf.blocks():
            yield _as_bytes(block.detach().cpu().contiguous())
    else:
        storage = leaf.detach().cpu().untyped_storage()
        yield _as_bytes(torch.empty(0, dtype=torch.uint8).set_(storage))


def _as_bytes(tensor: torch.Tensor) -> memoryview:
    return tensor.reshape(-1).view(torch.uint8).numpy().data


def _write_blocks(f: Any, blocks: Iterator[memoryview], nbytes: int) -> int:
    """Write `blocks` at the file's position; their CRC-32 (exactly `nbytes` are expected)."""
    crc, written = 0, 0
    for block in blocks:
        f.write(block)
        crc = zlib.crc32(block, crc)
        written += block.nbytes
    if written != nbytes:
        raise RuntimeError(f"a streamed tensor gave {written} bytes, its record holds {nbytes}")
    return crc


def _patch_crcs(path: Path, crcs: dict[int, int]) -> None:
    """Set the CRC-32 of the members whose data start at the offsets of `crcs` (torch.save
    wrote them with data descriptors: the CRC is in the descriptor and the central directory)."""
    with zipfile.ZipFile(path) as archive:
        infos, start = archive.infolist(), archive.start_dir  # type: ignore[attr-defined]
    with open(path, "r+b") as f:
        central = start
        for info in infos:
            f.seek(info.header_offset + 26)
            name_len, extra_len = struct.unpack("<HH", f.read(4))
            data = info.header_offset + 30 + name_len + extra_len
            f.seek(central)
            head = f.read(46)
            if head[:4] != b"PK\x01\x02":
                raise RuntimeError(f"{path}: no central directory entry at {central}")
            n, m, k = struct.unpack("<HHH", head[28:34])
            if data in crcs:
                crc = struct.pack("<I", crcs[data])
                f.seek(central + 16)
                f.write(crc)
                f.seek(data + info.compress_size)
                sig = f.read(4)
                f.seek(data + info.compress_size + (4 if sig == b"PK\x07\x08" else 0))
                if info.flag_bits & 0x08:
                    f.write(crc)
                else:
                    f.seek(info.header_offset + 14)
                    f.write(crc)
            central += 46 + n + m + k


def load_checkpoint(
    path: Path, device: str | torch.device = "cpu", *, mmap: bool = False
) -> dict[str, Any]:
    """torch.load with weights_only=True and one-line errors; `mmap` maps the file instead of
    reading it (a rank of a sharded resume touches only the rows it copies out)."""
    path = Path(path)
    if not path.exists():
        raise DinctlError(f"{path} does not exist", hint="train the run first with `dinctl train`")
    check_zip_crc(path, "checkpoint", hint="restore the file, or train the run again")
    try:
        state = torch.load(path, map_location=device, weights_only=True, mmap=mmap)
    except (RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as err:
        text = str(err).strip()
        first = text.splitlines()[0].split(". ")[0] if text else type(err).__name__
        raise DinctlError(f"{path} is not a readable checkpoint ({first})") from None
    if not isinstance(state, dict) or "model" not in state:
        raise DinctlError(f"{path} is not a dinctl checkpoint (no model weights in it)")
    return state
