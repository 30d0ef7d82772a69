"""A user who installs the wheel (not an editable checkout) gets a working `dinctl quickstart`.

Builds a real wheel from a copy of the sources, installs it into a fresh virtual environment
whose only other packages are this interpreter's dependencies (torch, polars, ...), and runs the
installed `dinctl quickstart` from a folder far from the source tree.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _copy_sources(dst: Path) -> Path:
    """pyproject.toml, README.md and the package, sample data resolved from the symlink."""
    dst.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, dst / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "dinctl", dst / "dinctl", ignore=ignore)
    return dst


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["OMP_NUM_THREADS"] = "1"
    return env


@pytest.mark.slow
def test_wheel_install_runs_quickstart(tmp_path: Path) -> None:
    src = _copy_sources(tmp_path / "src")
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(dist),
            str(src),
        ],
        check=True,
        env=_env(),
        cwd=tmp_path,
    )
    [wheel] = dist.glob("dinctl-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    sample = ROOT / "dinctl" / "sample_data"
    shipped = {
        f"dinctl/sample_data/{p.relative_to(sample).as_posix()}"
        for p in sample.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert shipped and shipped <= set(names), sorted(shipped - set(names))  # every sample file

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)  # its own pip writes its own scripts
    bin_dir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    py = bin_dir / "python"
    site = Path(
        subprocess.run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
            env=_env(),
        ).stdout.strip()
    )
    # the dependencies come from this interpreter's site-packages, added as a plain path (its
    # own .pth files, e.g. an editable dinctl, are not processed); --ignore-installed, or pip
    # would uninstall the dinctl it sees there, i.e. the developer's own editable install
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [
            str(py),
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            "--ignore-installed",
            str(wheel),
        ],
        check=True,
        env=_env(),
    )
    where = subprocess.run(
        [str(py), "-c", "import dinctl; print(dinctl.__file__)"],
        check=True,
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
    ).stdout.strip()
    assert Path(where).is_relative_to(env_dir), where

    work = tmp_path / "elsewhere"
    work.mkdir()
    result = subprocess.run(
        [str(bin_dir / "dinctl"), "quickstart", "--out", "qs", "--json"],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=work,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout)
    assert summary["test"]["user_weighted_auc"] > 0.7
    assert (work / "qs" / "runs" / "din-dice" / "best.pt").is_file()
