"""How the dataset builders report while they work: the status callback protocol (a context
manager per phase; the CLI shows it as a spinner on stderr) and the warnings a finished
dataset gets (recorded in meta.json and shown by the CLI)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

Status = Callable[[str], contextlib.AbstractContextManager[Any]]
Warn = Callable[[str], None]


@contextlib.contextmanager
def quiet(_: str) -> Iterator[None]:
    """The status callback that shows nothing (library use)."""
    yield


def no_warnings(_: str) -> None:
    """The warn callback that drops the message (it is still recorded in meta.json)."""


def split_warnings(summary: dict[str, Any], out: Path) -> list[str]:
    """A warning per split that is empty or holds one class (train refuses such a train split)."""
    warnings = []
    for split, n in summary["samples"].items():
        rate = summary["positive_rate"][split]
        where = f"split {split!r} ({out / f'{split}.parquet'})"
        if n == 0:
            warnings.append(f"{where} is empty: `dinctl train` cannot use this dataset"
                            if split == "train" else f"{where} is empty")  # fmt: skip
        elif rate in (0.0, 1.0):
            kind = "positive" if rate == 1.0 else "negative"
            tail = ": `dinctl train` cannot learn from it" if split == "train" else ""
            warnings.append(f"{where} has only {kind} labels ({n} rows){tail}")
    return warnings
