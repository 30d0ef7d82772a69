"""The run folder's on-disk format, as `data/store.py` is the dataset's (no torch here).

A run folder (written by `dinctl train`, scored by `dinctl evaluate`):

    <run>/config.json            resolved train config, model config, dataset path + checksum
    <run>/checkpoint.pt          latest resumable state (weights, optimiser, RNG, epoch)
    <run>/best.pt                weights of the best validation epoch
    <run>/log.jsonl              one JSON object per line: step, epoch and validation records
    <run>/metrics.json           `dinctl evaluate` on the test split (metrics-valid.json: valid)
    <run>/predictions.parquet    user, item, label, score of that split (predictions-valid.parquet)
    <run>/plots/                 figures of `dinctl visualize`

An experiment folder holds run folders `<variant>-s<seed>/` plus `manifest.json` (see
`read_manifest`). This module alone spells these names, reads config.json and log.jsonl, turns
a path into a list of runs and finds the latest run. Opening a run's weights for scoring lives
in `dinctl.inference` (it needs torch).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from dinctl.choices import SPLITS
from dinctl.errors import DinctlError
from dinctl.fsutil import atomic_file, read_json

CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoint.pt"
BEST_FILE = "best.pt"
LOG_FILE = "log.jsonl"
PLOTS_DIR = "plots"
MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 1

# The paper's "AUC" is the user-weighted AUC of Eq. (10); the plain one is `global_auc`.
HEADLINE_METRIC = "user_weighted_auc"
METRIC_KEYS = ("user_weighted_auc", "global_auc", "logloss")
METRIC_LABELS = {
    "user_weighted_auc": "AUC (user-weighted, Eq. 10)",
    "global_auc": "global AUC",
    "logloss": "logloss",
}
# keys of metrics.json / manifest metrics before the rename, still read from old run folders
OLD_METRIC_KEYS = {"gauc": "user_weighted_auc", "auc": "global_auc"}
OLD_LOG_KEYS = {"valid_gauc": "valid_user_weighted_auc", "valid_auc": "valid_global_auc"}


def valid_key(metric: str) -> str:
    """The log.jsonl / best.pt key of a validation metric: `valid_<metric>`."""
    return f"valid_{metric}"


# the keys of an epoch line of log.jsonl
TRAIN_LOSS = "train_loss"
VALID_USER_WEIGHTED_AUC = valid_key("user_weighted_auc")
VALID_GLOBAL_AUC = valid_key("global_auc")
VALID_LOGLOSS = valid_key("logloss")
EPOCH_SECONDS = "seconds"

RUN_HINT = "pass a folder written by `dinctl train` or `dinctl experiment`"


def metrics_file(split: str) -> str:
    """metrics.json for test (the name every earlier version used), metrics-<split>.json else."""
    return "metrics.json" if split == "test" else f"metrics-{split}.json"


def predictions_file(split: str) -> str:
    """predictions.parquet for test, predictions-<split>.parquet for the other splits."""
    return "predictions.parquet" if split == "test" else f"predictions-{split}.parquet"


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise DinctlError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return split


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_json(path: Path, data: Any) -> Path:
    """Write a JSON file of the run/experiment folder atomically (temp file + rename)."""
    with atomic_file(Path(path)) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return Path(path)


# --------------------------------------------------------------------------- metrics keys


def _renamed(data: dict[str, Any], renames: dict[str, str]) -> dict[str, Any]:
    out = dict(data)
    for old, new in renames.items():
        if old in out:
            out.setdefault(new, out.pop(old))
    return out


def normalize_metrics(data: dict[str, Any]) -> dict[str, Any]:
    """A metrics dict with today's keys (old `auc` → `global_auc`, `gauc` → `user_weighted_auc`)."""
    return _renamed(data, OLD_METRIC_KEYS)


def normalize_log_record(record: dict[str, Any]) -> dict[str, Any]:
    """A log.jsonl record with today's keys: old `valid_auc`/`valid_gauc` renamed."""
    return _renamed(record, OLD_LOG_KEYS)


