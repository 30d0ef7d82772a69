"""The reporting protocol (dinctl/reporting.py): silent by default, and what training's bar
adapter and the CLI's renderer make of the events."""

from __future__ import annotations

from typing import Any

import pytest

from dinctl.reporting import SILENT, NoBar, Reporter
from dinctl.training.progress import Progress, epoch_line

pytestmark = pytest.mark.notorch  # torch-free: `make test-py` runs it on 3.10 and 3.13


class RecordingBar:
    def __init__(self, log: list[Any], description: str, unit: str) -> None:
        self.log = log
        log.append(("open", description, unit))

    def update(self, completed: int, total: int | None = None, **fields: str) -> None:
        self.log.append(("update", completed, total, fields.get("loss")))

    def close(self) -> None:
        self.log.append(("close",))


def test_the_default_reporter_says_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    SILENT.line("a line")
    SILENT.warn("a warning")
    with SILENT.status("a phase"):
        pass
    bar = SILENT.bar("a task", "bytes")
    bar.update(3, 10)
    bar.close()
    assert isinstance(bar, NoBar)
    assert capsys.readouterr() == ("", "")


def test_training_progress_is_bar_events() -> None:
    log: list[Any] = []
    progress = Progress(Reporter(bar=lambda d, u: RecordingBar(log, d, u)))
    progress.start_epoch("epoch 2/3", total=4, completed=1)  # a resumed epoch starts at batch 1
    progress.advance()
    progress.fields["loss"] = "0.6900"
    progress.advance()
    progress.end_epoch()
    progress.end_epoch()  # closing twice (an interrupted run) closes once
    assert log == [
        ("open", "epoch 2/3", "batches"),
        ("update", 1, 4, "-"),
        ("update", 2, 4, "-"),
        ("update", 3, 4, "0.6900"),
        ("close",),
    ]


def test_epoch_line_reads_the_log_keys_of_runs() -> None:
    record = {
        "epoch": 2,
        "train_loss": 0.5,
        "valid_user_weighted_auc": 0.75,
        "valid_global_auc": 0.7,
        "valid_logloss": 0.6,
        "seconds": 1.25,
    }
    assert epoch_line(record) == (
        "epoch 2  train loss 0.5000  valid AUC (user-weighted, Eq. 10) 0.7500  global AUC 0.7000  "
        "logloss 0.6000  1.2s"
    )
    del record["valid_user_weighted_auc"]  # no valid split
    assert epoch_line(record) == "epoch 2  train loss 0.5000  1.2s"


def test_cli_reporter_prints_lines_and_warnings_on_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from dinctl.cli.report import cli_reporter

    loud, quiet = cli_reporter(), cli_reporter(lines=False, bars=False)
    loud.line("epoch 1")
    loud.warn("no valid split")
    quiet.line("dropped")
    quiet.warn("kept")
    assert isinstance(loud.bar("epoch 1/2", "batches"), NoBar)  # stderr is not a terminal here
    assert capsys.readouterr() == ("", "epoch 1\nwarning: no valid split\nwarning: kept\n")
