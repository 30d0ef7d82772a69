"""The CLI skeleton: --help is instant (no torch/polars import), errors follow the boundary."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from dinctl.cli.main import app

runner = CliRunner()


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


def test_every_product_command_is_registered() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("download", "preprocess", "train", "evaluate", "visualize"):
        assert command in result.output


def test_usage_error_exits_2() -> None:
    result = runner.invoke(app, ["train", "--no-such-flag"])
    assert result.exit_code == 2


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith("dinctl ")
