"""The one scorer: click probabilities for the rows of a split, used by validation during
training, by `evaluate`, by the plots and by experiments."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from dinctl.data.batching import SplitTensors, WindowGatherer
from dinctl.data.store import Dataset
from dinctl.training import distributed


def to_device(rows: SplitTensors, gatherer: WindowGatherer, device: torch.device) -> None:
    """Move a split's rows and the behaviour CSR to `device`, so batches are gathered there."""
    rows.to(device)
    gatherer.to(device)


@torch.no_grad()
def predict_proba(
    model: nn.Module,
    rows: SplitTensors,
    gatherer: WindowGatherer,
    batch_size: int,
    info: distributed.DistInfo | None = None,
    amp: bool = False,
) -> torch.Tensor:
    """Click probabilities (n,) float32 on CPU for all rows, in row order; when `rows` is a
    rank's share of a split under torchrun (`info`), of the whole split: every rank scores its
    share and the shares are gathered."""
    info = info or distributed.DistInfo()
    was_training = model.training
    model.eval()
    n = len(rows)
    device = rows.user.device
    share = info.world_size > 1 and rows.is_share
    mine = torch.arange(n, device=device)  # (n,)
    # as many batches on every rank (sharded tables look up in collectives), none over size
    per_rank = (rows.total + info.world_size - 1) // info.world_size if share else n
    out = []
    count = (per_rank + batch_size - 1) // batch_size
    for index in mine.tensor_split(count) if count else ():
        stand_in = index.shape[0] == 0  # this rank ran out of rows: score row 0, drop it
        batch = gatherer.gather(*rows.rows(index if not stand_in else mine.new_zeros(1)))
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(batch).logits  # (b,)
        if not stand_in:
            out.append(torch.sigmoid(logits.float()))
    local = torch.cat(out) if out else torch.zeros(0, device=device)  # (n_r,)
    model.train(was_training)
    return (distributed.gather_shares(local, info) if share else local).cpu()


def score_split(
    model: nn.Module,
    dataset: Dataset,
    split: str,
    max_len: int,
    batch_size: int,
    device: str | torch.device,
) -> np.ndarray:
    """Click probabilities (N,) float32 for every row of `dataset`'s `split`, in file order."""
    rows = SplitTensors(dataset.split(split))
    gatherer = WindowGatherer(dataset, max_len)
    to_device(rows, gatherer, torch.device(device))  # gather batches where the model is
    with torch.inference_mode():
        prob = predict_proba(model, rows, gatherer, batch_size)  # (N,)
    return prob.numpy().astype(np.float32, copy=False)
