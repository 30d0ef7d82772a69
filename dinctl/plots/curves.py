"""Fig. 4 style curves: training loss and validation user-weighted AUC (Eq. 10) per epoch of
one or several runs, read from their log.jsonl."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dinctl import runs
from dinctl.errors import DinctlError
from dinctl.fsutil import json_fields, read_json
from dinctl.plots.common import (
    LINESTYLES,
    MARKERS,
    dataset_meta,
    dataset_title,
    figure,
    png_path,
    save_png,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CURVES_SIZE_PX = (1300, 520)
AUC_LABEL = "validation AUC (user-weighted, Eq. 10)"


@dataclass(frozen=True)
class Curve:
    """Per-epoch training loss and validation AUCs of one run, from its log.jsonl."""

    run_dir: Path
    model: str
    dataset: str
    epoch: list[int]
    train_loss: list[float | None]
    valid_user_weighted_auc: list[float | None]  # what the figure plots
    valid_global_auc: list[float | None]

    def to_json(self) -> dict[str, Any]:
        return json_fields(self, {"run_dir": "run"})


def read_curve(run_dir: Path | str) -> Curve:
    """The epoch lines of `<run>/log.jsonl` (malformed lines are one-line errors)."""
    run_dir = Path(run_dir)
    config = runs.read_config(run_dir)
    records = runs.epoch_records(run_dir)
    if not records:
        raise DinctlError(
            f"{run_dir / runs.LOG_FILE} has no epoch lines",
            hint="the run stopped before its first epoch ended; train at least one epoch",
        )
    model, dataset = runs.run_labels(run_dir)
    data = config.get("dataset")
    data_path = data.get("path") if isinstance(data, dict) else None
    dataset = dataset_title(dataset, dataset_meta(data_path) if data_path else None)
    return Curve(
        run_dir,
        model,
        dataset,
        [r.epoch for r in records],
        [r.train_loss for r in records],
        [r.valid_user_weighted_auc for r in records],
        [r.valid_global_auc for r in records],
    )


def draw_curves(curves: list[Curve]) -> Figure:
    """Two panels: training loss and validation user-weighted AUC per epoch, one style per run."""
    from matplotlib.ticker import MaxNLocator

    fig = figure(*CURVES_SIZE_PX)
    ax_loss, ax_auc = fig.subplots(1, 2)
    nan = math.nan
    for k, cv in enumerate(curves):
        style = {
            "marker": MARKERS[k % len(MARKERS)],
            "linestyle": LINESTYLES[k % len(LINESTYLES)],
            "label": f"{cv.run_dir.name} ({cv.model})",
        }
        ax_loss.plot(cv.epoch, [nan if v is None else v for v in cv.train_loss], **style)
        auc = [nan if v is None else v for v in cv.valid_user_weighted_auc]
        ax_auc.plot(cv.epoch, auc, **style)
    for ax, what in ((ax_loss, "training loss"), (ax_auc, AUC_LABEL)):
        ax.set_xlabel("epoch")
        ax.set_ylabel(what)
        ax.set_title(f"{what} per epoch", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_auc.legend(fontsize=8)
    models = ", ".join(dict.fromkeys(cv.model for cv in curves))
    datasets = ", ".join(dict.fromkeys(cv.dataset for cv in curves))
    fig.suptitle(f"Training loss and {AUC_LABEL} per epoch — {models} on {datasets}")
    return fig


def compute_curves(run_dirs: list[Path | str]) -> list[Curve]:
    """Curves of every run named (experiment folders expand to their runs that have a log)."""
    return [read_curve(p) for p in runs.expand_runs(list(run_dirs), need="log")]


def write_curves(curves: list[Curve], out: Path | str | None = None) -> tuple[Path, Path]:
    """Write the curves PNG (default <first run>/plots/curves.png) and its JSON beside it."""
    png = png_path(out, curves[0].run_dir / runs.PLOTS_DIR / "curves.png")
    js = png.with_suffix(".json")
    if js.is_file() and not _is_curves_json(js):  # --out RUN/config.png would replace config.json
        raise DinctlError(
            f"{js} exists and is not a curves plot's JSON; refusing to replace it",
            hint="choose an --out whose .json sibling is free (e.g. RUN/plots/curves.png)",
        )
    save_png(draw_curves(curves), png)
    runs.write_json(
        js, {"metric": runs.VALID_USER_WEIGHTED_AUC, "runs": [cv.to_json() for cv in curves]}
    )
    return png, js


def _is_curves_json(path: Path) -> bool:
    try:
        data = read_json(path)
    except DinctlError:
        return False
    return isinstance(data, dict) and set(data) == {"metric", "runs"}


def curves_plot(run_dirs: list[Path | str], out: Path | str | None = None) -> Path:
    """Fig. 4 style curves for one or several runs; returns the PNG path."""
    return write_curves(compute_curves(run_dirs), out)[0]
