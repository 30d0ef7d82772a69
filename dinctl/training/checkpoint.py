"""Checkpoints and the typed config.json of a run (names in `dinctl.runs`, opening in `inference`).

Checkpoints hold only tensors and plain Python values (configs as JSON strings, RNG states as
uint8 tensors), so they load with `torch.load(..., weights_only=True)`.
"""

from __future__ import annotations

import json
import pickle
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


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """torch.save through a temporary file + rename, so a crash never leaves half a file."""
    with atomic_file(Path(path)) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """torch.load with weights_only=True and one-line errors."""
    path = Path(path)
    if not path.exists():
        raise DinctlError(f"{path} does not exist", hint="train the run first with `dinctl train`")
    check_zip_crc(path, "checkpoint", hint="restore the file, or train the run again")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except (RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as err:
        text = str(err).strip()
        first = text.splitlines()[0].split(". ")[0] if text else type(err).__name__
        raise DinctlError(f"{path} is not a readable checkpoint ({first})") from None
    if not isinstance(state, dict) or "model" not in state:
        raise DinctlError(f"{path} is not a dinctl checkpoint (no model weights in it)")
    return state