def read_metrics(run_dir: Path | str, split: str = "test") -> dict[str, Any] | None:
    """A run's metrics of `split` (today's keys), or None when it has not been scored on it.

    An old run folder may hold valid-split metrics in metrics.json; those are found too.
    """
    run_dir = Path(run_dir)
    for name in dict.fromkeys((metrics_file(split), metrics_file("test"))):
        try:
            data = json.loads((run_dir / name).read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(data, dict) and data.get("split") == split:
            return normalize_metrics(data)
    return None


# --------------------------------------------------------------------------- config.json


def is_run(path: Path) -> bool:
    """True when `path` is a run folder (it holds a config.json)."""
    return (Path(path) / CONFIG_FILE).is_file()


def read_config(run_dir: Path | str) -> dict[str, Any]:
    """config.json of a run folder as a dict, with one-line errors (the only reader of it)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DinctlError(f"run folder {run_dir} does not exist", hint=RUN_HINT)
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise DinctlError(f"{run_dir} is not a run folder: {path} does not exist", hint=RUN_HINT)
    data = read_json(path, hint="the run folder was damaged; train it again")
    if not isinstance(data, dict) or not isinstance(data.get("train"), dict):
        raise DinctlError(
            f"{path} has no `train` section", hint="the run was written by another dinctl version"
        )
    return data


def stored_train_config(run_dir: Path | str) -> dict[str, Any] | None:
    """The resolved train config a run folder was trained with, or None when it has none."""
    try:
        return dict(read_config(run_dir)["train"])
    except DinctlError:
        return None


def dataset_checksum_of(run_dir: Path | str) -> str:
    """The checksum of the dataset a run was trained on."""
    config = read_config(run_dir)
    dataset = config.get("dataset")
    if not isinstance(dataset, dict) or "checksum" not in dataset:
        raise DinctlError(
            f"{Path(run_dir) / CONFIG_FILE} lacks the entry 'dataset.checksum'",
            hint="the run was written by another dinctl version",
        )
    return str(dataset["checksum"])


def dataset_label(meta: dict[str, Any], path: Path | str) -> str:
    """A short human name for a dataset: its meta `dataset` (and category), else the folder."""
    name = meta.get("dataset")
    if not name:
        return Path(path).name
    extra = meta.get("category") or meta.get("variant")
    return f"{name} ({extra})" if extra and str(extra) not in str(name) else str(name)


def run_labels(run_dir: Path | str) -> tuple[str, str]:
    """(model name, dataset label) of a run, '?' for what its config.json does not say."""
    try:
        config = read_config(run_dir)
    except DinctlError:
        return "?", "?"
    model = config.get("model")
    name = str(model.get("model", "?")) if isinstance(model, dict) else "?"
    ds = config.get("dataset")
    if not isinstance(ds, dict):
        return name, "?"
    return name, dataset_label(ds.get("meta") or {}, str(ds.get("path", "?")))


def check_same_dataset(run_dirs: Sequence[Path]) -> None:
    """Refuse to compare runs trained on different datasets."""
    first: tuple[Path, str] | None = None
    for run_dir in run_dirs:
        checksum = dataset_checksum_of(run_dir)
        if first is None:
            first = (run_dir, checksum)
        elif checksum != first[1]:
            raise DinctlError(
                f"{first[0]} and {run_dir} were trained on different datasets "
                f"(checksum {first[1][:12]} vs {checksum[:12]})",
                hint="compare runs of one dataset; evaluate the others separately",
            )


# --------------------------------------------------------------------------- log.jsonl


def _finite(value: Any) -> float | None:
    """A log number, or None when absent or not finite (NaN is not JSON)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _log_lines(run_dir: Path | str, strict: bool) -> list[tuple[int, dict[str, Any]]]:
    """(file line number, record) of every record of `<run>/log.jsonl`, today's keys."""
    path = Path(run_dir) / LOG_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        if not strict:
            return []
        raise DinctlError(
            f"run {run_dir} has no log: {path} does not exist",
            hint="train it with `dinctl train` (it writes log.jsonl as it goes)",
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise DinctlError(f"{path} cannot be read ({type(err).__name__})") from None
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict) or not isinstance(record.get("event", ""), str):
            if strict:
                raise DinctlError(
                    f"{path}:{n}: expected a JSON object, got {line.strip()[:40]!r}",
                    hint="the log was damaged; retrain the run",
                )
            continue
        out.append((n, normalize_log_record(record)))
    return out


def read_log(run_dir: Path | str, *, strict: bool = True) -> list[dict[str, Any]]:
    """Every record of `<run>/log.jsonl` (today's keys).

    strict: a malformed line is a one-line error naming file:line; otherwise it is skipped (a
    line cut by a kill, which the trainer rewrites on resume). A missing log is [] unless strict.
    """
    return [record for _, record in _log_lines(run_dir, strict)]


@dataclass(frozen=True)
class EpochRecord:
    """One `{"event": "epoch"}` line of log.jsonl, numbers checked."""

    epoch: int
    train_loss: float | None
    valid_user_weighted_auc: float | None
    valid_global_auc: float | None
    valid_logloss: float | None


def epoch_records(run_dir: Path | str, *, strict: bool = True) -> list[EpochRecord]:
    """The epoch lines of a run's log.jsonl, in order."""
    path = Path(run_dir) / LOG_FILE
    out: list[EpochRecord] = []
    for n, rec in _log_lines(run_dir, strict):
        if rec.get("event") != "epoch":
            continue
        epoch = rec.get("epoch", len(out) + 1)
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 1:
            if not strict:
                continue
            raise DinctlError(
                f"{path}:{n}: expected a positive integer epoch, got {epoch!r}",
                hint="the log was damaged; retrain the run",
            )
        out.append(
            EpochRecord(
                epoch=epoch,
                train_loss=_finite(rec.get(TRAIN_LOSS)),
                valid_user_weighted_auc=_finite(rec.get(VALID_USER_WEIGHTED_AUC)),
                valid_global_auc=_finite(rec.get(VALID_GLOBAL_AUC)),
                valid_logloss=_finite(rec.get(VALID_LOGLOSS)),
            )
        )
    return out


def last_logged_epoch(run_dir: Path | str) -> int:
    """The last epoch a run's log.jsonl records (0 if none; torn lines are skipped)."""
    records = epoch_records(run_dir, strict=False)
    return records[-1].epoch if records else 0


def training_complete(run_dir: Path | str) -> bool:
    """True when the run has best weights and logged all the epochs of its config."""
    config = stored_train_config(run_dir)
    if config is None or not (Path(run_dir) / BEST_FILE).exists():
        return False
    try:
        epochs = int(config["epochs"])
    except (KeyError, TypeError, ValueError):
        return False
    return last_logged_epoch(run_dir) >= epochs or stopped_early(run_dir)


def stopped_early(run_dir: Path | str) -> bool:
    """True when log.jsonl records an early stop (patience ran out before the last epoch)."""
    return any(rec.get("event") == "early_stop" for _, rec in _log_lines(run_dir, False))


# --------------------------------------------------------------------------- manifest.json


def is_experiment(path: Path) -> bool:
    """True when `path` is an experiment folder (it holds a manifest.json)."""
    return (Path(path) / MANIFEST_FILE).is_file()


def read_manifest(path: Path | str) -> dict[str, Any]:
    """Read and validate `<experiment>/manifest.json` (old metrics keys renamed)."""
    path = Path(path)
    file = path / MANIFEST_FILE if path.is_dir() else path
    if not file.exists():
        raise DinctlError(
            f"{file} does not exist: {file.parent} is not a dinctl experiment folder",
            hint="run `dinctl experiment table3` or `table4` first",
        )
    manifest = read_json(file, hint="delete the experiment folder and run the experiment again")
    if not isinstance(manifest, dict) or manifest.get("format_version") != MANIFEST_VERSION:
        got = manifest.get("format_version") if isinstance(manifest, dict) else None
        raise DinctlError(
            f"{file} has format_version {got!r}, expected {MANIFEST_VERSION}",
            hint="it was written by another dinctl version; use another --out",
        )
    runs = manifest.get("runs")
    if not isinstance(runs, list) or not all(
        isinstance(r, dict) and isinstance(r.get("name"), str) for r in runs
    ):
        raise DinctlError(
            f"{file} has no valid `runs` list",
            hint="delete the experiment folder and run the experiment again",
        )
    for run in runs:
        if isinstance(run.get("metrics"), dict):
            run["metrics"] = normalize_metrics(run["metrics"])
    return manifest


def write_manifest(out: Path, manifest: dict[str, Any]) -> Path:
    """Write `<out>/manifest.json` atomically, stamping `updated`."""
    manifest["updated"] = now()
    return write_json(Path(out) / MANIFEST_FILE, manifest)


# --------------------------------------------------------------------------- path → runs

Need = Literal["weights", "log"]


def _usable(run_dir: Path, need: Need, entry: dict[str, Any] | None = None) -> bool:
    if need == "log":
        return (run_dir / LOG_FILE).exists()
    done = entry is not None and entry.get("status") == "done"
    return done or (run_dir / BEST_FILE).exists()


def _experiment_runs(path: Path, need: Need) -> list[Path]:
    manifest = read_manifest(path)
    found = [
        path / run["name"] for run in manifest["runs"] if _usable(path / run["name"], need, run)
    ]
    if not found:
        what = "finished runs" if need == "weights" else f"run with a {LOG_FILE}"
        raise DinctlError(
            f"experiment folder {path} has no {what} yet",
            hint="run `dinctl experiment table3` or `table4` first (it resumes)",
        )
    return found


def runs_in(path: Path | str, need: Need = "weights") -> list[Path]:
    """The runs a path names: a run folder, an experiment folder (manifest order, runs that have
    what `need` asks for), or a folder of run folders (sorted)."""
    path = Path(path)
    if not path.exists():
        raise DinctlError(f"run folder {path} does not exist", hint=RUN_HINT)
    if is_run(path):
        return [path]
    if is_experiment(path):
        return _experiment_runs(path, need)
    found = sorted(p for p in path.iterdir() if p.is_dir() and is_run(p)) if path.is_dir() else []
    if not found:
        raise DinctlError(
            f"{path} is neither a run folder nor an experiment folder holding runs", hint=RUN_HINT
        )
    return found


def expand_runs(
    paths: Sequence[Path | str], runs_root: Path | None = None, need: Need = "weights"
) -> list[Path]:
    """Run folders of every path named (duplicates dropped); none named → the latest run."""
    if not paths:
        if runs_root is None:
            raise DinctlError("no run folder given", hint="pass at least one run folder")
        return [latest_run(runs_root)]
    out: list[Path] = []
    for path in paths:
        out += [p for p in runs_in(path, need) if p not in out]
    return out


def _run_time(run_dir: Path) -> float:
    """When a run last wrote weights (or, failing that, its config)."""
    times = [
        (run_dir / name).stat().st_mtime
        for name in (BEST_FILE, CHECKPOINT_FILE, CONFIG_FILE)
        if (run_dir / name).exists()
    ]
    return max(times, default=0.0)


def latest_run(runs_root: Path | str) -> Path:
    """The most recently trained run under `runs_root` (runs may sit one folder deeper)."""
    runs_root = Path(runs_root)
    hint = "train a model with `dinctl train`, or pass a run folder"
    if not runs_root.is_dir():
        raise DinctlError(f"no run folder given and {runs_root} does not exist", hint=hint)
    candidates = [p.parent for p in runs_root.glob(f"*/{CONFIG_FILE}")]
    candidates += [p.parent for p in runs_root.glob(f"*/*/{CONFIG_FILE}")]
    if not candidates:
        raise DinctlError(f"no run folder given and {runs_root} holds no runs", hint=hint)
    return max(candidates, key=lambda p: (_run_time(p), str(p)))
