"""Score trained runs on a split and compare them the way the paper's Table 3 does.

`evaluate_run` loads a run's best checkpoint, scores every row of a split, and writes
`predictions.parquet` (user, item, label, score) and `metrics.json` into the run folder.
`compare_runs` turns several runs' metrics into Table 3 rows with RelaImpr (Eq. 11) against a
baseline.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from dinctl.errors import DinctlError
from dinctl.fsutil import atomic_file
from dinctl.metrics import auc_score, log_loss, rela_impr, user_auc_details

METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.parquet"
METRICS_FORMAT = 1
SPLITS = ("test", "valid")

# names as the paper's Table 3 prints them
MODEL_LABELS = {
    "lr": "LR",
    "base": "BaseModel",
    "wide-deep": "Wide&Deep",
    "pnn": "PNN",
    "deepfm": "DeepFM",
    "din": "DIN",
}
ACT_LABELS = {"prelu": "PReLU", "dice": "Dice", "sigmoid": "Sigmoid"}
REG_LABELS = {
    "none": "–",
    "mba": "MBA",
    "l2": "L2",
    "dropout": "Dropout",
    "filter": "Filter",
    "difacto": "DiFacto",
}
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
    """One run scored on one split: what metrics.json holds."""

    run_dir: Path
    split: str
    auc: float
    gauc: float  # user-weighted AUC, Eq. (10)
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

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": METRICS_FORMAT,
            "split": self.split,
            "auc": self.auc,
            "gauc": self.gauc,
            "users_scored": self.users_scored,
            "users_skipped": self.users_skipped,
            "impressions_scored": self.impressions_scored,
            "logloss": self.logloss,
            "n": self.n,
            "positive_rate": self.positive_rate,
            "dataset": {"path": self.dataset_path, "checksum": self.dataset_checksum},
            "best_epoch": self.best_epoch,
            "config": self.config,
            "evaluated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }


# --------------------------------------------------------------------------- which runs


def _is_run(path: Path) -> bool:
    return (path / "config.json").is_file()


def _run_time(run_dir: Path) -> float:
    """When a run last wrote weights (or, failing that, its config)."""
    times = [
        (run_dir / name).stat().st_mtime
        for name in ("best.pt", "checkpoint.pt", "config.json")
        if (run_dir / name).exists()
    ]
    return max(times, default=0.0)


def latest_run(runs_root: Path) -> Path:
    """The most recently trained run under `runs_root` (runs may sit one folder deeper)."""
    runs_root = Path(runs_root)
    if not runs_root.is_dir():
        raise DinctlError(
            f"no run folder given and {runs_root} does not exist",
            hint="train a model with `dinctl train`, or pass a run folder",
        )
    candidates = [p.parent for p in runs_root.glob("*/config.json")]
    candidates += [p.parent for p in runs_root.glob("*/*/config.json")]
    if not candidates:
        raise DinctlError(
            f"no run folder given and {runs_root} holds no runs",
            hint="train a model with `dinctl train`, or pass a run folder",
        )
    return max(candidates, key=lambda p: (_run_time(p), str(p)))


def expand_runs(paths: Sequence[Path], runs_root: Path = Path("runs")) -> list[Path]:
    """Run folders to score: experiment folders expand to their runs; none given → the latest."""
    if not paths:
        return [latest_run(runs_root)]
    out: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise DinctlError(
                f"run folder {path} does not exist", hint="pass a folder written by `dinctl train`"
            )
        if _is_run(path):
            found = [path]
        elif (path / "manifest.json").is_file():
            from dinctl.experiment import expand_run_dirs

            found = expand_run_dirs([path])
            if not found:
                raise DinctlError(
                    f"experiment folder {path} has no finished runs yet",
                    hint="run `dinctl experiment table3` or `table4` first (it resumes)",
                )
        elif path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_dir() and _is_run(p))
        else:
            found = []
        if not found:
            raise DinctlError(
                f"{path} is neither a run folder nor an experiment folder holding runs",
                hint="pass a folder written by `dinctl train` or `dinctl experiment`",
            )
        out += [p for p in found if p not in out]
    return out


def run_dataset_checksum(run_dir: Path) -> str:
    """The dataset checksum a run was trained on (from its config.json)."""
    from dinctl.training.checkpoint import read_run_config

    return read_run_config(run_dir).dataset_checksum


def check_same_dataset(run_dirs: Sequence[Path]) -> None:
    """Refuse to compare runs trained on different datasets."""
    first: tuple[Path, str] | None = None
    for run_dir in run_dirs:
        checksum = run_dataset_checksum(run_dir)
        if first is None:
            first = (run_dir, checksum)
        elif checksum != first[1]:
            raise DinctlError(
                f"{first[0]} and {run_dir} were trained on different datasets "
                f"(checksum {first[1][:12]} vs {checksum[:12]})",
                hint="compare runs of one dataset; evaluate the others separately",
            )


# --------------------------------------------------------------------------- scoring


def score_split(
    model: Any, dataset: Any, split: str, max_len: int, batch_size: int, device: Any
) -> np.ndarray:
    """Click probabilities (N,) float32 for every row of `split`, in file order."""
    import torch

    from dinctl.data.batching import SplitTensors, WindowGatherer
    from dinctl.training.distributed import DistInfo
    from dinctl.training.loop import predict, to_device

    rows = SplitTensors(dataset.split(split))
    gatherer = WindowGatherer(dataset, max_len)
    to_device(rows, gatherer, torch.device(device))  # gather batches where the model is
    with torch.inference_mode():
        prob = predict(model, rows, gatherer, batch_size, DistInfo(), amp=False)  # (N,)
    return prob.numpy().astype(np.float32, copy=False)


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


def evaluate_run(
    run_dir: Path | str,
    split: str = "test",
    *,
    device: str = "cpu",
    batch_size: int | None = None,
) -> RunMetrics:
    """Score a run's best checkpoint on `split`; write predictions.parquet and metrics.json."""
    import polars as pl

    from dinctl.data.store import load_dataset
    from dinctl.training.checkpoint import load_run
    from dinctl.training.loop import resolve_device

    if split not in SPLITS:
        raise DinctlError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    run_dir = Path(run_dir)
    dev = resolve_device(device)
    run = load_run(run_dir, device=dev)
    ds = load_dataset(run.dataset_path)
    if ds.checksum != run.dataset_checksum:
        raise DinctlError(
            f"the dataset {run.dataset_path} changed since {run_dir} was trained "
            f"(checksum {ds.checksum[:12]} vs {run.dataset_checksum[:12]})",
            hint="evaluate with the dataset the run was trained on",
        )
    rows = ds.split(split)
    labels = rows.label
    _check_split(labels, split, run.dataset_path)
    prob = score_split(
        run.model, ds, split, run.config.max_len, batch_size or run.config.eval_batch_size, dev
    )
    details = user_auc_details(labels, prob, rows.user)
    train_cfg = asdict(run.config)
    metrics = RunMetrics(
        run_dir=run_dir,
        split=split,
        auc=auc_score(labels, prob),
        gauc=details.score,
        users_scored=details.users_scored,
        users_skipped=details.users_skipped,
        impressions_scored=details.impressions_scored,
        logloss=log_loss(labels, prob),
        n=int(labels.shape[0]),
        positive_rate=float(labels.mean()),
        dataset_path=str(run.dataset_path),
        dataset_checksum=run.dataset_checksum,
        best_epoch=int(run.meta.get("best_epoch", 0)),
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
    with atomic_file(run_dir / PREDICTIONS_FILE) as tmp:
        predictions.write_parquet(tmp)
    with atomic_file(run_dir / METRICS_FILE) as tmp:
        tmp.write_text(json.dumps(metrics.to_json(), indent=2) + "\n")
    return metrics


def read_metrics(run_dir: Path | str, split: str = "test") -> dict[str, Any] | None:
    """A run's metrics.json when it holds metrics of `split`, else None."""
    path = Path(run_dir) / METRICS_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or data.get("split") != split:
        return None
    return data


# --------------------------------------------------------------------------- Table 3


@dataclass(frozen=True)
class TableRow:
    """One row of the comparison table (and of `dinctl evaluate --json`)."""

    run: str
    model: str
    act: str
    reg: str
    auc: float
    gauc: float
    logloss: float
    rela_impr: float | None  # percent, Eq. (11); None without a baseline
    users_scored: int
    users_skipped: int
    n: int
    positive_rate: float
    split: str
    dataset_checksum: str
    metrics_file: str
    predictions_file: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def cells(self) -> list[str]:
        impr = "–" if self.rela_impr is None else f"{self.rela_impr:+.2f}%"
        return [
            Path(self.run).name,
            MODEL_LABELS.get(self.model, self.model),
            ACT_LABELS.get(self.act, self.act),
            REG_LABELS.get(self.reg, self.reg),
            f"{self.auc:.4f}",
            f"{self.gauc:.4f}",
            f"{self.logloss:.4f}",
            impr,
        ]


TABLE_HEADER = [
    "run",
    "model",
    "activation",
    "regulariser",
    "AUC",
    "user-weighted AUC",
    "logloss",
    "RelaImpr",
]


@dataclass(frozen=True)
class Comparison:
    """Table 3 rows plus the baseline they are relative to."""

    rows: list[TableRow]
    baseline_run: str | None
    baseline_auc: float | None

    def to_json(self) -> dict[str, Any]:
        split = self.rows[0].split if self.rows else None
        return {
            "split": split,
            "baseline": (
                None
                if self.baseline_run is None
                else {"run": self.baseline_run, "auc": self.baseline_auc}
            ),
            "runs": [r.to_json() for r in self.rows],
        }


def compare_runs(results: Sequence[RunMetrics], baseline: RunMetrics | None) -> Comparison:
    """Table 3: one row per run, RelaImpr (Eq. 11) against `baseline` when there is one."""
    base_auc = baseline.auc if baseline is not None else None
    rows = []
    for m in results:
        impr = None
        if base_auc is not None and base_auc != 0.5 and math.isfinite(base_auc):
            impr = rela_impr(m.auc, base_auc)
        rows.append(
            TableRow(
                run=str(m.run_dir),
                model=m.model,
                act=str(m.config.get("act", "?")),
                reg=str(m.config.get("reg", "?")),
                auc=m.auc,
                gauc=m.gauc,
                logloss=m.logloss,
                rela_impr=impr,
                users_scored=m.users_scored,
                users_skipped=m.users_skipped,
                n=m.n,
                positive_rate=m.positive_rate,
                split=m.split,
                dataset_checksum=m.dataset_checksum,
                metrics_file=str(m.run_dir / METRICS_FILE),
                predictions_file=str(m.run_dir / PREDICTIONS_FILE),
            )
        )
    return Comparison(
        rows=rows,
        baseline_run=None if baseline is None else str(baseline.run_dir),
        baseline_auc=base_auc,
    )


@dataclass(frozen=True)
class EvaluationResult:
    comparison: Comparison
    seconds: float


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
    run_dirs = expand_runs(paths, runs_root)
    all_dirs = list(run_dirs)
    if baseline is not None:
        baseline = Path(baseline)
        if not _is_run(baseline):
            raise DinctlError(
                f"baseline {baseline} is not a run folder",
                hint="pass a folder written by `dinctl train` to --baseline",
            )
        if baseline not in all_dirs:
            all_dirs.append(baseline)
    check_same_dataset(all_dirs)
    scored = {d: evaluate_run(d, split, device=device) for d in all_dirs}
    results = [scored[d] for d in run_dirs]
    if baseline is not None:
        base: RunMetrics | None = scored[baseline]
    else:
        base = next((m for m in results if m.model == "base"), None)
    return EvaluationResult(compare_runs(results, base), time.perf_counter() - started)


def check_fail_under(comparison: Comparison, bar: float) -> None:
    """Raise a one-line error when any run's AUC is below `bar` (CI gating)."""
    low = [r for r in comparison.rows if r.auc < bar]
    if low:
        worst = min(low, key=lambda r: r.auc)
        raise DinctlError(
            f"AUC {worst.auc:.4f} of {worst.run} is below --fail-under {bar:g}"
            + (f" ({len(low)} runs below)" if len(low) > 1 else "")
        )
