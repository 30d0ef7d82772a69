"""Every recipe trains every model: the training loss falls epoch after epoch on the sample."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from dinctl.choices import MODELS, RECIPES


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("model", MODELS)
def test_training_loss_falls_under_every_recipe(
    sample_dataset: Path, tmp_path: Path, recipe: str, model: str
) -> None:
    from dinctl.training.config import resolve_config
    from dinctl.training.loop import train

    settings = {
        "data": str(sample_dataset),
        "out": str(tmp_path / "run"),
        "recipe": recipe,
        "model": model,
        "act": "dice" if model == "din" else "prelu",
        "emb_dim": 8,
        "emb_init_std": 1.0,  # the sample is tiny: see the README
        "epochs": 3,
        "patience": 0,
        "threads": 1,
    }
    train(resolve_config(settings, None))
    lines = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    losses = [r["train_loss"] for r in map(json.loads, lines) if r["event"] == "epoch"]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    assert losses[0] > losses[1] > losses[2], f"{model} under {recipe}: {losses}"
