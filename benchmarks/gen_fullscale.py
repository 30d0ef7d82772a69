"""Seeded full-scale synthetic raw files with the real statistics (for bench_preprocess.py).

Amazon Electronics 2014 5-core: exactly 192,403 users, 63,001 items, 801 categories,
1,689,188 reviews (every user ≥ 5, no user reviews an item twice), review text of realistic
length (~1.3 GB file), and a meta file of 498,196 Python-literal lines (the reviewed items plus
unreviewed ones). MovieLens-20M: 20,000,263 ratings of 138,493 users (each ≥ 20) over 27,278
movies, in the release's CSV layout.

    python benchmarks/gen_fullscale.py [--out benchmarks/out] [--only amazon|movielens]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import polars as pl

SEED = 20180801
AMAZON = {"users": 192_403, "items": 63_001, "categories": 801, "reviews": 1_689_188}
META_LINES = 498_196
ML = {"users": 138_493, "movies": 27_278, "ratings": 20_000_263, "min_per_user": 20}
B36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
WORDS = (
    "the this it is was and but for with works great good price quality sound battery cable "
    "screen fast slow easy setup after month use would recommend buy again product item "
    "amazon seller shipping arrived quickly packaging charger case fits perfectly laptop "
    "camera lens picture clear bright bass headphones comfortable ear volume loud signal "
    "router wifi range speed connection drops firmware update instructions manual support "
    "returned replacement broke stopped working two weeks year still solid build plastic "
    "metal cheap feel sturdy light weight small big size port usb hdmi adapter power button "
    "remote control tv mount wall kit install minutes hours love hate okay fine excellent "
    "poor terrible awesome decent expected better worse than my old one previous model"
).split()


def _ids(rng: np.random.Generator, n: int, prefix: str, width: int) -> list[str]:
    """n distinct ids: prefix + `width` base-36 characters, in random order."""
    space = min(36**width, 2**62)
    vals = np.unique(rng.integers(0, space, size=int(n * 1.1) + 100))
    vals = rng.permutation(vals)[:n]
    out = []
    for v in vals.tolist():
        s = []
        for _ in range(width):
            v, r = divmod(v, 36)
            s.append(B36[r])
        out.append(prefix + "".join(s))
    return out


def _text_pool(rng: np.random.Generator, n: int, mean_words: int) -> list[str]:
    words = np.array(WORDS)
    pool = []
    for length in rng.lognormal(np.log(mean_words), 0.6, size=n).astype(int) + 3:
        chunk = words[rng.integers(0, len(words), size=length)]
        sentences = [" ".join(chunk[i : i + 12]).capitalize() for i in range(0, length, 12)]
        pool.append(". ".join(sentences) + ".")
    return pool


def _distinct_per_user(
    rng: np.random.Generator, user: np.ndarray, item: np.ndarray, n_items: int,
    fixed: np.ndarray, weights: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """Redraw (not fixed) items until no user holds the same item twice."""
    rows = np.arange(len(user))
    while len(rows):
        key = user[rows].astype(np.int64) * (n_items + 1) + item[rows]
        order = np.argsort(key, kind="stable")
        ks = key[order]
        same = np.zeros(len(ks), dtype=bool)
        same[1:] = ks[1:] == ks[:-1]
        same[:-1] |= same[1:]  # every member of a duplicated group
        group_rows = rows[order[same]]
        group_keys = ks[same]
        # keep one per group (the fixed one when there is one), redraw the others
        pri = np.where(fixed[group_rows], 0, 1)
        o = np.lexsort((pri, group_keys))
        gk, gr = group_keys[o], group_rows[o]
        first = np.ones(len(gk), dtype=bool)
        first[1:] = gk[1:] != gk[:-1]
        redraw = gr[~first]
        if not len(redraw):
            break
        item[redraw] = rng.choice(n_items, size=len(redraw), p=weights) + 1
        active = np.unique(user[redraw])
        rows = rows[np.isin(user[rows], active)]
    return item


def amazon(out: Path, rng: np.random.Generator) -> None:
    """reviews_Electronics_5.json + meta_Electronics.json with the real counts."""
    t0 = time.time()
    out.mkdir(parents=True, exist_ok=True)
    n_u, n_i, n_c, n_r = (AMAZON[k] for k in ("users", "items", "categories", "reviews"))
    extra = n_r - 5 * n_u
    user_w = rng.pareto(1.5, size=n_u) + 1e-3
    counts = 5 + rng.multinomial(extra, user_w / user_w.sum())
    counts = np.minimum(counts, 400)
    while counts.sum() < n_r:  # give what the cap removed back to random users
        short = n_r - int(counts.sum())
        idx = rng.integers(0, n_u, size=short)
        np.add.at(counts, idx, 1)
        counts = np.minimum(counts, 400)
    user = np.repeat(np.arange(1, n_u + 1), counts)  # (R,) user index 1..U
    item_w = 1.0 / np.arange(1, n_i + 1) ** 0.8
    item_w = rng.permutation(item_w / item_w.sum())
    item = rng.choice(n_i, size=n_r, p=item_w) + 1
    fixed = np.zeros(n_r, dtype=bool)
    slots = rng.choice(n_r, size=n_i, replace=False)  # every item reviewed at least once
    item[slots] = np.arange(1, n_i + 1)
    fixed[slots] = True
    item = _distinct_per_user(rng, user, item, n_i, fixed, item_w)
    assert len(np.unique(item)) == n_i and len(np.unique(user)) == n_u
    item_cat = np.concatenate([np.arange(n_c), rng.integers(0, n_c, size=n_i - n_c)])
    item_cat = rng.permutation(item_cat)  # every category has an item
    # time: each user reviews over the years, day resolution (ties happen)
    start = rng.integers(13_000, 16_000, size=n_u)
    gaps = rng.choice(np.array([0, 0, 1, 2, 7, 30, 90]), size=n_r)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    cum = np.cumsum(gaps)
    day = start[user - 1] + cum - cum[first][user - 1]
    ts = day.astype(np.int64) * 86_400
    print(f"  amazon ids/times {time.time() - t0:.1f}s", flush=True)

    users = _ids(rng, n_u, "A", 13)
    asins = _ids(rng, META_LINES, "B00", 7)
    cats = [f"Category {c:03d} {WORDS[c % len(WORDS)].title()}" for c in range(n_c)]
    cats[7] = "Kids' Electronics"  # a name with an apostrophe: repr() uses double quotes
    names = ["Amazon Customer", "J. Smith", 'Robert "Bob" Lee', "O'Brien", "Tech Guy", "K"]
    texts = _text_pool(rng, 20_000, 64)
    summaries = _text_pool(rng, 5_000, 4)
    order = np.lexsort((ts, item))  # the real file is grouped by product
    day_str: dict[int, str] = {}
    text_idx = rng.integers(0, len(texts), size=n_r)
    sum_idx = rng.integers(0, len(summaries), size=n_r)
    name_idx = rng.integers(0, len(names), size=n_r)
    helpful = rng.integers(0, 6, size=(n_r, 2))
    overall = rng.integers(1, 6, size=n_r)
    with open(out / "reviews_Electronics_5.json", "w", encoding="utf-8") as f:
        for lo in range(0, n_r, 100_000):
            lines = []
            for r in order[lo : lo + 100_000].tolist():
                t = int(ts[r])
                d = day_str.get(t)
                if d is None:
                    d = time.strftime("%m %d, %Y", time.gmtime(t)).replace(" 0", " ")
                    day_str[t] = d
                h0 = int(helpful[r, 0])
                lines.append(
                    f'{{"reviewerID": "{users[user[r] - 1]}", "asin": "{asins[item[r] - 1]}", '
                    f'"reviewerName": {json.dumps(names[name_idx[r]])}, '
                    f'"helpful": [{h0}, {h0 + int(helpful[r, 1])}], '
                    f'"reviewText": "{texts[text_idx[r]]}", "overall": {float(overall[r])}, '
                    f'"summary": "{summaries[sum_idx[r]]}", "unixReviewTime": {t}, '
                    f'"reviewTime": "{d}"}}\n'
                )
            f.write("".join(lines))
    print(f"  amazon reviews written {time.time() - t0:.1f}s", flush=True)

    meta_cat = np.concatenate([item_cat, rng.integers(0, n_c, size=META_LINES - n_i)])
    meta_order = rng.permutation(META_LINES)
    with open(out / "meta_Electronics.json", "w", encoding="utf-8") as f:
        lines = []
        for k, m in enumerate(meta_order.tolist()):
            asin = asins[m]
            row: dict[str, object] = {"asin": asin}
            if k % 4:
                row["title"] = summaries[k % len(summaries)][:60] + (
                    " 7\" Kid's" if k % 9 == 0 else ""
                )
            row["price"] = round(float(5 + (k * 7919) % 500) + 0.99, 2)
            row["imUrl"] = f"http://ecx.images-amazon.com/images/I/{asin}.jpg"
            if k % 3:
                pick = rng.integers(0, META_LINES, size=int(rng.integers(1, 25)))
                row["related"] = {"also_bought": [asins[j] for j in pick.tolist()]}
            row["salesRank"] = {"Electronics": int(k % 500_000) + 1}
            path = ["Electronics", "Accessories & Supplies", cats[meta_cat[m]]]
            row["categories"] = [["Electronics", "Brands"], path] if k % 5 == 0 else [path]
            lines.append(repr(row) + "\n")
            if len(lines) == 50_000:
                f.write("".join(lines))
                lines = []
        f.write("".join(lines))
    print(f"  amazon meta written {time.time() - t0:.1f}s", flush=True)


def movielens(out: Path, rng: np.random.Generator) -> None:
    """ratings.csv + movies.csv of MovieLens-20M's size."""
    t0 = time.time()
    out.mkdir(parents=True, exist_ok=True)
    n_u, n_m, n_r, low = ML["users"], ML["movies"], ML["ratings"], ML["min_per_user"]
    w = rng.pareto(1.2, size=n_u) + 1e-3
    counts = low + rng.multinomial(n_r - low * n_u, w / w.sum())
    counts = np.minimum(counts, 9_000)
    while counts.sum() < n_r:
        idx = rng.integers(0, n_u, size=n_r - int(counts.sum()))
        np.add.at(counts, idx, 1)
        counts = np.minimum(counts, 9_000)
    user = np.repeat(np.arange(1, n_u + 1), counts)
    movie_w = 1.0 / np.arange(1, n_m + 1) ** 0.9
    movie_w = rng.permutation(movie_w / movie_w.sum())
    movie = rng.choice(n_m, size=n_r, p=movie_w) + 1
    fixed = np.zeros(n_r, dtype=bool)
    slots = rng.choice(n_r, size=n_m, replace=False)
    movie[slots] = np.arange(1, n_m + 1)
    fixed[slots] = True
    movie = _distinct_per_user(rng, user, movie, n_m, fixed, movie_w)
    movie_ids = np.sort(rng.choice(131_262, size=n_m, replace=False) + 1)  # gaps, as released
    rating = rng.choice(
        np.arange(1, 11) / 2, size=n_r, p=np.array([1, 3, 2, 7, 4, 20, 12, 27, 8, 16]) / 100
    )
    start = rng.integers(820_000_000, 1_420_000_000, size=n_u)
    ts = start[user - 1] + rng.integers(0, 50_000_000, size=n_r)
    df = pl.DataFrame(
        {"userId": user, "movieId": movie_ids[movie - 1], "rating": rating, "timestamp": ts}
    ).sort("userId", "movieId")
    df.write_csv(out / "ratings.csv", float_precision=1)
    genres = ["Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary",
              "Drama", "Fantasy", "Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance",
              "Sci-Fi", "Thriller", "War", "Western"]  # fmt: skip
    g = rng.integers(0, len(genres), size=(n_m, 3))
    k = rng.integers(1, 4, size=n_m)
    movies = pl.DataFrame(
        {
            "movieId": movie_ids,
            "title": [
                f"Movie {i}, The ({1920 + i % 95})"
                if i % 4 == 0
                else f"Movie {i} ({1920 + i % 95})"
                for i in range(n_m)
            ],
            "genres": [
                "|".join(dict.fromkeys(genres[x] for x in g[i, : k[i]]))
                if i % 500
                else "(no genres listed)"
                for i in range(n_m)
            ],
        }
    )
    movies.write_csv(out / "movies.csv")
    print(f"  movielens written {time.time() - t0:.1f}s", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    ap.add_argument("--only", choices=["amazon", "movielens"])
    args = ap.parse_args()
    if args.only in (None, "amazon"):
        amazon(args.out / "amazon", np.random.default_rng(SEED))
    if args.only in (None, "movielens"):
        movielens(args.out / "movielens", np.random.default_rng(SEED + 1))


if __name__ == "__main__":
    main()
