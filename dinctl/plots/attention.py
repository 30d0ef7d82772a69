"""Fig. 5 of the paper: the activation weights a(e_j, v_A) of Eq. (3) for one user's
behaviours (columns) and several candidate ads (rows), drawn as an annotated heatmap."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dinctl.data.vocab import Vocab, read_vocab, user_target
from dinctl.errors import DinctlError
from dinctl.fsutil import json_fields
from dinctl.inference import OpenedRun
from dinctl.plots.common import (
    as_opened,
    dataset_title,
    figure,
    png_path,
    resolve_user,
    safe_name,
    save_png,
    score_candidates,
    short,
)
from dinctl.runs import PLOTS_DIR, write_json

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from dinctl.data.store import Dataset

DEFAULT_OTHER_CANDIDATES = 3


@dataclass(frozen=True)
class AttentionMap:
    """Activation weights of one user's behaviours (columns) for each candidate (rows)."""

    run_dir: Path
    model: str
    dataset: str
    user: str
    hist_len: int  # behaviours before the target
    window: int  # behaviours the model saw (hist_len truncated to max_len)
    behaviours: list[dict[str, Any]]  # shown: the most recent `max_behaviours` of the window
    candidates: list[dict[str, Any]]
    weights: np.ndarray  # (candidates, shown behaviours)

    def to_json(self) -> dict[str, Any]:
        return json_fields(self, {"run_dir": "run"})


def attention_figsize_px(n_candidates: int, n_behaviours: int) -> tuple[int, int]:
    """(width, height) in pixels of the attention heatmap."""
    return max(900, 320 + 46 * n_behaviours), 380 + 70 * n_candidates


def default_candidates(
    dataset: Dataset, target: int, n_other: int = DEFAULT_OTHER_CANDIDATES
) -> list[int]:
    """The target, then the top item of each of the `n_other` most frequent other categories."""
    target_cate = int(dataset.item_cate[target])
    cate_freq = dataset.cate_freq()  # (C+1,)
    order = np.lexsort((np.arange(cate_freq.size), -cate_freq))
    out = [target]
    for cate in order:
        if len(out) > n_other or cate == 0 or cate == target_cate:
            continue
        members = np.flatnonzero(dataset.item_cate == cate)
        if members.size:
            out.append(int(members[np.lexsort((members, -dataset.item_freq[members]))[0]]))
    return out


def extra_field_labels(
    dataset: Dataset, positions: np.ndarray | None, items: np.ndarray | None
) -> list[dict[str, str]]:
    """Raw values of the extra behaviour fields ({field: value}) of behaviours at CSR
    `positions`, or of candidate `items` (their own fields); empty dicts for a two-field set."""
    n = len(positions) if positions is not None else len(items)  # type: ignore[arg-type]
    names = dataset.schema.extra_behaviour
    if not names:
        return [{} for _ in range(n)]
    out: list[dict[str, str]] = [{} for _ in range(n)]
    table = dataset.item_fields() if items is not None else None
    for k, name in enumerate(names):
        raw = dataset.value_names(name)
        ids = dataset.seq_fields[name][positions] if table is None else table[items, k]
        for r, i in enumerate(ids):
            out[r][name] = raw[i - 1] if i > 0 else "?"
    return out


def _entry(dataset: Dataset, vocab: Vocab, item: int, fields: dict[str, str]) -> dict[str, Any]:
    """A behaviour or candidate as the figure and its JSON name it."""
    return {
        "item": int(item),
        "raw_item": str(vocab.raw_item[item]),
        "category": str(vocab.cate_name[dataset.item_cate[item]]),
        **({"fields": fields} if fields else {}),
    }


def _label(entry: dict[str, Any]) -> str:
    """A behaviour's or candidate's tick label: item · category (· every other field)."""
    parts = [entry["raw_item"], short(entry["category"])]
    parts += [short(v, 14) for v in entry.get("fields", {}).values()]
    return " · ".join(parts)


