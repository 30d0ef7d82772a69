"""Scoring a split with a trained model (thin wrapper over the loop's `predict`)."""

from __future__ import annotations

from typing import Any

import numpy as np


def score_split(
    model: Any, dataset: Any, split: str, max_len: int, batch_size: int, device: Any
) -> np.ndarray:
    """Click probabilities (N,) float32 for every row of `split`, in file order."""
    import torch

    from dinctl.data.batching import SplitTensors, WindowGatherer
    from dinctl.training.distributed import DistInfo
    from dinctl.training.loop import predict, to_device

    rows = SplitTensors(dataset.split(split))
    gatherer = WindowGatherer(dataset, max_len)
    to_device(rows, gatherer, torch.device(device))  # gather batches where the model is
    with torch.inference_mode():
        prob = predict(model, rows, gatherer, batch_size, DistInfo(), amp=False)  # (N,)
    return prob.numpy().astype(np.float32, copy=False)
