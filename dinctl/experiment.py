"""The paper's experiments as resumable run matrices, and the quickstart pipeline.

An experiment (Table 3 or Table 4 of the paper) is a list of variants (model, activation,
regulariser) trained under one shared setting (data, recipe, epochs, batch size) for several
seeds. Every run is an ordinary run folder `<out>/<variant>-s<seed>/` (config.json,
checkpoint.pt, best.pt, log.jsonl, predictions.parquet, metrics.json); `<out>/manifest.json`
lists them with their config, seed, status and test metrics and is rewritten atomically after
every run, so an interrupted experiment continues where it stopped.

Torch, the trainer and the evaluator are reached only through a `Backend`, so the matrix,
manifest, resumption and table logic are tested with a fake one.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from dinctl.errors import DinctlError
from dinctl.fsutil import atomic_file, read_json

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
METRIC_KEYS = ("auc", "gauc", "logloss")


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


# "Other lines except LR use PReLU as activation function" (the paper's Table 3 footnote).
TABLE3 = ExperimentSpec(
    name="table3",
    title="Table 3: DIN against its competitors (test AUC, mean ± std over seeds)",
    variants=(
        _variant("lr", "LR", "lr"),
        _variant("base", "BaseModel", "base"),
        _variant("wide-deep", "Wide&Deep", "wide-deep"),
        _variant("pnn", "PNN", "pnn"),
        _variant("deepfm", "DeepFM", "deepfm"),
        _variant("din", "DIN", "din"),
        _variant("din-dice", "DIN with Dice", "din", act="dice"),
        _variant("din-mba-dice", "DIN with MBA Reg. and Dice", "din", act="dice", reg="mba"),
    ),
    baseline="base",
    row_header="Model",
    show_logloss=False,
)

TABLE4 = ExperimentSpec(
    name="table4",
    title="Table 4: BaseModel under regularisers (test AUC and logloss, mean ± std over seeds)",
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

EXPERIMENTS: dict[str, ExperimentSpec] = {TABLE3.name: TABLE3, TABLE4.name: TABLE4}


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

    def __post_init__(self) -> None:
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
    shared: dict[str, Any] = {"data": str(Path(settings.data).resolve())}
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

    def train(self, overrides: dict[str, Any], *, resume: bool, progress: bool) -> None:
        """Train (or resume) the run described by `overrides` into overrides["out"]."""
        ...

    def test_metrics(self, run_dir: Path) -> dict[str, float] | None:
        """The run's metrics.json if it holds test-split metrics, else None."""
        ...

    def evaluate(self, run_dir: Path) -> dict[str, float]:
        """Score the run's best checkpoint on test; write predictions and metrics.json."""
        ...

    def curves(self, run_dirs: list[Path], out: Path) -> Path:
        """Plot per-epoch training loss and validation AUC of several runs (Fig. 4)."""
        ...


# Keys of a resolved config that locate or display a run rather than define it: a run moved to
# another folder, or resumed on another device, is still the same run.
# (The trainer's own resumable settings, except epochs; the data is matched by checksum.)
LOCATION_KEYS = frozenset(
    {"out", "data", "device", "amp", "compile", "log_every", "eval_batch_size"}
)


def _same_config(a: dict[str, Any], b: dict[str, Any]) -> bool:
    strip = lambda d: {k: v for k, v in d.items() if k not in LOCATION_KEYS}  # noqa: E731
    return _jsonable(strip(a)) == _jsonable(strip(b))


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str, sort_keys=True))


# --------------------------------------------------------------------------- manifest


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_manifest(path: Path) -> dict[str, Any]:
    """Read and validate `<experiment>/manifest.json`."""
    path = Path(path)
    file = path / MANIFEST if path.is_dir() else path
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
    return manifest


def write_manifest(out: Path, manifest: dict[str, Any]) -> Path:
    """Write the manifest atomically (temp file + rename)."""
    path = Path(out) / MANIFEST
    manifest["updated"] = _now()
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(_jsonable(manifest), indent=2) + "\n")
    return path