def compute_attention(
    run_dir: Path | str | OpenedRun,
    user: str | None = None,
    candidates: list[str] | None = None,
    max_behaviours: int = 50,
) -> AttentionMap:
    """Activation weights a(e_j, v_A) of Eq. (3) for a user's behaviours and candidate ads."""
    if max_behaviours < 1:
        raise DinctlError(f"max_behaviours must be at least 1, got {max_behaviours} instead")
    run = as_opened(run_dir)
    vocab = read_vocab(run.dataset)
    uid = resolve_user(run, vocab, user)
    raw_user = str(vocab.raw_user[uid])
    hist_len, target = user_target(run.dataset, uid)
    if hist_len < 1:
        raise DinctlError(
            f"user {raw_user!r} has no behaviours before the target",
            hint="pick a user with a longer history (omit --user for the most active one)",
        )
    if candidates:
        items = [vocab.item_id(str(raw)) for raw in candidates]
    else:
        items = default_candidates(run.dataset, target)
    item_arr = np.asarray(items, dtype=np.int64)
    probs, attention = score_candidates(run, uid, hist_len, item_arr)
    if attention is None:
        raise DinctlError(
            f"model {run.model_name!r} of run {run.run_dir} has no attention weights",
            hint="attention maps need a DIN run (`dinctl train --model din`)",
        )
    window = min(hist_len, run.max_len)
    shown = min(window, max_behaviours)
    start = int(run.dataset.seq_offsets[uid]) + hist_len - shown
    beh_items = run.dataset.seq_items[start : start + shown]
    beh_fields = extra_field_labels(run.dataset, np.arange(start, start + shown), None)
    behaviours = [
        _entry(run.dataset, vocab, j, f) for j, f in zip(beh_items, beh_fields, strict=True)
    ]
    cand_fields = extra_field_labels(run.dataset, None, item_arr)
    cands = [
        {
            **_entry(run.dataset, vocab, j, f),
            "score": float(p),
            "target": not candidates and k == 0,
        }
        for k, (j, p, f) in enumerate(zip(items, probs, cand_fields, strict=True))
    ]
    return AttentionMap(
        run_dir=run.run_dir,
        model=run.model_name,
        dataset=dataset_title(run.dataset_name, run.dataset.meta),
        user=raw_user,
        hist_len=hist_len,
        window=window,
        behaviours=behaviours,
        candidates=cands,
        weights=attention[:, window - shown : window],  # (candidates, shown)
    )


def draw_attention(amap: AttentionMap) -> Figure:
    """Heatmap of candidates × behaviours (oldest → most recent), every cell annotated."""
    from matplotlib import colormaps

    n_cand, n_beh = amap.weights.shape
    fig = figure(*attention_figsize_px(n_cand, n_beh))
    ax = fig.add_subplot()
    cmap = colormaps["cividis"]
    im = ax.imshow(amap.weights, cmap=cmap, aspect="auto", interpolation="nearest")
    lo, hi = float(np.min(amap.weights)), float(np.max(amap.weights))
    top = max(abs(lo), abs(hi))
    decimals = max(0, 2 - math.floor(math.log10(top))) if top > 0 else 2  # 3 significant digits
    for r in range(n_cand):
        for c in range(n_beh):
            v = float(amap.weights[r, c])
            shade = (v - lo) / (hi - lo) if hi > lo else 0.5
            ax.text(
                c,
                r,
                f"{v:.{decimals}f}",
                ha="center",
                va="center",
                fontsize=7,
                rotation=90 if n_beh > 20 else 0,
                color="black" if shade > 0.55 else "white",
            )
    ax.set_xticks(range(n_beh))
    ax.set_xticklabels(
        [_label(b) for b in amap.behaviours],
        rotation=90,
        fontsize=7,
    )
    ax.set_yticks(range(n_cand))
    ax.set_yticklabels(
        [
            f"{_label(c)}\n"
            + ("test target · " if c.get("target") else "")
            + f"CTR {c['score']:.3f}"
            for c in amap.candidates
        ],
        fontsize=8,
    )
    ax.set_xlabel(f"behaviours, oldest → most recent (last {n_beh} of {amap.hist_len})")
    ax.set_ylabel("candidate ad")
    fig.colorbar(im, ax=ax, label="activation weight a(e_j, v_A)", shrink=0.9)
    ax.set_title(
        f"{amap.model.upper()} activation weights of user {amap.user}'s behaviours per candidate"
        f" ad — {amap.dataset}",
        fontsize=10,
    )
    return fig


def write_attention(amap: AttentionMap, out: Path | str | None = None) -> tuple[Path, Path]:
    """Write the PNG (default <run>/plots/attention_<user>.png) and the JSON beside it."""
    default = amap.run_dir / PLOTS_DIR / f"attention_{safe_name(amap.user)}.png"
    png = png_path(out, default)
    js = png.with_suffix(".json")
    save_png(draw_attention(amap), png)
    write_json(js, amap.to_json())
    return png, js


def attention_plot(
    run_dir: Path | str | OpenedRun, user: str | None = None, candidates: list[str] | None = None
) -> Path:
    """Fig. 5 for one user (default: the most active); returns the PNG path."""
    return write_attention(compute_attention(run_dir, user, candidates))[0]
