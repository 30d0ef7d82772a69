"""The paper's experiments as resumable run matrices: specs and the runner.

An experiment (Table 3 or Table 4 of the paper) is a list of variants (model, activation,
regulariser) trained under one shared setting (data, recipe, epochs, batch size) for several
seeds. Every run is an ordinary run folder `<out>/<variant>-s<seed>/` (config.json,
checkpoint.pt, best.pt, log.jsonl, predictions.parquet, metrics.json); `<out>/manifest.json`
lists them with their config, seed, status and test metrics and is rewritten atomically after
every run, so an interrupted experiment continues where it stopped.

Torch, the trainer and the evaluator are reached only through a `Backend`, so the matrix,
manifest and resumption logic are tested with a fake one. Tables are built by `dinctl.tables`,
the manifest and run folders are read and written by `dinctl.runs`.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import dinctl.runs
from dinctl.choices import MODEL_LABELS
from dinctl.errors import DinctlError
from dinctl.locks import folder_lock
from dinctl.reporting import SILENT, Reporter, no_bar, no_line
from dinctl.runs import (
    MANIFEST_FILE,
    MANIFEST_VERSION,
    METRIC_KEYS,
    METRIC_LABELS,
    is_experiment,
    read_manifest,
    write_manifest,
)
from dinctl.tables import Group, Table, build_table, write_table
from dinctl.training.config import BUDGET_KEYS, NOT_IDENTITY_KEYS

MANIFEST = MANIFEST_FILE


# --------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class Variant:
    """One row of a paper table: a label and the train settings that make it."""

    key: str  # folder prefix, e.g. "din-dice"
    label: str  # the paper's row name
    settings: tuple[tuple[str, Any], ...]  # TrainConfig overrides, e.g. (("model", "din"),)


@dataclass(frozen=True)
class ExperimentSpec:
    """A paper table: its variants, the RelaImpr baseline and the columns shown."""

    name: str
    title: str
    variants: tuple[Variant, ...]
    baseline: str  # key of the variant RelaImpr is measured against
    row_header: str  # first column's title
    show_logloss: bool

    def variant(self, key: str) -> Variant:
        for v in self.variants:
            if v.key == key:
                return v
        raise KeyError(key)


def _variant(key: str, label: str, model: str, act: str = "prelu", reg: str = "none") -> Variant:
    return Variant(key, label, (("model", model), ("act", act), ("reg", reg)))


_COMPETITORS = ("lr", "base", "wide-deep", "pnn", "deepfm")  # Table 3's rows above DIN, in order

# "Other lines except LR use PReLU as activation function" (the paper's Table 3 footnote).
TABLE3 = ExperimentSpec(
    name="table3",
    title="Table 3: DIN against its competitors "
    "(test AUC = user-weighted AUC, mean ± std over seeds)",
    variants=(
        *(_variant(m, MODEL_LABELS[m], m) for m in _COMPETITORS),
        _variant("din", MODEL_LABELS["din"], "din"),
        _variant("din-dice", "DIN with Dice", "din", act="dice"),
        _variant("din-mba-dice", "DIN with MBA Reg. and Dice", "din", act="dice", reg="mba"),
    ),
    baseline="base",
    row_header="Model",
    show_logloss=False,
)

TABLE4 = ExperimentSpec(
    name="table4",
    title="Table 4: BaseModel under regularisers "
    "(test user-weighted AUC and logloss, mean ± std over seeds)",
    variants=(
        Variant(
            "base-no-ids",
            "Without item ids and Reg.",
            (("model", "base"), ("act", "prelu"), ("reg", "none"), ("use_item_ids", False)),
        ),
        _variant("base-none", "With item ids, without Reg.", "base"),
        _variant("base-dropout", "With item ids and Dropout Reg.", "base", reg="dropout"),
        _variant("base-filter", "With item ids and Filter Reg.", "base", reg="filter"),
        _variant("base-difacto", "With item ids and DiFacto Reg.", "base", reg="difacto"),
        _variant("base-mba", "With item ids and MBA Reg.", "base", reg="mba"),
    ),
    baseline="base-no-ids",
    row_header="BaseModel",
    show_logloss=True,
)

# The paper's Table 5 rows (Alibaba), here on the public Alimama display-ad data (taobao-ad):
# Table 3's, with DIN with MBA Reg. after DIN.
_AFTER_DIN = [v.key for v in TABLE3.variants].index("din") + 1
TABLE5 = replace(
    TABLE3,
    name="table5",
    title="Table 5: models on the Alibaba display-ad data "
    "(test AUC = user-weighted AUC, mean ± std over seeds)",
    variants=(
        *TABLE3.variants[:_AFTER_DIN],
        _variant("din-mba", "DIN with MBA Reg.", "din", reg="mba"),
        *TABLE3.variants[_AFTER_DIN:],
    ),
)

EXPERIMENTS: dict[str, ExperimentSpec] = {
    TABLE3.name: TABLE3,
    TABLE4.name: TABLE4,
    TABLE5.name: TABLE5,
}


# what the experiment sets for each run; a shared training config may not
PER_RUN_KEYS = frozenset({"model", "act", "reg", "use_item_ids", "seed", "data", "out"})


@dataclass(frozen=True)
class ExperimentSettings:
    """What every run of one experiment shares (the same for every variant and seed)."""

    data: Path
    out: Path
    seeds: int = 5
    epochs: int | None = None  # None: the recipe's
    recipe: str | None = None  # None: the trainer's default recipe
    batch_size: int | None = None
    device: str | None = None
    # TrainConfig settings shared by every run (a `--config` TOML), under the flags above
    train: dict[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        for key in self.train:
            if key in PER_RUN_KEYS:
                raise DinctlError(
                    f"the experiment's config sets {key!r}, which the experiment decides",
                    hint="the table's rows set model, act, reg and use_item_ids, and each run "
                    "its seed; --data and --out the rest: remove the key from the file",
                )
        if self.seeds < 1:
            raise DinctlError(f"expected at least 1 seed, got {self.seeds} instead")
        if self.epochs is not None and self.epochs < 1:
            raise DinctlError(f"expected at least 1 epoch, got {self.epochs} instead")


@dataclass(frozen=True)
class RunSpec:
    """One cell of the matrix: a variant at a seed, trained into `<out>/<name>/`."""

    name: str
    variant: Variant
    seed: int
    overrides: dict[str, Any] = field(hash=False)  # the TrainConfig overrides of this run


def plan_runs(spec: ExperimentSpec, settings: ExperimentSettings) -> list[RunSpec]:
    """The run matrix, seed-major: every variant at seed 0, then at seed 1, ...

    Seed-major order gives a complete (one-seed) table as early as possible.
    """
    # absolute, so that a run resumed from another working directory finds its data
    shared: dict[str, Any] = {**settings.train, "data": str(Path(settings.data).resolve())}
    for key in ("epochs", "recipe", "batch_size", "device"):
        value = getattr(settings, key)
        if value is not None:
            shared[key] = value
    runs = []
    for seed in range(settings.seeds):
        for variant in spec.variants:
            name = f"{variant.key}-s{seed}"
            overrides = {
                **shared,
                **dict(variant.settings),
                "seed": seed,
                "out": str(settings.out / name),
            }
            runs.append(RunSpec(name=name, variant=variant, seed=seed, overrides=overrides))
    return runs


# --------------------------------------------------------------------------- backend


class Backend(Protocol):
    """What the experiment needs from the trainer and the evaluator."""

    def dataset_checksum(self, data: Path) -> str:
        """The dataset's checksum from its meta.json (validates the folder)."""
        ...

    def resolve(self, overrides: dict[str, Any]) -> dict[str, Any]:
        """The full resolved train config for these overrides, JSON-ready."""
        ...

    def stored_config(self, run_dir: Path) -> dict[str, Any] | None:
        """The resolved train config a run folder was trained with, or None if it has none."""
        ...

    def training_complete(self, run_dir: Path) -> bool:
        """True when the run trained all its epochs."""
        ...

    def train(self, overrides: dict[str, Any], *, resume: bool, reporter: Reporter) -> None:
        """Train (or resume) the run described by `overrides` into overrides["out"]."""
        ...

    def test_metrics(self, run_dir: Path) -> dict[str, float] | None:
        """The run's metrics.json if it holds test-split metrics, else None."""
        ...

    def evaluate(self, run_dir: Path) -> dict[str, float]:
        """Score the run's best checkpoint on test; write predictions and metrics.json."""
        ...

    def curves(self, run_dirs: list[Path], out: Path) -> Path:
        """Plot per-epoch training loss and validation user-weighted AUC of runs (Fig. 4)."""
        ...


