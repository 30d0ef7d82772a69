"""Issue 13 item 2 for runs and experiments: one writer per run folder and per experiment folder;
a second writer gets one line naming the holder (a real second process holds the lock)."""

from __future__ import annotations

from pathlib import Path

import pytest
from faults import lock_held

from dinctl.errors import DinctlError
from dinctl.evaluation import evaluate_run
from dinctl.experiment import TABLE4, ExperimentSettings, run_experiment
from dinctl.training.config import resolve_config
from dinctl.training.loop import train


def _cfg(data: Path, out: Path) -> object:
    return resolve_config(
        {"data": str(data), "out": str(out), "model": "lr", "epochs": 1, "batch_size": 64}, None
    )


def test_train_into_a_run_folder_another_process_writes_is_refused(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    run = tmp_path / "runs" / "r"
    with lock_held(run, "run") as holder:
        with pytest.raises(DinctlError) as err:
            train(_cfg(tiny_dataset, run))  # type: ignore[arg-type]
        assert err.value.message.startswith(f"run {run} is in use by pid {holder.pid} on ")
        assert not run.exists()  # nothing written, nothing interleaved
    result = train(_cfg(tiny_dataset, run))  # type: ignore[arg-type]
    assert result.epochs_run == 1


def test_evaluate_while_another_process_writes_the_run_is_refused(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    run = tmp_path / "r"
    train(_cfg(tiny_dataset, run))  # type: ignore[arg-type]
    with lock_held(run, "run") as holder:
        with pytest.raises(DinctlError) as err:
            evaluate_run(run)
        assert f"is in use by pid {holder.pid}" in err.value.message
        assert not (run / "metrics.json").exists()
    assert evaluate_run(run).n > 0


def test_second_experiment_writer_is_refused(tiny_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "exp"
    settings = ExperimentSettings(data=tiny_dataset, out=out, seeds=1, epochs=1, recipe="fast")
    with lock_held(out, "experiment") as holder:
        with pytest.raises(DinctlError) as err:
            run_experiment(TABLE4, settings)
        assert err.value.message.startswith(f"experiment {out} is in use by pid {holder.pid}")
        assert not out.exists()
