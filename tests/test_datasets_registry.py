"""The dataset registry: every entry resolves, and the CLI's commands are built from it."""

from __future__ import annotations

import inspect

import pytest
from typer.testing import CliRunner

from dinctl.cli.main import app
from dinctl.data.datasets import DATASETS, Dataset, get, resolve
from dinctl.errors import DinctlError

runner = CliRunner()


@pytest.mark.parametrize("entry", DATASETS, ids=lambda d: d.name)
def test_every_reference_of_an_entry_names_a_function_of_the_protocol(entry: Dataset) -> None:
    build = inspect.signature(resolve(entry.preprocess))
    for name in ("raw", "out", "seed", "valid", "overwrite", "status", "warn"):
        assert name in build.parameters, f"{entry.preprocess} takes no {name}"
    for setting in entry.settings:
        assert setting.name in build.parameters, f"{entry.preprocess} takes no {setting.name}"
    if entry.download is not None:
        source = inspect.signature(resolve(entry.download.source))
        assert "mirrors" in source.parameters
        for setting in entry.download.settings:
            assert setting.name in source.parameters
        fetch = inspect.signature(resolve(entry.download.fetch))
        for name in ("from_path", "force", "policy", "bar", "log", "max_extract_bytes"):
            assert name in fetch.parameters, f"{entry.download.fetch} takes no {name}"


@pytest.mark.parametrize("entry", DATASETS, ids=lambda d: d.name)
def test_each_registered_dataset_has_its_commands_with_its_settings(entry: Dataset) -> None:
    result = runner.invoke(app, ["preprocess", entry.name, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for setting in entry.settings:
        assert f"--{setting.name.replace('_', '-')}" in result.output
    result = runner.invoke(app, ["download", entry.name, "--help"], env={"COLUMNS": "200"})
    assert (result.exit_code == 0) == (entry.download is not None), result.output
    if entry.download is not None:
        assert ("--url" in result.output) == entry.download.urls
        assert ("--max-extract-bytes" in result.output) == entry.download.max_extract


def test_an_unknown_dataset_is_a_one_line_error_naming_the_known_ones() -> None:
    with pytest.raises(DinctlError) as err:
        get("imdb")
    names = ", ".join(d.name for d in DATASETS)
    assert err.value.message == f"unknown dataset 'imdb': expected one of {names}"
