"""What the figures share: opening a run, scoring candidate ads, and writing PNG/JSON files.

Every figure is drawn on a bare `matplotlib.figure.Figure` rendered by the Agg canvas (pyplot is
never imported, so no display is touched), at a fixed pixel size, and written atomically next to
the numbers behind it (JSON or CSV) under `<run>/plots/`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dinctl.data.vocab import Vocab, most_active_user
from dinctl.errors import DinctlError
from dinctl.fsutil import atomic_file
from dinctl.inference import OpenedRun, open_run

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from dinctl.data.store import Dataset

DPI = 100
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">", "p")
LINESTYLES = ("-", "--", ":", "-.")


def as_opened(run: Path | str | OpenedRun) -> OpenedRun:
    """An opened run (weights + checksum-checked dataset on CPU) from a folder, or as given."""
    return run if isinstance(run, OpenedRun) else open_run(run, device="cpu")


def candidate_batch(
    dataset: Dataset, max_len: int, user: int, hist_len: int, items: np.ndarray
) -> Any:
    """One Batch row per candidate item, all with the user's first `hist_len` behaviours.

    With more fields (dinctl/data/schema.py) a candidate's extra behaviour fields are the
    item's own (`Dataset.item_fields`); the scene is neutral: context ids 0 (unknown) and
    numeric fields at their training mean (0 once standardised)."""
    import torch

    from dinctl.data.batching import WindowGatherer

    n = int(items.shape[0])
    item = torch.as_tensor(items, dtype=torch.long)  # (B,)
    schema = dataset.schema
    cand_fields = (
        torch.from_numpy(dataset.item_fields()[items]) if schema.extra_behaviour else None
    )  # (B, F)
    context = torch.zeros(n, len(schema.context), dtype=torch.long) if schema.context else None
    numeric = torch.zeros(n, len(schema.numeric)) if schema.numeric else None
    return WindowGatherer(dataset, max_len).gather(
        torch.full((n,), user, dtype=torch.long),
        torch.full((n,), hist_len, dtype=torch.long),
        item,
        torch.as_tensor(dataset.item_cate[items], dtype=torch.long),  # (B,)
        torch.zeros(n),
        cand_fields,
        context,
        numeric,
    )


def score_candidates(
    run: OpenedRun, user: int, hist_len: int, items: np.ndarray, chunk: int = 4096
) -> tuple[np.ndarray, np.ndarray | None]:
    """Predicted CTR (B,) and attention (B, T) | None for each candidate item."""
    import torch

    probs, weights = [], []
    with torch.no_grad():
        for lo in range(0, int(items.shape[0]), chunk):
            batch = candidate_batch(
                run.dataset, run.max_len, user, hist_len, items[lo : lo + chunk]
            )
            out = run.model(batch)
            probs.append(torch.sigmoid(out.logits).double().numpy())  # (b,)
            if out.attention is not None:
                weights.append(out.attention.double().numpy())  # (b, T)
    attention = np.concatenate(weights) if weights else None
    return np.concatenate(probs), attention


def resolve_user(run: OpenedRun, vocab: Vocab, user: str | None) -> int:
    return most_active_user(run.dataset) if user is None else vocab.user_id(str(user))


def safe_name(raw: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", raw)[:80] or "user"


def short(text: str, width: int = 22) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


SAMPLE_LABEL = "the sample data shipped with dinctl (synthetic, Amazon format)"


@functools.cache
def _sample_hashes() -> frozenset[str]:
    """sha256 of every file of the sample data inside the package."""
    root = Path(__file__).resolve().parents[1] / "sample_data"
    files = (p for p in root.rglob("*") if p.is_file()) if root.is_dir() else iter(())
    return frozenset(hashlib.sha256(p.read_bytes()).hexdigest() for p in files)


def dataset_title(label: str, meta: dict[str, Any] | None) -> str:
    """How a figure names its data: the sample data by that name (its files say Electronics,
    its rows are synthetic), any other dataset by its label."""
    inputs = (meta or {}).get("inputs") or []
    hashes = {str(i.get("sha256")) for i in inputs if isinstance(i, dict)}
    return SAMPLE_LABEL if hashes and hashes <= _sample_hashes() else label


def dataset_meta(path: Path | str) -> dict[str, Any] | None:
    """A dataset folder's meta.json, or None when it is gone or unreadable (labels only)."""
    try:
        meta = json.loads((Path(path) / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def png_path(out: Path | str | None, default: Path) -> Path:
    """Where a figure goes: `--out` (a .png file) or the figure's default under <run>/plots/."""
    png = Path(out) if out is not None else default
    if png.suffix.lower() != ".png":
        raise DinctlError(
            f"--out must name a .png file, got {png} instead", hint=f"e.g. --out {default.name}"
        )
    return png


def save_png(fig: Figure, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)


def figure(width_px: int, height_px: int) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI, layout="constrained")
