"""log.jsonl: one flushed JSON object per line, written by rank 0 only.

Records: `{"event": "step", "epoch", "step", "loss", "lr", "samples_per_s"}` every `log_every`
steps (and at an epoch's end); `{"event": "epoch", "epoch", "step", "train_loss",
"valid_user_weighted_auc", "valid_global_auc", "valid_logloss", "validation_seconds", "seconds",
"best_epoch", "select_metric"}` after each epoch, `seconds` the whole epoch and
`validation_seconds` its scoring of the valid split (runs of older versions wrote `valid_gauc`
for the user-weighted and `valid_auc` for the global AUC); `{"event": "early_stop", "epoch",
"best_epoch", "select_metric"}` when the patience ran out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class RunLog:
    """Appends records to log.jsonl; on resume, first drops lines written after the checkpoint."""

    def __init__(self, path: Path, enabled: bool, keep_lines: int | None) -> None:
        self.path = path
        self.enabled = enabled
        self.lines = 0
        if not enabled:
            return
        if keep_lines is None:
            path.write_text("")
        else:
            old = path.read_text().splitlines(keepends=True) if path.exists() else []
            path.write_text("".join(old[:keep_lines]))
            self.lines = min(keep_lines, len(old))
        self._f = open(path, "a")  # noqa: SIM115 - closed in close()

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            self._f.write(json.dumps(record) + "\n")
            self._f.flush()
        self.lines += 1

    def close(self) -> None:
        if self.enabled:
            self._f.close()
