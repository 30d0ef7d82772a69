"""What the dataset builders report: they take the `status` and `warn` callbacks of
dinctl/reporting.py (quiet by default; the CLI shows a phase as a spinner on stderr), and a
finished dataset's warnings (recorded in meta.json and shown by the CLI) come from here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dinctl.reporting import Status, Warn, no_warnings, quiet

__all__ = ["Status", "Warn", "no_warnings", "quiet", "split_warnings"]


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