def is_experiment_dir(path: Path) -> bool:
    """True when `path` is an experiment folder (it holds a manifest.json)."""
    return (Path(path) / MANIFEST).is_file()


def expand_run_dirs(paths: Sequence[Path], *, finished_only: bool = True) -> list[Path]:
    """Replace each experiment folder by its run folders (manifest order); keep other paths.

    For `dinctl evaluate` / `dinctl visualize curves`, which take run folders.
    """
    out: list[Path] = []
    for path in map(Path, paths):
        if not is_experiment_dir(path):
            out.append(path)
            continue
        manifest = read_manifest(path)
        for run in manifest["runs"]:
            run_dir = path / run["name"]
            if not finished_only or run.get("status") == "done" or (run_dir / "best.pt").exists():
                out.append(run_dir)
    return out


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


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_experiment(
    spec: ExperimentSpec,
    settings: ExperimentSettings,
    *,
    backend: Backend | None = None,
    progress: bool = True,
    log: Callable[[str], None] = _stderr,
) -> ExperimentResult:
    """Train and evaluate every run not already done, then write the table (resumable)."""
    backend = backend or TorchBackend(settings.device)
    out = Path(settings.out)
    if out.exists() and not out.is_dir():
        raise DinctlError(f"{out} exists and is not a folder", hint="choose another --out")
    checksum = backend.dataset_checksum(Path(settings.data))
    runs = plan_runs(spec, settings)
    previous = _previous_manifest(out, spec, checksum)
    manifest: dict[str, Any] = {
        "format_version": MANIFEST_VERSION,
        "experiment": spec.name,
        "title": spec.title,
        "data": {"path": str(settings.data), "checksum": checksum},
        "settings": {
            "seeds": settings.seeds,
            "epochs": settings.epochs,
            "recipe": settings.recipe,
            "batch_size": settings.batch_size,
        },
        "created": previous.get("created", _now()) if previous else _now(),
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
    out.mkdir(parents=True, exist_ok=True)
    write_manifest(out, manifest)
    done = sum(r.get("status") == "done" for r in (previous or {}).get("runs", []))
    log(
        f"{spec.name}: {len(spec.variants)} models × {settings.seeds} seed(s) = {len(runs)} runs"
        f" → {out}" + (f" ({done} done before)" if done else "")
    )
    outcomes = []
    for i, run in enumerate(runs):
        entry = manifest["runs"][i]
        started = time.perf_counter()
        config = backend.resolve(run.overrides)
        entry["config"] = config
        status, metrics = _run_one(backend, out / run.name, run, config, entry, manifest, progress)
        seconds = time.perf_counter() - started
        entry.update(status="done", metrics=metrics)
        write_manifest(out, manifest)
        outcomes.append(RunOutcome(run.name, status, metrics, seconds))
        log(
            f"[{i + 1}/{len(runs)}] {run.name:<18} test AUC {metrics['auc']:.4f}"
            f"  ({status}, {seconds:.1f} s)"
        )
    table = build_table(spec, manifest["runs"])
    files = write_tables(table, out)
    files["manifest"] = out / MANIFEST
    if len(spec.variants) > 1:
        first_seed = [out / r.name for r in runs if r.seed == 0]
        files["curves"] = backend.curves(first_seed, out / "curves.png")
    return ExperimentResult(spec, out, manifest, outcomes, table, files)


def _previous_manifest(out: Path, spec: ExperimentSpec, checksum: str) -> dict[str, Any] | None:
    if not is_experiment_dir(out):
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
    progress: bool,
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
        if (run_dir / "checkpoint.pt").exists():
            _mark_running(entry, manifest, run_dir.parent)
            backend.train(run.overrides, resume=True, progress=progress)
            return "resumed", backend.evaluate(run_dir)
    if run_dir.exists():
        # Untrained, half-written, or trained under another config: start it over.
        shutil.rmtree(run_dir)
    _mark_running(entry, manifest, run_dir.parent)
    backend.train(run.overrides, resume=False, progress=progress)
    return "trained", backend.evaluate(run_dir)


def _mark_running(entry: dict[str, Any], manifest: dict[str, Any], out: Path) -> None:
    entry["status"] = "running"
    write_manifest(out, manifest)


# --------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation (ddof=1; None with one seed) over seeds."""

    mean: float
    std: float | None
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        n = len(values)
        mean = math.fsum(values) / n
        if n < 2:
            return cls(mean, None, n)
        var = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
        return cls(mean, math.sqrt(var), n)

    def text(self, digits: int = 4) -> str:
        if self.std is None:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"


@dataclass(frozen=True)
class TableRow:
    key: str
    label: str
    seeds: int
    auc: Stat
    gauc: Stat | None
    logloss: Stat
    rela_impr: float | None  # percent; None while the baseline has no finished run


@dataclass(frozen=True)
class Table:
    name: str
    title: str
    baseline: str
    baseline_label: str
    row_header: str
    show_logloss: bool
    rows: tuple[TableRow, ...]

    def header(self) -> list[str]:
        cols = [self.row_header, "AUC", "RelaImpr"]
        return cols + (["Logloss"] if self.show_logloss else [])

    def cells(self) -> list[list[str]]:
        out = []
        for row in self.rows:
            rela = "—" if row.rela_impr is None else f"{row.rela_impr:.2f}%"
            cells = [row.label, row.auc.text(), rela]
            if self.show_logloss:
                cells.append(row.logloss.text())
            out.append(cells)
        return out

    def markdown(self) -> str:
        header = self.header()
        lines = [
            f"**{self.title}**",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|",
        ]
        lines += ["| " + " | ".join(c) + " |" for c in self.cells()]
        seeds = sorted({r.seeds for r in self.rows})
        lines += [
            "",
            f"AUC is the test AUC of each run's best-validation-AUC epoch, mean ± sample std "
            f"(ddof=1) over {'/'.join(map(str, seeds))} seed(s). RelaImpr (Eq. 11) is computed "
            f"from the mean AUCs against {self.baseline_label}.",
        ]
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict[str, Any]:
        def stat(s: Stat | None) -> dict[str, Any] | None:
            return None if s is None else {"mean": s.mean, "std": s.std, "n": s.n}

        return {
            "experiment": self.name,
            "title": self.title,
            "baseline": self.baseline,
            "rows": [
                {
                    "key": r.key,
                    "label": r.label,
                    "seeds": r.seeds,
                    "auc": stat(r.auc),
                    "gauc": stat(r.gauc),
                    "logloss": stat(r.logloss),
                    "rela_impr": r.rela_impr,
                }
                for r in self.rows
            ],
        }


def rela_impr(auc: float, base_auc: float) -> float:
    """RelaImpr, Eq. (11), in percent."""
    from dinctl.metrics import rela_impr as _rela_impr

    return float(_rela_impr(auc, base_auc))


def build_table(spec: ExperimentSpec, runs: Sequence[dict[str, Any]]) -> Table:
    """Aggregate finished manifest entries per variant into the paper's table layout."""
    by_variant: dict[str, list[dict[str, float]]] = {v.key: [] for v in spec.variants}
    for run in runs:
        if run.get("status") == "done" and run.get("metrics") and run["variant"] in by_variant:
            by_variant[run["variant"]].append(run["metrics"])
    stats = {}
    for key, metrics in by_variant.items():
        if metrics:
            gaucs = [m["gauc"] for m in metrics if m.get("gauc") is not None]
            stats[key] = (
                Stat.of([m["auc"] for m in metrics]),
                Stat.of(gaucs) if len(gaucs) == len(metrics) else None,
                Stat.of([m["logloss"] for m in metrics]),
                len(metrics),
            )
    base = stats.get(spec.baseline)
    rows = []
    for v in spec.variants:
        if v.key not in stats:
            continue
        auc, gauc, logloss, n = stats[v.key]
        # RelaImpr is undefined against a baseline at exactly chance level.
        rela = None if base is None or base[0].mean == 0.5 else rela_impr(auc.mean, base[0].mean)
        rows.append(TableRow(v.key, v.label, n, auc, gauc, logloss, rela))
    return Table(
        spec.name,
        spec.title,
        spec.baseline,
        spec.variant(spec.baseline).label,
        spec.row_header,
        spec.show_logloss,
        tuple(rows),
    )


def write_tables(table: Table, out: Path) -> dict[str, Path]:
    """Write `<name>.md` and `<name>.json` into the experiment folder, atomically."""
    md, js = Path(out) / f"{table.name}.md", Path(out) / f"{table.name}.json"
    with atomic_file(md) as tmp:
        tmp.write_text(table.markdown())
    with atomic_file(js) as tmp:
        tmp.write_text(json.dumps(table.to_json(), indent=2) + "\n")
    return {"markdown": md, "json": js}


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
        path = Path(run_dir) / "config.json"
        try:
            train = json.loads(path.read_text()).get("train")
        except (OSError, json.JSONDecodeError, AttributeError):
            return None
        return train if isinstance(train, dict) else None

    def training_complete(self, run_dir: Path) -> bool:
        config = self.stored_config(run_dir)
        if config is None or not (Path(run_dir) / "best.pt").exists():
            return False
        return _last_logged_epoch(Path(run_dir) / "log.jsonl") >= int(config["epochs"])

    def train(self, overrides: dict[str, Any], *, resume: bool, progress: bool) -> None:
        from dinctl.training.config import resolve_config
        from dinctl.training.loop import resume_config, train

        if resume:
            # the trainer refuses a resume whose settings differ from the run's config.json
            cfg = resume_config(Path(overrides["out"]), {"device": overrides.get("device")})
        else:
            cfg = resolve_config(overrides)
        train(cfg, resume=resume, progress=progress)

    def test_metrics(self, run_dir: Path) -> dict[str, float] | None:
        from dinctl.evaluation import read_metrics

        metrics = read_metrics(run_dir, "test")
        if metrics is None or any(metrics.get(k) is None for k in METRIC_KEYS):
            return None
        return {k: float(metrics[k]) for k in METRIC_KEYS}

    def evaluate(self, run_dir: Path) -> dict[str, float]:
        return evaluate_test(run_dir, self.device)

    def curves(self, run_dirs: list[Path], out: Path) -> Path:
        from dinctl.plots import curves_plot

        return curves_plot(list(run_dirs), out)


def _last_logged_epoch(log: Path) -> int:
    """The last `{"event": "epoch"}` line's epoch in a run's log.jsonl (0 if none)."""
    last = 0
    try:
        lines = log.read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a kill; the trainer rewrites it on resume
        if isinstance(record, dict) and record.get("event") == "epoch":
            last = int(record["epoch"])
    return last


# --------------------------------------------------------------------------- quickstart


def sample_data_dir(root: Path | None = None) -> Path:
    """The bundled `sample_data/` of a source checkout (or under `root`)."""
    path = (root or Path(__file__).resolve().parents[1]) / "sample_data"
    if not (path / "amazon").is_dir():
        raise DinctlError(
            f"the bundled sample data is missing: {path / 'amazon'} does not exist",
            hint="run dinctl from a source checkout (git clone, then `pip install -e .`), "
            "or regenerate it with `python sample_data/generate.py`",
        )
    return path


QUICKSTART_MARKER = "quickstart.json"
# DIN with Dice, small enough for a 2-core laptop in seconds: the sample has ~2.7k training
# rows over ~300 items, where 16-dim embeddings, N(0, 1) init and a large Adam step learn the
# planted interests (test AUC ~0.8; with the library default init 0.01 it stays near 0.6).
QUICKSTART_TRAIN: dict[str, Any] = {
    "model": "din",
    "act": "dice",
    "reg": "none",
    "recipe": "fast",
    "epochs": 6,
    "batch_size": 256,
    "lr": 0.01,
    "emb_dim": 16,
    "emb_init_std": 1.0,
    "device": "cpu",
    "seed": 0,
}


@dataclass(frozen=True)
class QuickstartResult:
    """Where the quickstart put things, and how good the model is."""

    out: Path
    data: Path
    run_dir: Path
    best_epoch: int
    metrics: dict[str, float]  # test auc, gauc, logloss
    plots: dict[str, Path]  # attention, tsne, curves
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "data": str(self.data),
            "run": str(self.run_dir),
            "best_epoch": self.best_epoch,
            "test": self.metrics,
            "plots": {k: str(v) for k, v in self.plots.items()},
            "files": {
                "config": str(self.run_dir / "config.json"),
                "checkpoint": str(self.run_dir / "best.pt"),
                "log": str(self.run_dir / "log.jsonl"),
                "predictions": str(self.run_dir / "predictions.parquet"),
                "metrics": str(self.run_dir / "metrics.json"),
            },
            "seconds": round(self.seconds, 1),
        }


