"""Golden per-step training losses: a short seeded DIN + Dice + MBA run on the bundled sample.

The numbers below were recorded from the code before a refactor; a change to the loop, the
optimisers, the regulariser or the batching that moves any step's loss by more than 1e-4 fails
here loudly. Re-record them only for a deliberate change of semantics, in a commit that says why.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "amazon"
TOLERANCE = 1e-4

# 2 epochs of the sample's training rows at batch 64, one log line per optimiser step.
# fmt: off
GOLDEN_LOSSES: list[float] = [
    0.690026, 0.686184, 0.707265, 0.667040, 0.719874, 0.745240, 0.741117, 0.668316,
    0.705051, 0.691553, 0.705242, 0.697856, 0.661725, 0.693053, 0.729830, 0.666320,
    0.727716, 0.684620, 0.719345, 0.699386, 0.686133, 0.692942, 0.700095, 0.697715,
    0.683881, 0.671384, 0.763581, 0.640416, 0.727082, 0.662138, 0.678488, 0.668517,
    0.702057, 0.660006, 0.662960, 0.705978, 0.644730, 0.700001, 0.751576, 0.665593,
    0.726442, 0.660955, 0.683013, 0.699268, 0.715902, 0.681220, 0.690015, 0.647652,
    0.692786, 0.657635, 0.612051, 0.619316, 0.693795, 0.757952, 0.564450, 0.641276,
    0.748435, 0.587788, 0.668549, 0.671913, 0.648815, 0.673014, 0.633179, 0.678511,
    0.646481, 0.775178, 0.641891, 0.665839, 0.678355, 0.674369, 0.664825, 0.632563,
    0.720161, 0.685429, 0.655800, 0.676612, 0.587915, 0.646341, 0.662969, 0.651747,
    0.610943, 0.653821, 0.631618, 0.636881, 0.632004, 0.534691,
]
# fmt: on


@pytest.fixture(scope="module")
def sample_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dinctl.data.preprocess import preprocess_amazon

    out = tmp_path_factory.mktemp("golden") / "amazon"
    preprocess_amazon(SAMPLE, out)
    return out


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
    train(cfg, progress=False)
    losses = step_losses(tmp_path / "run")
    assert len(losses) == len(GOLDEN_LOSSES)
    for step, (got, want) in enumerate(zip(losses, GOLDEN_LOSSES, strict=True), start=1):
        assert abs(got - want) <= TOLERANCE, f"step {step}: loss {got:.6f}, golden {want:.6f}"
