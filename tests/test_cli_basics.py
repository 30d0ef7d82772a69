"""The CLI skeleton: --help is instant (no torch/polars import), errors follow the boundary,
every registered command is documented, commands are listed in the pipeline's order."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from dinctl.cli.main import COMMAND_ORDER, app

runner = CliRunner()
README = Path(__file__).resolve().parents[1] / "README.md"


def test_help_does_not_import_torch_or_polars() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from dinctl.cli.main import app\n"
        "r = CliRunner().invoke(app, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "heavy = [m for m in ('torch', 'polars', 'matplotlib', 'sklearn') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def _registered(group: typer.Typer, prefix: str = "dinctl") -> list[str]:
    """Every visible command path of a Typer app, walked from what is registered."""
    found = []
    for info in group.registered_commands:
        if info.hidden:
            continue
        name = info.name or (info.callback.__name__ if info.callback else "?")
        found.append(f"{prefix} {name}")
    for sub in group.registered_groups:
        assert sub.typer_instance is not None
        found += _registered(sub.typer_instance, f"{prefix} {sub.name}")
    return found


def test_every_registered_command_is_documented_in_the_readme() -> None:
    commands = _registered(app)
    # the walk sees the real registrations: every pipeline stage and its subcommands
    assert {"dinctl train", "dinctl evaluate", "dinctl quickstart"} <= set(commands)
    assert "dinctl visualize attention" in commands and "dinctl experiment table4" in commands
    readme = README.read_text()
    undocumented = [c for c in commands if not re.search(re.escape(c) + r"\b", readme)]
    assert undocumented == []


def test_help_lists_commands_in_pipeline_order() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    listed = [
        line.split()[1]
        for line in result.output.splitlines()
        if line.startswith("│ ") and len(line.split()) > 2 and line.split()[1].isalpha()
    ]
    listed = [c for c in listed if c in COMMAND_ORDER]
    assert listed == list(COMMAND_ORDER)


def test_usage_error_exits_2() -> None:
    result = runner.invoke(app, ["train", "--no-such-flag"])
    assert result.exit_code == 2


def test_usage_errors_of_the_installed_command_are_one_line() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "dinctl", "train", "--no-such-flag"], capture_output=True, text=True
    )
    assert out.returncode == 2 and out.stdout == ""
    lines = out.stderr.splitlines()
    assert lines[0].startswith("error: No such option: --no-such-flag")
    assert lines[1:] == ["hint: see `python -m dinctl train --help`"]


def test_version() -> None:
    help_line = next(
        x for x in runner.invoke(app, ["--help"]).output.splitlines() if "--version" in x
    )
    assert "<bool>" not in help_line and "Print the version" in help_line
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith("dinctl ")
    out = subprocess.run(
        [sys.executable, "-m", "dinctl", "--version"], capture_output=True, text=True
    )
    assert (out.returncode, out.stdout.split()[0]) == (0, "dinctl")


def test_tables_in_logs_and_pipes_are_never_squeezed_into_80_columns(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from dinctl.cli.report import PIPE_WIDTH, stderr_console
    from dinctl.tables import Group, build_table, render_rich

    metrics = [{"user_weighted_auc": 0.566, "global_auc": 0.5, "logloss": 0.69}] * 2
    groups = [
        Group(f"variant-{k}", (f"DIN with MBA Reg. and Dice, variant {k}",), metrics)
        for k in range(2)
    ]
    table = build_table("t", "a wide table", ("Model",), groups, baseline="variant-0")
    console = stderr_console()  # pytest's stderr is no terminal
    assert not console.is_terminal and console.width == PIPE_WIDTH
    console.print(render_rich(table))
    lines = capsys.readouterr().err.splitlines()
    rows = [line for line in lines if "variant" in line]
    assert len(rows) == 2  # one line per row: no cell wrapped onto a second line
    assert all("0.5660 ± 0.0000" in row and "0.5000 ± 0.0000" in row for row in rows)
    assert max(len(line) for line in lines) > 80


def test_the_training_bar_shows_speed_and_loss_from_the_first_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An epoch shorter than --log-every used to show `- samples/s  loss -` throughout."""
    from dinctl.reporting import Reporter
    from dinctl.training import progress

    shown: list[dict[str, str]] = []

    class Recorder:
        def update(self, completed: int, total: int | None = None, **fields: str) -> None:
            shown.append(dict(fields))

        def close(self) -> None:
            pass

    clock = iter([100.0, 100.5, 100.6, 101.2])
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    bar = progress.Progress(Reporter(bar=lambda description, unit: Recorder()))
    bar.start_epoch("epoch 1/1", total=3, completed=0)  # t = 100.0
    losses = iter([0.6931, 0.65])
    bar.advance(256, lambda: next(losses))  # t = 100.5: the first batch refreshes
    bar.advance(256, lambda: 0.0)  # t = 100.6: too soon, the fields stay
    bar.advance(128, lambda: next(losses))  # t = 101.2: refreshed
    assert shown[0] == {"loss": "-", "speed": "-"}
    assert shown[1] == {"loss": "0.6931", "speed": "512"}
    assert shown[2] == shown[1]
    assert shown[3] == {"loss": "0.6500", "speed": "533"}