def _prepare_quickstart_dir(out: Path, overwrite: bool) -> None:
    """Re-running replaces an earlier quickstart; anything else needs --overwrite."""
    if out.exists() and not out.is_dir():
        raise DinctlError(f"{out} exists and is not a folder", hint="choose another --out")
    if out.is_dir() and any(out.iterdir()) and not (out / QUICKSTART_MARKER).exists():
        if not overwrite:
            raise DinctlError(
                f"{out} is not empty and was not made by `dinctl quickstart`",
                hint="choose another --out, or pass --overwrite to replace it",
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def run_quickstart(
    out: Path,
    *,
    overwrite: bool = False,
    progress: bool = True,
    stage: Callable[[str], None] = _stderr,
) -> QuickstartResult:
    """Sample Amazon data → preprocess → DIN with Dice → test metrics → the three plots."""
    started = time.perf_counter()
    sample = sample_data_dir()
    out = Path(out)
    _prepare_quickstart_dir(out, overwrite)
    marker = out / QUICKSTART_MARKER
    with atomic_file(marker) as tmp:
        tmp.write_text(json.dumps({"status": "running", "started": _now()}) + "\n")

    from dinctl.data.preprocess import preprocess_amazon

    data = out / "data"
    stage(f"preprocess  {sample / 'amazon'} → {data}")
    preprocess_amazon(sample / "amazon", data, overwrite=True)

    from dinctl.training.config import resolve_config
    from dinctl.training.loop import train

    run_dir = out / "runs" / "din-dice"
    if run_dir.exists():
        shutil.rmtree(run_dir)  # an earlier quickstart's run
    cfg = resolve_config({**QUICKSTART_TRAIN, "data": str(data), "out": str(run_dir)})
    stage(f"train       DIN with Dice, {cfg.epochs} epochs → {run_dir}")
    trained = _one_thread(lambda: train(cfg, progress=progress))

    stage("evaluate    best-validation-AUC epoch on the test split")
    metrics = evaluate_test(run_dir, "cpu")

    from dinctl.plots import attention_plot, curves_plot, tsne_plot

    stage(f"visualize   attention, t-SNE, curves → {run_dir / 'plots'}")
    plots = {
        "attention": attention_plot(run_dir),
        "tsne": tsne_plot(run_dir),
        "curves": curves_plot([run_dir]),
    }
    result = QuickstartResult(
        out=out,
        data=data,
        run_dir=run_dir,
        best_epoch=trained.best_epoch,
        metrics=metrics,
        plots=plots,
        seconds=time.perf_counter() - started,
    )
    with atomic_file(marker) as tmp:
        tmp.write_text(json.dumps({"status": "done", **result.to_json()}, indent=2) + "\n")
    return result


def _one_thread(job: Callable[[], Any]) -> Any:
    """Run `job` with one intra-op torch thread: on a model this small a second thread only adds
    synchronisation, and on a busy 2-core machine it made an epoch 3× slower (measured)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return job()
    finally:
        torch.set_num_threads(threads)


def evaluate_test(run_dir: Path, device: str = "auto") -> dict[str, float]:
    """Score a run's best checkpoint on test (writes predictions.parquet, metrics.json)."""
    from dinctl.evaluation import evaluate_run

    m = evaluate_run(run_dir, "test", device=device)
    return {"auc": m.auc, "gauc": m.gauc, "logloss": m.logloss}
