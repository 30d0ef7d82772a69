"""Fig. 6 of the paper: a t-SNE of the learned item embeddings of the most frequent
categories, one marker per category, coloured by the predicted CTR for one user."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dinctl.data.vocab import read_vocab, user_target
from dinctl.errors import DinctlError
from dinctl.fsutil import atomic_file
from dinctl.inference import OpenedRun
from dinctl.plots.common import (
    MARKERS,
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
from dinctl.runs import PLOTS_DIR

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from torch import nn

    from dinctl.data.store import Dataset

TSNE_SIZE_PX = (1100, 850)
DEFAULT_CATEGORIES, DEFAULT_PER_CATEGORY, DEFAULT_SEED = 9, 100, 0


def tsne_stem(categories: int, per_category: int, user: str | None, seed: int) -> str:
    """`tsne` for the default settings, else `tsne_c5_p30_s1[_u<user>]`: one file per map."""
    parts = [
        f"c{categories}" if categories != DEFAULT_CATEGORIES else "",
        f"p{per_category}" if per_category != DEFAULT_PER_CATEGORY else "",
        f"s{seed}" if seed != DEFAULT_SEED else "",
        f"u{safe_name(user)}" if user is not None else "",
    ]
    return "_".join(["tsne", *(p for p in parts if p)])


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
    stem: str  # the default file name (tsne_stem)

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

    A `--reg filter` model sees item ids through its item map, so rows are looked up through it.
    """
    import torch

    from dinctl.models.layers import map_items

    items = map_items(model, torch.as_tensor(items, dtype=torch.long)).numpy()
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
    run_dir: Path | str | OpenedRun,
    categories: int = DEFAULT_CATEGORIES,
    per_category: int = DEFAULT_PER_CATEGORY,
    user: str | None = None,
    seed: int = DEFAULT_SEED,
) -> TsneMap:
    """t-SNE (seeded, PCA init) of item embeddings, scored as candidates for one user (Fig. 6)."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    if categories < 1 or per_category < 1:
        raise DinctlError(
            f"--categories and --per-category must be at least 1, got {categories} and"
            f" {per_category} instead"
        )
    run = as_opened(run_dir)
    vocab = read_vocab(run.dataset)
    uid = resolve_user(run, vocab, user)
    items = top_items(run.dataset, categories, per_category)
    if items.size < 5:
        raise DinctlError(
            f"only {items.size} items to embed in {run.dataset.path}; t-SNE needs at least 5",
            hint="raise --categories or --per-category",
        )
    cates = run.dataset.item_cate[items]
    reps = item_representations(run.model, items, cates)  # (P, D)
    hist_len, _ = user_target(run.dataset, uid)
    scores, _ = score_candidates(run, uid, hist_len, items.astype(np.int64))
    perplexity = float(min(30.0, max(2.0, (items.size - 1) / 3.0)))
    init = seeded_pca_init(reps, seed)  # (P, 2)
    tsne = TSNE(n_components=2, perplexity=perplexity, init=init, random_state=seed)
    # one thread: bit-identical coordinates for a seed, and no OpenMP spin-wait against torch
    with threadpool_limits(limits=1):
        xy = tsne.fit_transform(reps)  # (P, 2)
    return TsneMap(
        run_dir=run.run_dir,
        model=run.model_name,
        dataset=dataset_title(run.dataset_name, run.dataset.meta),
        user=str(vocab.raw_user[uid]),
        seed=seed,
        items=items,
        raw_items=[str(vocab.raw_item[j]) for j in items],
        categories=[str(vocab.cate_name[c]) for c in cates],
        xy=np.asarray(xy, dtype=np.float64),
        scores=scores,
        stem=tsne_stem(categories, per_category, user, seed),
    )


def draw_tsne(tmap: TsneMap) -> Figure:
    """Scatter: one marker shape per category, colour = predicted CTR for the user."""
    from matplotlib.colors import Normalize
    from matplotlib.lines import Line2D

    fig = figure(*TSNE_SIZE_PX)
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
                label=short(name, 30),
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


def write_tsne(tmap: TsneMap, out: Path | str | None = None) -> tuple[Path, Path]:
    """Write the PNG (default <run>/plots/<stem>.png) and the CSV beside it; returns both."""
    png = png_path(out, tmap.run_dir / PLOTS_DIR / f"{tmap.stem}.png")
    table = png.with_suffix(".csv")
    save_png(draw_tsne(tmap), png)
    with atomic_file(table) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["raw_item", "category", "x", "y", "score"])
        writer.writeheader()
        writer.writerows(tmap.rows())
    return png, table