def _same_config(a: dict[str, Any], b: dict[str, Any]) -> bool:
    located = NOT_IDENTITY_KEYS - BUDGET_KEYS  # where/how fast a run ran; not what it is
    strip = lambda d: {k: v for k, v in d.items() if k not in located}  # noqa: E731
    return _jsonable(strip(a)) == _jsonable(strip(b))


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str, sort_keys=True))


# --------------------------------------------------------------------------- running


@dataclass(frozen=True)
class RunOutcome:
    name: str
    status: str  # "trained" | "resumed" | "evaluated" | "reused"
    metrics: dict[str, float]
    seconds: float


@dataclass(frozen=True)
class ExperimentResult:
    spec: ExperimentSpec
    out: Path
    manifest: dict[str, Any]
    outcomes: list[RunOutcome]
    table: Table
    files: dict[str, Path]  # "markdown", "json", "manifest", optionally "curves"


def run_experiment(
    spec: ExperimentSpec,
    settings: ExperimentSettings,
    *,
    backend: Backend | None = None,
    reporter: Reporter = SILENT,
    progress: bool = True,
) -> ExperimentResult:
    """Train and evaluate every run not already done, then write the table (resumable).

    `reporter` hears one line per run; with `progress` also each run's training (its epoch
    lines and bar; its warnings always)."""
    out = Path(settings.out)
    if out.exists() and not out.is_dir():
        raise DinctlError(f"{out} exists and is not a folder", hint="choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    with folder_lock(out, what="experiment"):  # one writer per experiment folder
        backend = backend or TorchBackend(settings.device)
        quiet_training = replace(reporter, line=no_line, bar=no_bar)
        training = reporter if progress else quiet_training
        return _run_experiment(spec, settings, backend, reporter.line, training)


def _run_experiment(
    spec: ExperimentSpec,
    settings: ExperimentSettings,
    backend: Backend,
    log: Callable[[str], None],
    training: Reporter,
) -> ExperimentResult:
    out = Path(settings.out)
    checksum = backend.dataset_checksum(Path(settings.data))
    runs = plan_runs(spec, settings)
    previous = _previous_manifest(out, spec, checksum)
    manifest = _new_manifest(spec, settings, runs, checksum, previous)
    out.mkdir(parents=True, exist_ok=True)
    write_manifest(out, manifest)
    done = sum(r.get("status") == "done" for r in (previous or {}).get("runs", []))
    log(
        f"{spec.name}: {len(spec.variants)} models × {settings.seeds} seed(s) = {len(runs)} runs"
        f" → {out}" + (f" ({done} done before)" if done else "")
    )
    outcomes = []
    width = len(f"[{len(runs)}/{len(runs)}]")  # [10/16] lines up with [9/16]
    for i, run in enumerate(runs):
        entry = manifest["runs"][i]
        started = time.perf_counter()
        config = backend.resolve(run.overrides)
        entry["config"] = config
        status, metrics = _run_one(backend, out / run.name, run, config, entry, manifest, training)
        seconds = time.perf_counter() - started
        entry.update(status="done", metrics=metrics)
        write_manifest(out, manifest)
        outcomes.append(RunOutcome(run.name, status, metrics, seconds))
        tag = f"[{i + 1}/{len(runs)}]"
        log(
            f"{tag:>{width}} {run.name:<18} test {METRIC_LABELS['user_weighted_auc']}"
            f" {metrics['user_weighted_auc']:.4f}  {METRIC_LABELS['global_auc']}"
            f" {metrics['global_auc']:.4f}"
            f"  ({status}, {seconds:.1f} s)"
        )
    table = experiment_table(spec, manifest["runs"], experiment_setting(manifest))
    files = write_table(table, out)
    files["manifest"] = out / MANIFEST
    if len(spec.variants) > 1:
        first_seed = [out / r.name for r in runs if r.seed == 0]
        files["curves"] = backend.curves(first_seed, out / "curves.png")
    return ExperimentResult(spec, out, manifest, outcomes, table, files)


def _new_manifest(
    spec: ExperimentSpec,
    settings: ExperimentSettings,
    runs: list[RunSpec],
    checksum: str,
    previous: dict[str, Any] | None,
) -> dict[str, Any]:
    """The manifest of a (re)started experiment: every run pending."""
    return {
        "format_version": MANIFEST_VERSION,
        "experiment": spec.name,
        "title": spec.title,
        "data": {"path": str(settings.data), "checksum": checksum},
        "settings": {
            "seeds": settings.seeds,
            "epochs": settings.epochs,
            "recipe": settings.recipe,
            "batch_size": settings.batch_size,
            "train": settings.train,
        },
        "created": previous.get("created", dinctl.runs.now()) if previous else dinctl.runs.now(),
        "runs": [
            {
                "name": r.name,
                "variant": r.variant.key,
                "label": r.variant.label,
                "seed": r.seed,
                "status": "pending",
                "config": None,
                "metrics": None,
            }
            for r in runs
        ],
    }


def _previous_manifest(out: Path, spec: ExperimentSpec, checksum: str) -> dict[str, Any] | None:
    if not is_experiment(out):
        if out.is_dir() and any(out.iterdir()):
            raise DinctlError(
                f"{out} is not empty and holds no {MANIFEST}: it is not a dinctl experiment folder",
                hint="choose another --out",
            )
        return None
    manifest = read_manifest(out)
    if manifest.get("experiment") != spec.name:
        raise DinctlError(
            f"{out} holds experiment {manifest.get('experiment')!r}, not {spec.name!r}",
            hint="choose another --out",
        )
    old = manifest.get("data", {}).get("checksum")
    if old != checksum:
        raise DinctlError(
            f"{out} was run on another dataset (checksum {str(old)[:12]}…, "
            f"this one is {checksum[:12]}…)",
            hint="choose another --out, or delete the folder to start over",
        )
    return manifest


def _run_one(
    backend: Backend,
    run_dir: Path,
    run: RunSpec,
    config: dict[str, Any],
    entry: dict[str, Any],
    manifest: dict[str, Any],
    training: Reporter,
) -> tuple[str, dict[str, float]]:
    """Bring one run to done; return how (reused/evaluated/resumed/trained) and its metrics."""
    stored = backend.stored_config(run_dir) if run_dir.exists() else None
    if stored is not None and _same_config(stored, config):
        complete = backend.training_complete(run_dir)
        # test metrics of a run stopped early (scored by hand) are not the experiment's
        metrics = backend.test_metrics(run_dir) if complete else None
        if metrics is not None:
            return "reused", metrics
        if complete:
            return "evaluated", backend.evaluate(run_dir)
        if (run_dir / dinctl.runs.CHECKPOINT_FILE).exists():
            _mark_running(entry, manifest, run_dir.parent)
            backend.train(run.overrides, resume=True, reporter=training)
            return "resumed", backend.evaluate(run_dir)
    if run_dir.exists():
        # Untrained, half-written, or trained under another config: start it over.
        shutil.rmtree(run_dir)
    _mark_running(entry, manifest, run_dir.parent)
    backend.train(run.overrides, resume=False, reporter=training)
    return "trained", backend.evaluate(run_dir)


def _mark_running(entry: dict[str, Any], manifest: dict[str, Any], out: Path) -> None:
    entry["status"] = "running"
    write_manifest(out, manifest)


# --------------------------------------------------------------------------- tables


def experiment_setting(manifest: dict[str, Any]) -> dict[str, Any]:
    """What a table footer names: recipe, epochs, seeds and dataset (resolved where known)."""
    settings = manifest.get("settings", {})
    config = next((r["config"] for r in manifest["runs"] if r.get("config")), None) or {}
    data = manifest.get("data", {})
    return {
        "split": "test",
        "recipe": settings.get("recipe") or config.get("recipe"),
        "epochs": settings.get("epochs") or config.get("epochs"),
        # the shared training config's settings, as the runs resolved them
        **{
            k: config.get(k, v)
            for k, v in (settings.get("train") or {}).items()
            if k not in ("recipe", "epochs")
        },
        "seeds": settings.get("seeds"),
        "dataset": data.get("path"),
        "dataset_checksum": str(data.get("checksum", ""))[:12] or None,
    }


def experiment_table(
    spec: ExperimentSpec, runs: Sequence[dict[str, Any]], setting: dict[str, Any] | None = None
) -> Table:
    """Aggregate finished manifest entries per variant into the paper's table layout."""
    by_variant: dict[str, list[dict[str, Any]]] = {v.key: [] for v in spec.variants}
    for run in runs:
        if run.get("status") == "done" and run.get("metrics") and run["variant"] in by_variant:
            by_variant[run["variant"]].append(dinctl.runs.normalize_metrics(run["metrics"]))
    groups = [
        Group(v.key, (v.label,), by_variant[v.key], {"key": v.key, "label": v.label})
        for v in spec.variants
    ]
    return build_table(
        spec.name,
        spec.title,
        (spec.row_header,),
        groups,
        baseline=spec.baseline,
        baseline_label=spec.variant(spec.baseline).label,
        show_logloss=spec.show_logloss,
        setting=setting,
    )


# --------------------------------------------------------------------------- the real backend


class TorchBackend:
    """The real trainer, evaluator and plots (imported lazily: torch loads only when used)."""

    def __init__(self, device: str | None = None) -> None:
        self.device = device or "auto"  # where runs are scored; training follows the config

    def dataset_checksum(self, data: Path) -> str:
        from dinctl.data.store import read_meta

        return str(read_meta(Path(data))["checksum"])

    def resolve(self, overrides: dict[str, Any]) -> dict[str, Any]:
        from dinctl.training.config import resolve_config

        return resolve_config(overrides).to_dict()

    def stored_config(self, run_dir: Path) -> dict[str, Any] | None:
        return dinctl.runs.stored_train_config(run_dir)

    def training_complete(self, run_dir: Path) -> bool:
        return dinctl.runs.training_complete(run_dir)

    def train(self, overrides: dict[str, Any], *, resume: bool, reporter: Reporter) -> None:
        from dinctl.training.config import resolve_config
        from dinctl.training.loop import resume_config, train

        if resume:
            # the trainer refuses a resume whose settings differ from the run's config.json
            cfg = resume_config(Path(overrides["out"]), {"device": overrides.get("device")})
        else:
            cfg = resolve_config(overrides)
        train(cfg, resume=resume, reporter=reporter)

    def test_metrics(self, run_dir: Path) -> dict[str, float] | None:
        metrics = dinctl.runs.read_metrics(run_dir, "test")
        if metrics is None or any(metrics.get(k) is None for k in METRIC_KEYS):
            return None
        return {k: float(metrics[k]) for k in METRIC_KEYS}

    def evaluate(self, run_dir: Path) -> dict[str, float]:
        from dinctl.evaluation import evaluate_run

        return evaluate_run(run_dir, "test", device=self.device).headline()

    def curves(self, run_dirs: list[Path], out: Path) -> Path:
        from dinctl.plots.curves import curves_plot

        return curves_plot(list(run_dirs), out)
