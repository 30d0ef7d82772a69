"""Engines: callables that take the scorer's padded numpy inputs and return logits (R, C) and,
for DIN, attention weights (R, C, T):
  eager  the RequestScorer (optionally bf16 matmuls)
  torch  a bundle's torch.export ExportedProgram
  onnx   a bundle's ONNX graph on ONNX Runtime
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dinctl.errors import DinctlError
from dinctl.serving.scorer import INPUT_NAMES

Engine = Callable[[dict[str, np.ndarray]], tuple[np.ndarray, np.ndarray | None]]


def missing_extra(module: str) -> DinctlError:
    return DinctlError(
        f"the serving extra is not installed (no module named {module!r})",
        hint="pip install 'dinctl[serve]'",
    )


def eager_engine(scorer: Any) -> Engine:
    """The RequestScorer in inference mode."""
    import torch

    names = scorer.input_names

    def run(inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        with torch.inference_mode():
            out = scorer(**{name: torch.from_numpy(inputs[name]) for name in names})
        att = out[1].float().numpy() if len(out) > 1 else None
        return out[0].float().numpy(), att

    return run


def exported_engine(path: Path, names: Sequence[str] = INPUT_NAMES) -> Engine:
    """A torch.export archive (no pickle: `torch.export.load`); `names`: its inputs, the five
    basic ones positionally, the extra ones by keyword (as they were exported)."""
    import torch

    module = torch.export.load(str(path)).module()
    extra = [n for n in names if n not in INPUT_NAMES]

    def run(inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        args = [torch.from_numpy(inputs[name]) for name in INPUT_NAMES]
        kwargs = {name: torch.from_numpy(inputs[name]) for name in extra}
        with torch.inference_mode():
            out = module(*args, **kwargs)
        return out[0].numpy(), out[1].numpy() if len(out) > 1 else None

    return run


def onnx_engine(path: Path, threads: int = 0, names: Sequence[str] = INPUT_NAMES) -> Engine:
    """An ONNX graph on ONNX Runtime's CPU provider."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise missing_extra("onnxruntime") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        out = session.run(None, {name: inputs[name] for name in names})
        return out[0], out[1] if len(out) > 1 else None

    return run
