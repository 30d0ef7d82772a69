"""Golden per-step training losses: a short seeded DIN + Dice + MBA run on the bundled sample.

The numbers below were recorded from the code before a refactor; a change to the loop, the
optimisers, the regulariser or the batching that moves any step's loss by more than 1e-4 fails
here loudly. Re-record them only for a deliberate change of semantics, in a commit that says why.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TOLERANCE = 1e-4

# 2 epochs of the sample's training rows at batch 64, one log line per optimiser step.
# Re-recorded once: MBA's penalty became (λ/2)·Σ‖w_j‖²/n_j so that its gradient is λ·w_j/n_j as
# in Eq. (7); the new code at λ = 0.02 reproduces the first recording to 5e-7.
# fmt: off
GOLDEN_LOSSES: list[float] = [
    0.690026, 0.686182, 0.707179, 0.667080, 0.721101, 0.744783, 0.741203, 0.668387,
    0.704589, 0.691923, 0.705295, 0.697932, 0.662048, 0.693616, 0.730001, 0.665990,
    0.728452, 0.684772, 0.719932, 0.699953, 0.686659, 0.693344, 0.699612, 0.700656,
    0.684192, 0.673415, 0.759177, 0.641174, 0.725968, 0.663578, 0.679925, 0.668511,
    0.702842, 0.663377, 0.663209, 0.710219, 0.644638, 0.700315, 0.747444, 0.661322,
    0.729896, 0.661197, 0.682415, 0.700277, 0.719197, 0.678368, 0.692044, 0.645129,
    0.694990, 0.657022, 0.609290, 0.619127, 0.701711, 0.772237, 0.564677, 0.641186,
    0.745559, 0.591800, 0.663995, 0.672137, 0.649851, 0.674187, 0.633442, 0.686558,
    0.639794, 0.779599, 0.636903, 0.659709, 0.677948, 0.674062, 0.660487, 0.630008,
    0.721557, 0.686411, 0.655321, 0.682865, 0.593439, 0.643407, 0.661313, 0.647045,
    0.614111, 0.655389, 0.635834, 0.644700, 0.644669, 0.538407,
]
# fmt: on


def golden_settings(data: Path, out: Path) -> dict[str, Any]:
    return {
        "data": str(data),
        "out": str(out),
        "model": "din",
        "act": "dice",
        "reg": "mba",
        "reg_lambda": 0.01,
        "optimizer": "adam",
        "lr": 0.01,
        "batch_size": 64,
        "epochs": 2,
        "emb_dim": 8,
        "emb_init_std": 1.0,
        # the layout the losses were recorded with (the defaults became a ReLU tower after a
        # Dice unit, α from 0 and Xavier linears since; those are pinned here, not re-recorded)
        "mlp_act": "same",
        "dice_alpha_init": 0.25,
        "linear_init": "torch",
        "max_len": 20,
        "seed": 1234,
        "log_every": 1,
        "device": "cpu",
    }


def step_losses(run_dir: Path) -> list[float]:
    lines = (run_dir / "log.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if r["event"] == "step"]


def test_golden_per_step_losses(sample_dataset: Path, tmp_path: Path) -> None:
    import torch

    from dinctl.training.config import resolve_config
    from dinctl.training.loop import train

    torch.set_num_threads(1)
    cfg = resolve_config(golden_settings(sample_dataset, tmp_path / "run"), None)
    train(cfg)
    losses = step_losses(tmp_path / "run")
    assert len(losses) == len(GOLDEN_LOSSES)
    for step, (got, want) in enumerate(zip(losses, GOLDEN_LOSSES, strict=True), start=1):
        assert abs(got - want) <= TOLERANCE, f"step {step}: loss {got:.6f}, golden {want:.6f}"
