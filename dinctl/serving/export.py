"""`dinctl export`: a run → a self-contained bundle, checked against the eager model."""

from __future__ import annotations

import io
import logging
import platform
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dinctl.errors import DinctlError
from dinctl.fsutil import check_disjoint, json_fields
from dinctl.models.layers import relu_form_prelu
from dinctl.serving import bundle
from dinctl.serving.dataset_tables import (
    dataset_info,
    items_with_fields,
    numeric_stats,
    user_histories,
    values_frame,
)
from dinctl.serving.engines import (
    eager_engine,
    engine_speeds,
    exported_engine,
    missing_extra,
    onnx_engine,
)
from dinctl.serving.parity import PARITY_TOL, check_parity
from dinctl.serving.runtime import open_servable_run
from dinctl.serving.scorer import EXTRA_INPUT_NAMES, INPUT_NAMES, INPUT_SHAPES, RequestScorer


@dataclass(frozen=True)
class ExportResult:
    out: Path
    format: str
    parity_max_abs_diff: float
    parity_rows: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {**json_fields(self), "parity_tolerance": PARITY_TOL}


def example_inputs(names: tuple[str, ...] = INPUT_NAMES, widths: dict[str, int] | None = None
                   ) -> tuple[tuple[Any, ...], dict[str, Any]]:  # fmt: skip
    """Inputs whose sizes differ from each other and from 0/1, so no axis is specialised: the
    five basic ones positionally, the extra ones (of `names`; `widths` F, U, K, M) by keyword."""
    import torch

    g = torch.Generator().manual_seed(0)
    r, t, c = 2, 5, 3
    n = widths or {}
    args = (
        torch.randint(1, 2, (r, t), generator=g),
        torch.randint(1, 2, (r, t), generator=g),
        torch.tensor([5, 3]),
        torch.randint(1, 2, (r, c), generator=g),
        torch.randint(1, 2, (r, c), generator=g),
    )
    sizes = {"R": r, "T": t, "C": c, "F": 0, "U": 0, "K": 0, "M": 0, **n}
    kwargs: dict[str, Any] = {}
    for name in EXTRA_INPUT_NAMES:  # shaped as INPUT_SHAPES says
        shape = tuple(sizes[axis] for axis in INPUT_SHAPES[name][1])
        kwargs[name] = (torch.randn(shape, generator=g) if INPUT_SHAPES[name][0] == "float32"
                        else torch.ones(shape, dtype=torch.long))  # fmt: skip
    return args, {k: v for k, v in kwargs.items() if k in names}


def dynamic_shapes(names: tuple[str, ...] = INPUT_NAMES) -> dict[str, Any]:
    """R, T and C dynamic on every input that has them; the field widths are fixed."""
    from torch.export import Dim

    r, t, c = Dim("R", min=1), Dim("T", min=1), Dim("C", min=1)
    axes = {"R": r, "T": t, "C": c}
    return {
        name: {k: axes[a] for k, a in enumerate(INPUT_SHAPES[name][1]) if a in axes}
        for name in names
    }


