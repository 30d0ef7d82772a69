"""The paper's §6.8 figures for any trained run: attention weights (Fig. 5), a t-SNE of the
learned item embeddings (Fig. 6) and training curves (Fig. 4 style).

Every figure is drawn on a bare `matplotlib.figure.Figure` rendered by the Agg canvas (pyplot is
never imported, so no display is touched), at a fixed pixel size, and written atomically next to
the numbers behind it (JSON or CSV) under `<run>/plots/`.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dinctl.errors import DinctlError
from dinctl.fsutil import atomic_file, read_json

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from torch import nn

    from dinctl.data.store import Dataset

DPI = 100
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">", "p")
LINESTYLES = ("-", "--", ":", "-.")
TSNE_SIZE_PX = (1100, 850)
CURVES_SIZE_PX = (1300, 520)
DEFAULT_OTHER_CANDIDATES = 3
RUN_HINT = "pass the folder `dinctl train` wrote, e.g. runs/<name>"


# --------------------------------------------------------------------------- run access


@dataclass(frozen=True)
class RunView:
    """A trained run opened for plotting: model in eval mode, its dataset and window length."""

    run_dir: Path
    model: nn.Module
    dataset: Dataset
    max_len: int
    model_name: str
    dataset_name: str


def check_run_dir(run_dir: Path, need_checkpoint: bool = True) -> Path:
    """The run folder, or a one-line error saying what is missing."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DinctlError(f"run folder {run_dir} does not exist", hint=RUN_HINT)
    if not (run_dir / "config.json").exists():
        raise DinctlError(
            f"{run_dir} is not a run folder: {run_dir / 'config.json'} does not exist",
            hint=RUN_HINT,
        )
    if need_checkpoint and not any((run_dir / f).exists() for f in ("best.pt", "checkpoint.pt")):
        raise DinctlError(
            f"run {run_dir} has no checkpoint: neither best.pt nor checkpoint.pt exists",
            hint="train it with `dinctl train` (checkpoints are written after the first epoch)",
        )
    return run_dir


def open_run(run_dir: Path | str) -> RunView:
    """Load a run's best weights and its dataset for plotting."""
    from dinctl.data.store import load_dataset
    from dinctl.training.checkpoint import load_run

    run_dir = check_run_dir(Path(run_dir))
    loaded = load_run(run_dir, device="cpu")
    dataset = load_dataset(loaded.dataset_path)
    model = loaded.model.eval()
    return RunView(
        run_dir=run_dir,
        model=model,
        dataset=dataset,
        max_len=int(loaded.config.max_len),
        model_name=str(loaded.meta["model_config"]["model"]),
        dataset_name=dataset_label(dataset.meta, dataset.path),
    )


def dataset_label(meta: dict[str, Any], path: Path) -> str:
    """A short human name for a dataset: its meta `dataset` (and category), else the folder."""
    name = meta.get("dataset")
    if not name:
        return Path(path).name
    extra = meta.get("category") or meta.get("variant")
    return f"{name} ({extra})" if extra and str(extra) not in str(name) else str(name)


@dataclass(frozen=True)
class Vocab:
    """Raw ids and names of a dataset's dense ids (index 0 = padding)."""

    raw_item: np.ndarray  # (N+1,) object
    cate_name: np.ndarray  # (C+1,) object
    raw_user: np.ndarray  # (U+1,) object
    items_path: Path
    sequences_path: Path

    def item_id(self, raw: str) -> int:
        hits = np.flatnonzero(self.raw_item == raw)
        if hits.size == 0:
            example = self.raw_item[1] if self.raw_item.size > 1 else "?"
            raise DinctlError(
                f"item {raw!r} is not in {self.items_path}",
                hint=f"give a raw item id as in the source data, e.g. {example}",
            )
        return int(hits[0])

    def user_id(self, raw: str) -> int:
        hits = np.flatnonzero(self.raw_user == raw)
        if hits.size == 0:
            known = [u for u in self.raw_user[1:] if u is not None]
            example = known[0] if known else "?"
            raise DinctlError(
                f"user {raw!r} is not in {self.sequences_path}",
                hint=f"give a raw user id as in the source data, e.g. {example}",
            )
        return int(hits[0])


