"""Shared fixtures: `tiny_dataset`, a small preprocessed dataset with a planted, learnable signal.

200 users, 20 categories × 10 items. Each user prefers 2 categories; their behaviours are
drawn from those, with a Zipf-like popularity inside each category. Following the Amazon
protocol, every positive target b_{k+1} (history b_1..b_k) gets one negative drawn uniformly
from all items that are not the user's own. So the label is predictable from the history ×
candidate category match (what DIN/BaseModel learn) and, more weakly, from item popularity
(what even LR can learn). Valid = each user's last training target, test = the last behaviour.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

try:
    import torch  # noqa: F401

    HAVE_TORCH = True
except ImportError:  # another Python without torch: `make test-py` runs the `notorch` tests
    HAVE_TORCH = False


def pytest_ignore_collect(collection_path: Path) -> bool | None:
    """Without torch, skip importing the test files that need it (only files marked
    `pytestmark = pytest.mark.notorch` are collected)."""
    if (
        HAVE_TORCH
        or collection_path.suffix != ".py"
        or not collection_path.name.startswith("test_")
    ):
        return None
    return "pytest.mark.notorch" not in collection_path.read_text(encoding="utf-8")


N_USERS = 200
N_CATES = 20
ITEMS_PER_CATE = 10


def make_tiny_dataset(
    out: Path,
    *,
    n_users: int = N_USERS,
    n_cates: int = N_CATES,
    items_per_cate: int = ITEMS_PER_CATE,
    min_len: int = 8,
    max_len: int = 20,
    seed: int = 0,
    with_valid: bool = True,
) -> Path:
    """Write the planted-signal dataset to `out` with `dinctl.data.store.write_dataset`."""
    import polars as pl

    from dinctl.data.store import write_dataset

    rng = np.random.default_rng(seed)
    n_items = n_cates * items_per_cate
    item_cate = np.zeros(n_items + 1, dtype=np.int32)
    item_cate[1:] = np.repeat(np.arange(1, n_cates + 1), items_per_cate)  # item i → cate
    popularity = 1.0 / np.arange(1, items_per_cate + 1)  # Zipf inside a category
    popularity /= popularity.sum()

    seq_items: list[list[int]] = []
    for _ in range(n_users):
        prefs = rng.choice(n_cates, size=2, replace=False)
        length = int(rng.integers(min_len, max_len + 1))
        cats = rng.choice(prefs, size=length)
        ranks = rng.choice(items_per_cate, size=length, p=popularity)
        seq_items.append(
            [int(c * items_per_cate + r + 1) for c, r in zip(cats, ranks, strict=True)]
        )

    rows: dict[str, list[tuple[int, int, int, int, int]]] = {"train": [], "valid": [], "test": []}
    for u, items in enumerate(seq_items, start=1):
        own = set(items)
        n = len(items)
        for k in range(1, n):  # target items[k] with history items[:k]
            split = "test" if k == n - 1 else ("valid" if (with_valid and k == n - 2) else "train")
            neg = int(rng.integers(1, n_items + 1))
            while neg in own:
                neg = int(rng.integers(1, n_items + 1))
            rows[split].append((u, k, items[k], int(item_cate[items[k]]), 1))
            rows[split].append((u, k, neg, int(item_cate[neg]), 0))

    # n_j: number of training samples whose candidate or history contains item j
    freq = np.zeros(n_items + 1, dtype=np.int64)
    for u, k, item, _, _ in rows["train"]:
        present = set(seq_items[u - 1][:k])
        present.add(item)
        freq[list(present)] += 1

    items_df = pl.DataFrame(
        {
            "item": np.arange(1, n_items + 1, dtype=np.int32),
            "raw_item": [f"I{i:04d}" for i in range(1, n_items + 1)],
            "cate": item_cate[1:],
            "cate_name": [f"C{c:02d}" for c in item_cate[1:]],
            "freq": freq[1:],
        }
    )
    sequences = pl.DataFrame(
        {
            "user": np.arange(1, n_users + 1, dtype=np.int32),
            "raw_user": [f"U{u:04d}" for u in range(1, n_users + 1)],
            "items": seq_items,
            "cates": [[int(item_cate[i]) for i in s] for s in seq_items],
            "ts": [list(range(len(s))) for s in seq_items],
        },
        schema={
            "user": pl.Int32,
            "raw_user": pl.Utf8,
            "items": pl.List(pl.Int32),
            "cates": pl.List(pl.Int32),
            "ts": pl.List(pl.Int64),
        },
    )
    cols = ("user", "hist_len", "item", "cate", "label")
    splits = {
        name: pl.DataFrame(r, schema=list(cols), orient="row") for name, r in rows.items() if r
    }
    meta: dict[str, Any] = {
        "dataset": "tiny",
        "protocol": "amazon",
        "seed": seed,
        "valid": with_valid,
        "counts": {
            "users": n_users,
            "items": n_items,
            "cates": n_cates,
            "behaviours": sum(len(s) for s in seq_items),
            **{name: len(r) for name, r in rows.items()},
        },
        "vocab": {"user": n_users + 1, "item": n_items + 1, "cate": n_cates + 1},
        "inputs": {},
    }
    return write_dataset(out, meta=meta, items=items_df, sequences=sequences, splits=splits)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a read-only tiny dataset (≈5k train rows, 400 valid, 400 test); do not modify it."""
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny") / "data")


@pytest.fixture(scope="session")
def tiny_dataset_no_valid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same kind of dataset built without a valid split."""
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny_nv") / "data", with_valid=False)


@pytest.fixture(scope="session")
def sample_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled Amazon sample (sample_data/amazon), preprocessed once (read-only)."""
    from dinctl.data.datasets.amazon import preprocess_amazon

    out = tmp_path_factory.mktemp("sample") / "amazon"
    preprocess_amazon(Path(__file__).resolve().parents[1] / "sample_data" / "amazon", out)
    return out


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    """One intra-op thread: the CI machine has 2 cores shared by parallel jobs, and torch's
    thread pool slows tiny models down by 10× when oversubscribed. Without torch (the
    `notorch` tests on another Python, `make test-py`) there is nothing to set."""
    if not HAVE_TORCH:
        return
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def server() -> Any:
    """A loopback HTTP server with injectable faults (tests/faults.py), closed afterwards."""
    from faults import Server

    srv = Server()
    yield srv
    srv.close()
