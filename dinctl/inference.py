"""Opening a trained run for scoring or plotting: the one place that does it.

`open_run` loads a run's best weights (best.pt, else the latest checkpoint.pt) in eval mode and
its dataset, and refuses a dataset whose checksum differs from the one the run was trained on.
`dinctl evaluate`, `dinctl visualize`, the experiments and the quickstart all go through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dinctl import runs
from dinctl.errors import DinctlError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from dinctl.data.store import Dataset
    from dinctl.training.config import TrainConfig


@dataclass(frozen=True)
class OpenedRun:
    """A trained run ready to score: model in eval mode on `device`, and its dataset."""

    run_dir: Path
    config: TrainConfig
    model: nn.Module
    dataset: Dataset
    device: torch.device
    best_epoch: int
    model_name: str
    dataset_name: str
    model_config: dict[str, Any]

    @property
    def max_len(self) -> int:
        return int(self.config.max_len)


def _weights_file(run_dir: Path) -> Path:
    for name in (runs.BEST_FILE, runs.CHECKPOINT_FILE):
        if (run_dir / name).exists():
            return run_dir / name
    raise DinctlError(
        f"{run_dir} has no {runs.BEST_FILE} or {runs.CHECKPOINT_FILE}",
        hint="the run has not finished an epoch; resume it with `dinctl train --resume --out "
        f"{run_dir}`",
    )


def check_dataset(run_dir: Path, dataset: Dataset, trained_on: str) -> None:
    """Refuse a dataset that changed since the run was trained on it."""
    if dataset.checksum != trained_on:
        raise DinctlError(
            f"the dataset {dataset.path} changed since {run_dir} was trained "
            f"(checksum {dataset.checksum[:12]} vs {trained_on[:12]})",
            hint="use the dataset the run was trained on (or train the run again)",
        )


def open_run(
    run_dir: Path | str, device: str | torch.device = "cpu", dataset: Dataset | None = None
) -> OpenedRun:
    """Load a run's best weights and its dataset (checksum-checked); `dataset` skips the load."""
    from dinctl.data.store import load_dataset
    from dinctl.training.checkpoint import (
        build_run_model,
        load_checkpoint,
        load_model_state,
        read_run_config,
    )
    from dinctl.training.device import resolve_device

    run_dir = Path(run_dir)
    rc = read_run_config(run_dir)  # through runs.read_config: one-line errors for a foreign folder
    state = load_checkpoint(_weights_file(run_dir))
    dev = resolve_device(device) if isinstance(device, str) else device
    model = build_run_model(rc)
    load_model_state(model, state["model"])
    model.to(dev).eval()
    ds = dataset if dataset is not None else load_dataset(rc.dataset_path)
    check_dataset(run_dir, ds, rc.dataset_checksum)
    return OpenedRun(
        run_dir=run_dir,
        config=rc.train,
        model=model,
        dataset=ds,
        device=dev,
        best_epoch=int(state.get("best_epoch", state.get("epoch", 0))),
        model_name=rc.model.model,
        dataset_name=runs.dataset_label(ds.meta, ds.path),
        model_config=rc.model.to_dict(),
    )


def score(run: OpenedRun, split: str, batch_size: int | None = None) -> Any:
    """Click probabilities (N,) float32 of every row of `split`, in file order."""
    from dinctl.training.predict import score_split

    return score_split(
        run.model,
        run.dataset,
        split,
        run.max_len,
        batch_size or run.config.eval_batch_size,
        run.device,
    )