@contextmanager
def quiet_exporter() -> Iterator[None]:
    """The ONNX exporter logs and warns about things irrelevant here (torchvision, axis names)."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)


def write_model(scorer: RequestScorer, fmt: str, path: Path) -> None:
    """torch.export the scorer with dynamic R, T, C; save it as ONNX or a .pt2 archive."""
    import torch

    names = scorer.input_names
    args, kwargs = example_inputs(names, scorer.widths)
    if fmt == "torch":
        program = torch.export.export(
            scorer, args, kwargs, dynamic_shapes=dynamic_shapes(names), strict=False
        )
        buffer = io.BytesIO()  # torch's own file writer aborts the process on a full disk
        torch.export.save(program, buffer)
        path.write_bytes(buffer.getbuffer())  # an OSError here is atomic_dir's one line
        return
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise missing_extra(err.name or "onnx") from None
    outputs = ["logits", "attention"] if scorer.has_attention else ["logits"]
    try:
        with quiet_exporter(), relu_form_prelu():
            onnx_program = torch.onnx.export(
                scorer,
                args,
                kwargs=kwargs,
                dynamo=True,
                dynamic_shapes=dynamic_shapes(names),
                input_names=list(names),
                output_names=outputs,
                verbose=False,
            )
    except Exception as err:  # the exporter raises many types; any is an unexportable model
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise DinctlError(f"the model cannot be exported to ONNX ({first})") from None
    if onnx_program is None:
        raise DinctlError("the ONNX exporter returned no program")
    onnx_program.save(str(path))


def export_run(
    run_dir: Path | str, fmt: str = "onnx", out: Path | None = None, overwrite: bool = False
) -> ExportResult:
    """Write `run_dir`'s bundle (default RUN/bundle-FORMAT) and check its parity."""
    import torch

    started = time.perf_counter()
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / f"bundle-{fmt}"
    run = open_servable_run(run_dir)
    ds = run.dataset
    check_export_out(out, run_dir, ds.path)
    scorer = RequestScorer(run.model)
    check_parity(eager_engine(scorer), run, ds)  # the scorer itself, before any export
    with bundle.write_bundle(out, fmt, overwrite=overwrite) as tmp:
        model_file = tmp / bundle.MODEL_FILES[fmt]
        write_model(scorer, fmt, model_file)
        names = scorer.input_names
        if fmt == "onnx":
            engine = onnx_engine(model_file, names=names)
        else:
            engine = exported_engine(model_file, names)
        worst, n = check_parity(engine, run, ds)
        engines = {"eager": eager_engine(scorer), fmt: engine}
        speed = engine_speeds(engines, scorer.signature(), run.model_config)
        values = values_frame(ds) if not ds.schema.is_basic else None
        users = user_histories(ds, run.config.max_len)
        bundle.write_tables(tmp, items_with_fields(ds), users, ds.schema, values)
        info = manifest(run, ds, fmt, scorer, worst, n, torch.__version__)
        bundle.write_manifest(tmp, {**info, "speed": speed})
    return ExportResult(out, fmt, worst, n, time.perf_counter() - started)


def check_export_out(out: Path, run_dir: Path, data: Path) -> None:
    """The bundle folder may be a new folder inside the run (its default), never the run, a
    folder holding it, or anything of the dataset's; `--overwrite` replaces only a bundle."""
    check_disjoint(out, [("run folder", run_dir)], may_lie_inside=True)
    check_disjoint(out, [("dataset folder", data)])
    if out.is_dir() and any(out.iterdir()) and not bundle.is_bundle(out):
        raise DinctlError(
            f"--out {out} is a folder that is not a dinctl bundle; refusing to replace it",
            hint="choose a new --out folder (or an existing bundle with --overwrite)",
        )


def manifest(
    run: Any, ds: Any, fmt: str, scorer: RequestScorer, worst: float, n: int, torch_version: str
) -> dict[str, Any]:
    from dinctl import __version__

    versions = {"dinctl": __version__, "torch": torch_version, "python": platform.python_version()}
    if fmt == "onnx":
        import onnx
        import onnxruntime

        versions.update(onnx=onnx.__version__, onnxruntime=onnxruntime.__version__)
    return {
        "format": fmt,
        "model_file": bundle.MODEL_FILES[fmt],
        "signature": scorer.signature(),
        "model": run.model_config,
        "reg": run.config.reg,
        "max_len": run.config.max_len,
        "dataset": dataset_info(ds),
        "run": {"path": str(run.run_dir), "best_epoch": run.best_epoch},
        "parity": {"max_abs_logit_diff": worst, "rows": n, "tolerance": PARITY_TOL},
        "oov": "unknown item → item id 0 (all-zero padding row); its category from the "
        "request when known, else 0; a behaviour with both unknown is dropped",
        **fields_manifest(ds),
        "versions": versions,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def fields_manifest(ds: Any) -> dict[str, Any]:
    """bundle.json's keys for a feature schema beyond item/category (none for a basic run)."""
    if ds.schema.is_basic:
        return {}
    return {
        "schema": ds.schema.to_dict(),
        "numeric_stats": numeric_stats(ds),
        "oov_fields": "an unknown value of a field → its id 0 (all-zero padding/missing row), "
        "listed in unknown_values; a behaviour is dropped only when every id of it is 0",
    }