def read_vocab(dataset: Dataset) -> Vocab:
    """Map dense ids back to raw ids and category names (items.parquet, sequences.parquet)."""
    items = dataset.items_frame()
    raw_item = np.full(dataset.n_items + 1, "", dtype=object)
    raw_item[items["item"].to_numpy()] = items["raw_item"].to_list()
    cate_name = np.full(dataset.n_cates + 1, "", dtype=object)
    cate_name[items["cate"].to_numpy()] = items["cate_name"].to_list()
    users = dataset.users_frame()
    raw_user = np.full(dataset.n_users + 1, None, dtype=object)
    raw_user[users["user"].to_numpy()] = users["raw_user"].to_list()
    return Vocab(
        raw_item=raw_item,
        cate_name=cate_name,
        raw_user=raw_user,
        items_path=dataset.path / "items.parquet",
        sequences_path=dataset.path / "sequences.parquet",
    )


def most_active_user(dataset: Dataset) -> int:
    """The user with the most behaviours (ties: the smallest id)."""
    lengths = np.diff(dataset.seq_offsets)[: dataset.n_users + 1]  # (U+1,), index = user id
    return int(np.argmax(lengths))


def user_target(dataset: Dataset, user: int) -> tuple[int, int]:
    """(hist_len, target item) of the user's test target; the last behaviour when not in test."""
    if dataset.has_split("test"):
        test = dataset.split("test")
        rows = np.flatnonzero(test.user == user)
        if rows.size:
            positives = rows[test.label[rows] > 0.5]
            pool = positives if positives.size else rows
            row = pool[np.argmax(test.hist_len[pool])]
            return int(test.hist_len[row]), int(test.item[row])
    start, end = int(dataset.seq_offsets[user]), int(dataset.seq_offsets[user + 1])
    n = end - start
    return max(n - 1, 0), int(dataset.seq_items[end - 1]) if n else 0


def candidate_batch(
    dataset: Dataset, max_len: int, user: int, hist_len: int, items: np.ndarray
) -> Any:
    """One Batch row per candidate item, all with the user's first `hist_len` behaviours."""
    import torch

    from dinctl.data.batching import WindowGatherer

    n = int(items.shape[0])
    item = torch.as_tensor(items, dtype=torch.long)  # (B,)
    return WindowGatherer(dataset, max_len).gather(
        torch.full((n,), user, dtype=torch.long),
        torch.full((n,), hist_len, dtype=torch.long),
        item,
        torch.as_tensor(dataset.item_cate[items], dtype=torch.long),  # (B,)
        torch.zeros(n),
    )


