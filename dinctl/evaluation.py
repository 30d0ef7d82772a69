"""Score trained runs on a split and compare them the way the paper's Table 3 does.

`evaluate_run` scores every row of a split with a run's best weights and writes the split's
predictions and metrics files into the run folder (file names in `dinctl.runs`: the test split
keeps `metrics.json` / `predictions.parquet`, the valid split gets `metrics-valid.json` /
`predictions-valid.parquet`, so neither replaces the other). `evaluate_runs` turns several runs
into a table of one seed per run (`dinctl.tables`), RelaImpr (Eq. 11) against a baseline.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dinctl import runs
from dinctl.choices import SELECT_METRICS
from dinctl.errors import DinctlError
from dinctl.fsutil import atomic_file
from dinctl.locks import folder_lock
from dinctl.metrics import auc_score, log_loss, user_auc_details
from dinctl.tables import Group, Table, build_table, model_cells

if TYPE_CHECKING:
    from dinctl.inference import OpenedRun

METRICS_FORMAT = 2  # 2: user_weighted_auc / global_auc keys (1 had auc / gauc)
# run-config settings copied into metrics.json so a metrics file says what it measured
CONFIG_SUMMARY_KEYS = (
    "model",
    "act",
    "reg",
    "reg_lambda",
    "recipe",
    "optimizer",
    "lr",
    "batch_size",
    "epochs",
    "emb_dim",
    "max_len",
    "attn_softmax",
    "use_item_ids",
    "seed",
)


@dataclass(frozen=True)
class RunMetrics:
    """One run scored on one split: what its metrics file holds."""

    run_dir: Path
    split: str
    user_weighted_auc: float  # Eq. (10): the paper's "AUC"
    global_auc: float
    users_scored: int
    users_skipped: int  # users with a single class in the split: no AUC of their own
    impressions_scored: int
    logloss: float
    n: int
    positive_rate: float
    dataset_path: str
    dataset_checksum: str
    best_epoch: int
    config: dict[str, Any]  # CONFIG_SUMMARY_KEYS of the run's train config

    @property
    def model(self) -> str:
        return str(self.config.get("model", "?"))

    @property
    def metrics_file(self) -> Path:
        return self.run_dir / runs.metrics_file(self.split)

    @property
    def predictions_file(self) -> Path:
        return self.run_dir / runs.predictions_file(self.split)

    def headline(self) -> dict[str, float]:
        return {k: float(getattr(self, k)) for k in runs.METRIC_KEYS}

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": METRICS_FORMAT,
            "split": self.split,
            "metric": runs.HEADLINE_METRIC,
            "user_weighted_auc": self.user_weighted_auc,
            "global_auc": self.global_auc,
            "logloss": self.logloss,
            "users_scored": self.users_scored,
            "users_skipped": self.users_skipped,
            "impressions_scored": self.impressions_scored,
            "n": self.n,
            "positive_rate": self.positive_rate,
            "dataset": {"path": self.dataset_path, "checksum": self.dataset_checksum},
            "best_epoch": self.best_epoch,
            "config": self.config,
            "evaluated_at": runs.now(),
        }


def _check_split(labels: np.ndarray, split: str, data: Path) -> None:
    if labels.shape[0] == 0:
        raise DinctlError(
            f"the {split} split of {data} has no rows", hint="re-run `dinctl preprocess`"
        )
    n_pos = int((labels == 1).sum())
    if n_pos in (0, labels.shape[0]):
        only = "clicks" if n_pos else "non-clicks"
        raise DinctlError(
            f"the {split} split of {data} has only {only}: AUC is undefined",
            hint="evaluate on a split with both classes",
        )


def score_run(run: OpenedRun, split: str, batch_size: int | None = None) -> RunMetrics:
    """Score an opened run on `split` and write its predictions and metrics files."""
    import polars as pl

    from dinctl.inference import score

    runs.check_split(split)
    rows = run.dataset.split(split)
    labels = rows.label
    _check_split(labels, split, run.dataset.path)
    prob = score(run, split, batch_size)  # (N,)
    details = user_auc_details(labels, prob, rows.user)
    train_cfg = asdict(run.config)
    metrics = RunMetrics(
        run_dir=run.run_dir,
        split=split,
        user_weighted_auc=details.score,
        global_auc=auc_score(labels, prob),
        users_scored=details.users_scored,
        users_skipped=details.users_skipped,
        impressions_scored=details.impressions_scored,
        logloss=log_loss(labels, prob),
        n=int(labels.shape[0]),
        positive_rate=float(labels.mean()),
        dataset_path=str(run.dataset.path),
        dataset_checksum=run.dataset.checksum,
        best_epoch=run.best_epoch,
        config={k: train_cfg[k] for k in CONFIG_SUMMARY_KEYS if k in train_cfg},
    )
    predictions = pl.DataFrame(
        {
            "user": rows.user.astype(np.int32),
            "item": rows.item.astype(np.int32),
            "label": labels.astype(np.int8),
            "score": prob,
        }
    )
    with folder_lock(run.run_dir, what="run"):  # not while `train` or another evaluate writes it
        with atomic_file(metrics.predictions_file) as tmp:
            predictions.write_parquet(tmp)
        runs.write_json(metrics.metrics_file, metrics.to_json())
    return metrics


def evaluate_run(
    run_dir: Path | str,
    split: str = "test",
    *,
    device: str = "cpu",
    batch_size: int | None = None,
) -> RunMetrics:
    """Score a run's best checkpoint on `split`; write its predictions and metrics files."""
    from dinctl.inference import open_run

    runs.check_split(split)
    return score_run(open_run(run_dir, device=device), split, batch_size)


# --------------------------------------------------------------------------- Table 3


def run_table(results: Sequence[RunMetrics], baseline: RunMetrics | None, split: str) -> Table:
    """Table 3 with one row per run (a table of one seed each)."""
    groups = []
    for m in results:
        labels = (
            m.run_dir.name,
            *model_cells(m.model, str(m.config.get("act", "?")), str(m.config.get("reg", "?"))),
        )
        extra = {
            "run": str(m.run_dir),
            "model": m.model,
            "act": str(m.config.get("act", "?")),
            "reg": str(m.config.get("reg", "?")),
            "users_scored": m.users_scored,
            "users_skipped": m.users_skipped,
            "n": m.n,
            "positive_rate": m.positive_rate,
            "split": m.split,
            "dataset_checksum": m.dataset_checksum,
            "metrics_file": str(m.metrics_file),
            "predictions_file": str(m.predictions_file),
        }
        groups.append(Group(str(m.run_dir), labels, [m.headline()], extra))
    outside = None
    if baseline is not None and str(baseline.run_dir) not in {g.key for g in groups}:
        outside = Group(str(baseline.run_dir), (), [baseline.headline()])
    return build_table(
        "evaluate",
        f"{split} split, {len(results)} run(s)",
        ("run", "model", "activation", "regulariser"),
        groups,
        baseline=None if baseline is None else str(baseline.run_dir),
        baseline_label=None if baseline is None else str(baseline.run_dir),
        setting=_setting(results, split),
        outside_baseline=outside,
    )


def _setting(results: Sequence[RunMetrics], split: str) -> dict[str, Any]:
    """The split, and the recipes, epochs and datasets of the runs (`a/b` when they differ)."""

    def joined(values: Sequence[Any]) -> str | None:
        unique = [str(v) for v in dict.fromkeys(values) if v is not None]
        return "/".join(unique) or None

    return {
        "split": split,
        "recipe": joined([m.config.get("recipe") for m in results]),
        "epochs": joined([m.config.get("epochs") for m in results]),
        "dataset": joined([m.dataset_path for m in results]),
    }


def comparison_json(table: Table) -> dict[str, Any]:
    """`dinctl evaluate --json`: one flat row per run, numbers (one seed) instead of stats."""
    rows = []
    for r in table.rows:
        rows.append(
            {
                **r.extra,
                "user_weighted_auc": r.user_weighted_auc.mean,
                "global_auc": None if r.global_auc is None else r.global_auc.mean,
                "logloss": r.logloss.mean,
                "rela_impr": r.rela_impr,
            }
        )
    return {
        "split": table.setting.get("split"),
        "metric": runs.HEADLINE_METRIC,
        "runs": rows,
    }


@dataclass(frozen=True)
class EvaluationResult:
    table: Table
    results: list[RunMetrics]
    baseline: RunMetrics | None
    seconds: float

    def to_json(self) -> dict[str, Any]:
        out = comparison_json(self.table)
        b = self.baseline
        out["baseline"] = (
            None
            if b is None
            else {
                "run": str(b.run_dir),
                "user_weighted_auc": b.user_weighted_auc,
                "global_auc": b.global_auc,
            }
        )
        return out


def evaluate_runs(
    paths: Sequence[Path],
    *,
    split: str = "test",
    baseline: Path | None = None,
    runs_root: Path = Path("runs"),
    device: str = "cpu",
) -> EvaluationResult:
    """Expand, check the datasets agree, score every run, and build the Table 3 comparison.

    The baseline is `baseline` when given (scored too if not among the runs), else the first
    run whose model is `base`, else none.
    """
    started = time.perf_counter()
    runs.check_split(split)
    run_dirs = runs.expand_runs(paths, runs_root)
    all_dirs = list(run_dirs)
    if baseline is not None:
        baseline = Path(baseline)
        if not runs.is_run(baseline):
            raise DinctlError(
                f"baseline {baseline} is not a run folder",
                hint="pass a folder written by `dinctl train` to --baseline",
            )
        if baseline not in all_dirs:
            all_dirs.append(baseline)
    runs.check_same_dataset(all_dirs)
    scored = {d: evaluate_run(d, split, device=device) for d in all_dirs}
    results = [scored[d] for d in run_dirs]
    if baseline is not None:
        base: RunMetrics | None = scored[baseline]
    else:
        base = next((m for m in results if m.model == "base"), None)
    table = run_table(results, base, split)
    return EvaluationResult(table, results, base, time.perf_counter() - started)


def check_fail_under(
    results: Sequence[RunMetrics], bar: float, metric: str = runs.HEADLINE_METRIC
) -> None:
    """Raise a one-line error when any run's `metric` is below `bar` (CI gating)."""
    if metric not in SELECT_METRICS:
        raise DinctlError(f"unknown metric {metric!r}; expected one of {', '.join(SELECT_METRICS)}")
    low = [m for m in results if getattr(m, metric) < bar]
    if low:
        worst = min(low, key=lambda m: getattr(m, metric))
        label = runs.METRIC_LABELS[metric]
        raise DinctlError(
            f"{label} {getattr(worst, metric):.4f} of {worst.run_dir} is below --fail-under {bar:g}"
            + (f" ({len(low)} runs below)" if len(low) > 1 else "")
        )