def _score(
    run: RunView, user: int, hist_len: int, items: np.ndarray, chunk: int = 4096
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


def _resolve_user(run: RunView, vocab: Vocab, user: str | None) -> int:
    return most_active_user(run.dataset) if user is None else vocab.user_id(str(user))


def _safe_name(raw: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", raw)[:80] or "user"


def _short(text: str, width: int = 22) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _save_png(fig: Figure, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)


def _write_json(data: Any, path: Path) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")


def _figure(width_px: int, height_px: int) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI, layout="constrained")


# --------------------------------------------------------------------------- Fig. 5: attention


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
        return {
            "run": str(self.run_dir),
            "model": self.model,
            "dataset": self.dataset,
            "user": self.user,
            "hist_len": self.hist_len,
            "window": self.window,
            "behaviours": self.behaviours,
            "candidates": self.candidates,
            "weights": self.weights.tolist(),
        }


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


def compute_attention(
    run_dir: Path | str,
    user: str | None = None,
    candidates: list[str] | None = None,
    max_behaviours: int = 50,
) -> AttentionMap:
    """Activation weights a(e_j, v_A) of Eq. (3) for a user's behaviours and candidate ads."""
    if max_behaviours < 1:
        raise DinctlError(f"max_behaviours must be at least 1, got {max_behaviours} instead")
    run = open_run(run_dir)
    vocab = read_vocab(run.dataset)
    uid = _resolve_user(run, vocab, user)
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
    probs, attention = _score(run, uid, hist_len, item_arr)
    if attention is None:
        raise DinctlError(
            f"model {run.model_name!r} of run {run.run_dir} has no attention weights",
            hint="attention maps need a DIN run (`dinctl train --model din`)",
        )
    window = min(hist_len, run.max_len)
    shown = min(window, max_behaviours)
    start = int(run.dataset.seq_offsets[uid]) + hist_len - shown
    beh_items = run.dataset.seq_items[start : start + shown]
    behaviours = [
        {
            "item": int(j),
            "raw_item": str(vocab.raw_item[j]),
            "category": str(vocab.cate_name[run.dataset.item_cate[j]]),
        }
        for j in beh_items
    ]
    cands = [
        {
            "item": int(j),
            "raw_item": str(vocab.raw_item[j]),
            "category": str(vocab.cate_name[run.dataset.item_cate[j]]),
            "score": float(p),
            "target": not candidates and k == 0,
        }
        for k, (j, p) in enumerate(zip(items, probs, strict=True))
    ]
    return AttentionMap(
        run_dir=run.run_dir,
        model=run.model_name,
        dataset=run.dataset_name,
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
    fig = _figure(*attention_figsize_px(n_cand, n_beh))
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
        [f"{b['raw_item']} · {_short(b['category'])}" for b in amap.behaviours],
        rotation=90,
        fontsize=7,
    )
    ax.set_yticks(range(n_cand))
    ax.set_yticklabels(
        [
            f"{c['raw_item']} · {_short(c['category'])}\n"
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


def write_attention(amap: AttentionMap) -> tuple[Path, Path]:
    """Write plots/attention_<user>.png and .json; returns both paths."""
    base = amap.run_dir / "plots" / f"attention_{_safe_name(amap.user)}"
    png, js = base.with_suffix(".png"), base.with_suffix(".json")
    _save_png(draw_attention(amap), png)
    _write_json(amap.to_json(), js)
    return png, js


def attention_plot(
    run_dir: Path | str, user: str | None = None, candidates: list[str] | None = None
) -> Path:
    """Fig. 5 for one user (default: the most active); returns the PNG path."""
    return write_attention(compute_attention(run_dir, user, candidates))[0]


# --------------------------------------------------------------------------- Fig. 6: t-SNE


@dataclass(frozen=True)
class TsneMap:
    """2-D t-SNE coordinates and predicted CTRs of the most frequent categories' top items."""

    run_dir: Path
    model: str
    dataset: str
    user: str
    seed: int
    items: np.ndarray  # (P,) dense item ids
    raw_items: list[str]
    categories: list[str]
    xy: np.ndarray  # (P, 2)
    scores: np.ndarray  # (P,)

    def rows(self) -> list[dict[str, Any]]:
        return [
            {"raw_item": r, "category": c, "x": float(x), "y": float(y), "score": float(s)}
            for r, c, (x, y), s in zip(
                self.raw_items, self.categories, self.xy, self.scores, strict=True
            )
        ]


def top_items(dataset: Dataset, categories: int, per_category: int) -> np.ndarray:
    """The `per_category` top items of each of the `categories` most frequent categories."""
    cate_freq = dataset.cate_freq()  # (C+1,)
    order = np.lexsort((np.arange(cate_freq.size), -cate_freq))
    chosen = [int(c) for c in order if c != 0 and cate_freq[c] > 0][:categories]
    out = []
    for cate in chosen:
        members = np.flatnonzero(dataset.item_cate == cate)
        members = members[np.lexsort((members, -dataset.item_freq[members]))]
        out.append(members[:per_category])
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def item_representations(model: nn.Module, items: np.ndarray, cates: np.ndarray) -> np.ndarray:
    """Learned item ⊕ category embedding rows (P, D) from the model's `sparse_tables()`.

    A `--reg filter` model sees item ids through its `item_map`, so rows are looked up through it.
    """
    import torch

    item_map = getattr(model, "item_map", None)
    if item_map is not None:
        items = item_map[torch.as_tensor(items, dtype=torch.long)].numpy()
    tables: dict[str, Any] = {}
    for name, table, vocab in model.sparse_tables():  # type: ignore[operator]
        preferred = name == f"{vocab}_emb"
        if vocab not in tables or preferred:
            tables[vocab] = table
    parts = []
    with torch.no_grad():
        for vocab, ids in (("item", items), ("cate", cates)):
            if vocab in tables:
                rows = tables[vocab].weight[torch.as_tensor(ids, dtype=torch.long)]  # (P, d)
                parts.append(rows.double().numpy())
    if not parts:
        raise DinctlError(
            "the model has no item or category embedding tables",
            hint="t-SNE needs a model with embeddings (e.g. `dinctl train --model din`)",
        )
    return np.concatenate(parts, axis=1)  # (P, D)


def seeded_pca_init(reps: np.ndarray, seed: int) -> np.ndarray:
    """sklearn's init="pca" (top-2 PCs, PC1 std 1e-4) plus a seeded 10% jitter.

    Barnes-Hut t-SNE from a PCA start draws no random numbers, so without the jitter every seed
    would give the same map; with it, a seed picks one of the nearby layouts, reproducibly.
    """
    centred = reps - reps.mean(axis=0)  # (P, D)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    pcs = centred @ vt[:2].T  # (P, 2)
    if pcs.shape[1] < 2:
        pcs = np.pad(pcs, ((0, 0), (0, 2 - pcs.shape[1])))
    pcs *= np.where(pcs[np.argmax(np.abs(pcs), axis=0), [0, 1]] < 0, -1.0, 1.0)  # fixed signs
    scale = float(np.std(pcs[:, 0])) or 1.0
    init = pcs / scale * 1e-4
    return init + np.random.default_rng(seed).normal(scale=1e-5, size=init.shape)


def compute_tsne(
    run_dir: Path | str,
    categories: int = 9,
    per_category: int = 100,
    user: str | None = None,
    seed: int = 0,
) -> TsneMap:
    """t-SNE (seeded, PCA init) of item embeddings, scored as candidates for one user (Fig. 6)."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    if categories < 1 or per_category < 1:
        raise DinctlError(
            f"--categories and --per-category must be at least 1, got {categories} and"
            f" {per_category} instead"
        )
    run = open_run(run_dir)
    vocab = read_vocab(run.dataset)
    uid = _resolve_user(run, vocab, user)
    items = top_items(run.dataset, categories, per_category)
    if items.size < 5:
        raise DinctlError(
            f"only {items.size} items to embed in {run.dataset.path}; t-SNE needs at least 5",
            hint="raise --categories or --per-category",
        )
    cates = run.dataset.item_cate[items]
    reps = item_representations(run.model, items, cates)  # (P, D)
    hist_len, _ = user_target(run.dataset, uid)
    scores, _ = _score(run, uid, hist_len, items.astype(np.int64))
    perplexity = float(min(30.0, max(2.0, (items.size - 1) / 3.0)))
    init = seeded_pca_init(reps, seed)  # (P, 2)
    tsne = TSNE(n_components=2, perplexity=perplexity, init=init, random_state=seed)
    # one thread: bit-identical coordinates for a seed, and no OpenMP spin-wait against torch
    with threadpool_limits(limits=1):
        xy = tsne.fit_transform(reps)  # (P, 2)
    return TsneMap(
        run_dir=run.run_dir,
        model=run.model_name,
        dataset=run.dataset_name,
        user=str(vocab.raw_user[uid]),
        seed=seed,
        items=items,
        raw_items=[str(vocab.raw_item[j]) for j in items],
        categories=[str(vocab.cate_name[c]) for c in cates],
        xy=np.asarray(xy, dtype=np.float64),
        scores=scores,
    )


def draw_tsne(tmap: TsneMap) -> Figure:
    """Scatter: one marker shape per category, colour = predicted CTR for the user."""
    from matplotlib.colors import Normalize
    from matplotlib.lines import Line2D

    fig = _figure(*TSNE_SIZE_PX)
    ax = fig.add_subplot()
    norm = Normalize(vmin=float(tmap.scores.min()), vmax=float(tmap.scores.max()))
    names = list(dict.fromkeys(tmap.categories))
    cats = np.asarray(tmap.categories, dtype=object)
    handles = []
    sc = None
    for k, name in enumerate(names):
        sel = cats == name
        marker = MARKERS[k % len(MARKERS)]
        sc = ax.scatter(
            tmap.xy[sel, 0],
            tmap.xy[sel, 1],
            c=tmap.scores[sel],
            cmap="viridis",
            norm=norm,
            marker=marker,
            s=46,
            edgecolors="black",
            linewidths=0.4,
        )
        handles.append(
            Line2D(
                [],
                [],
                marker=marker,
                linestyle="",
                color="0.6",
                markeredgecolor="black",
                markersize=8,
                label=_short(name, 30),
            )
        )
    if sc is not None:
        fig.colorbar(
            sc, ax=ax, location="bottom", shrink=0.6, label=f"predicted CTR for user {tmap.user}"
        )
    ax.legend(
        handles=handles, title="category", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8
    )
    ax.set_xlabel("t-SNE 1")
    ax.set_ylabel("t-SNE 2")
    ax.set_title(
        f"t-SNE of {tmap.model.upper()} item embeddings (item ⊕ category), {len(names)} most"
        f" frequent categories — {tmap.dataset}\ncolour: predicted CTR for user {tmap.user};"
        f" seed {tmap.seed}",
        fontsize=10,
    )
    return fig


def write_tsne(tmap: TsneMap) -> tuple[Path, Path]:
    """Write plots/tsne.png and plots/tsne.csv; returns both paths."""
    png, table = tmap.run_dir / "plots" / "tsne.png", tmap.run_dir / "plots" / "tsne.csv"
    _save_png(draw_tsne(tmap), png)
    with atomic_file(table) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["raw_item", "category", "x", "y", "score"])
        writer.writeheader()
        writer.writerows(tmap.rows())
    return png, table


def tsne_plot(
    run_dir: Path | str,
    categories: int = 9,
    per_category: int = 100,
    user: str | None = None,
    seed: int = 0,
) -> Path:
    """Fig. 6 for one run; returns the PNG path."""
    return write_tsne(compute_tsne(run_dir, categories, per_category, user, seed))[0]


# --------------------------------------------------------------------------- Fig. 4: curves


@dataclass(frozen=True)
class Curve:
    """Per-epoch training loss and validation AUC of one run, from its log.jsonl."""

    run_dir: Path
    model: str
    dataset: str
    epoch: list[int]
    train_loss: list[float | None]
    valid_auc: list[float | None]

    def to_json(self) -> dict[str, Any]:
        return {
            "run": str(self.run_dir),
            "model": self.model,
            "dataset": self.dataset,
            "epoch": self.epoch,
            "train_loss": self.train_loss,
            "valid_auc": self.valid_auc,
        }


def _manifest_runs(manifest: Path) -> list[Path]:
    data = read_json(manifest)
    entries = data.get("runs", []) if isinstance(data, dict) else data
    out = []
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict):
            entry = entry.get("name")
        if not isinstance(entry, str):
            continue
        path = manifest.parent / entry
        if (path / "log.jsonl").exists():  # runs not started yet are skipped
            out.append(path)
    if not out:
        raise DinctlError(
            f"{manifest} lists no run with a log.jsonl yet",
            hint="run the experiment first (`dinctl experiment ...`)",
        )
    return out


def expand_runs(paths: list[Path]) -> list[Path]:
    """Run folders from run folders, experiment folders (manifest.json or run subfolders)."""
    out: list[Path] = []
    for path in map(Path, paths):
        if not path.is_dir():
            raise DinctlError(
                f"run folder {path} does not exist",
                hint="pass folders written by `dinctl train` or `dinctl experiment`",
            )
        if (path / "config.json").exists():
            out.append(path)
        elif (path / "manifest.json").exists():
            out.extend(_manifest_runs(path / "manifest.json"))
        else:
            subs = sorted(p for p in path.iterdir() if (p / "config.json").exists())
            if not subs:
                raise DinctlError(
                    f"{path} is not a run folder: it has no config.json, manifest.json or run"
                    " subfolders",
                    hint="pass folders written by `dinctl train` or `dinctl experiment`",
                )
            out.extend(subs)
    return out


def _run_names(run_dir: Path) -> tuple[str, str]:
    """(model, dataset) from a run's config.json, read as plain JSON."""
    try:
        cfg = json.loads((run_dir / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return "?", "?"
    model = cfg.get("model") if isinstance(cfg, dict) else None
    model = model.get("model", "?") if isinstance(model, dict) else "?"
    ds = cfg.get("dataset") if isinstance(cfg, dict) else None
    if not isinstance(ds, dict):
        return str(model), "?"
    return str(model), dataset_label(ds.get("meta") or {}, Path(str(ds.get("path", "?"))))


def _finite(value: Any) -> float | None:
    """A log number, or None when absent or not finite (NaN is not JSON)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def read_curve(run_dir: Path) -> Curve:
    """The epoch lines of `<run>/log.jsonl`."""
    run_dir = check_run_dir(run_dir, need_checkpoint=False)
    log = run_dir / "log.jsonl"
    if not log.exists():
        raise DinctlError(
            f"run {run_dir} has no log: {log} does not exist",
            hint="train it with `dinctl train` (it writes log.jsonl as it goes)",
        )
    epoch: list[int] = []
    loss: list[float | None] = []
    auc: list[float | None] = []
    for n, line in enumerate(log.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            raise DinctlError(
                f"{log} line {n} is not valid JSON", hint="the log was damaged; retrain the run"
            ) from None
        if isinstance(rec, dict) and rec.get("event") == "epoch":
            epoch.append(int(rec.get("epoch", len(epoch) + 1)))
            loss.append(_finite(rec.get("train_loss")))
            auc.append(_finite(rec.get("valid_auc")))
    if not epoch:
        raise DinctlError(
            f"{log} has no epoch lines",
            hint="the run stopped before its first epoch ended; train at least one epoch",
        )
    model, dataset = _run_names(run_dir)
    return Curve(run_dir, model, dataset, epoch, loss, auc)


def draw_curves(curves: list[Curve]) -> Figure:
    """Two panels: training loss and validation AUC per epoch, one line style + marker per run."""
    from matplotlib.ticker import MaxNLocator

    fig = _figure(*CURVES_SIZE_PX)
    ax_loss, ax_auc = fig.subplots(1, 2)
    for k, cv in enumerate(curves):
        style = {
            "marker": MARKERS[k % len(MARKERS)],
            "linestyle": LINESTYLES[k % len(LINESTYLES)],
            "label": f"{cv.run_dir.name} ({cv.model})",
        }
        nan = math.nan
        ax_loss.plot(cv.epoch, [nan if v is None else v for v in cv.train_loss], **style)
        ax_auc.plot(cv.epoch, [nan if v is None else v for v in cv.valid_auc], **style)
    for ax, what in ((ax_loss, "training loss"), (ax_auc, "validation AUC")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(what)
        ax.set_title(f"{what} per epoch", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_auc.legend(fontsize=8)
    models = ", ".join(dict.fromkeys(cv.model for cv in curves))
    datasets = ", ".join(dict.fromkeys(cv.dataset for cv in curves))
    fig.suptitle(f"Training loss and validation AUC per epoch — {models} on {datasets}")
    return fig


def compute_curves(run_dirs: list[Path | str]) -> list[Curve]:
    """Curves of every run named (experiment folders expand to their runs)."""
    if not run_dirs:
        raise DinctlError("no run folder given", hint="pass at least one run folder")
    return [read_curve(p) for p in expand_runs([Path(p) for p in run_dirs])]


def write_curves(curves: list[Curve], out: Path | str | None = None) -> tuple[Path, Path]:
    """Write the curves PNG (default <first run>/plots/curves.png) and its JSON beside it."""
    png = Path(out) if out is not None else curves[0].run_dir / "plots" / "curves.png"
    if png.suffix.lower() != ".png":
        raise DinctlError(
            f"--out must name a .png file, got {png} instead", hint="e.g. --out plots/curves.png"
        )
    js = png.with_suffix(".json")
    _save_png(draw_curves(curves), png)
    _write_json({"runs": [cv.to_json() for cv in curves]}, js)
    return png, js


def curves_plot(run_dirs: list[Path | str], out: Path | str | None = None) -> Path:
    """Fig. 4 style curves for one or several runs; returns the PNG path."""
    return write_curves(compute_curves(run_dirs), out)[0]
