"""Seeded synthetic Alimama display-ad files (Tianchi 56) with the real schema and statistics.

At --scale 1.0: 1,141,729 users; raw_sample.csv 26,557,961 impressions over 8 days (clk rate
5.1%, two ad slots); behavior_log.csv 723,268,134 behaviours over 22 days (pv/cart/fav/buy at
96.3/1.6/1.1/1.0%), 12,968 categories, 460,561 brands; ad_feature.csv 846,811 ads (6,769
categories, 99,814 brands, 29% NULL brand); user_profile.csv for 93% of the users, with empty
pvalue_level/new_user_class_level as in the release. Brands are Zipf-popular and each sells
in one category (95% of its behaviours). Per-user counts are log-normal around the real means
(633 behaviours, 23.3 impressions). A --scale fraction shrinks users, ads and rows alike (the
category and brand vocabularies stay full size). Written user chunk by user chunk, so memory
stays small at any scale.

    python benchmarks/gen_taobao_fullscale.py --scale 0.01 [--out benchmarks/out/taobao-ad]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import polars as pl

SEED = 20180801
FULL = {"users": 1_141_729, "impressions": 26_557_961, "behaviours": 723_268_134,
        "ads": 846_811, "profiles": 1_061_768}  # fmt: skip
CATES, BRANDS, AD_CATES, AD_BRANDS = 12_968, 460_561, 6_769, 99_814
AD_START, DAY = 1_494_000_000, 86_400  # 2017-05-06 00:00 Beijing
LOG_START = AD_START - 14 * DAY  # the behaviour log starts two weeks earlier
BTAGS, BTAG_P = np.array(["pv", "cart", "fav", "buy"]), [0.963, 0.016, 0.011, 0.010]
CHUNK_USERS = 20_000
# each brand sells in one category (95% of a brand's behaviours fall in it)
BRAND_CATE = np.random.default_rng(SEED + 1).integers(1, CATES + 1, BRANDS + 1)


def _counts(rng: np.random.Generator, n: int, mean: float, sigma: float) -> np.ndarray:
    """(n,) positive log-normal counts with the given mean."""
    raw = rng.lognormal(np.log(mean) - sigma**2 / 2, sigma, n)
    return np.maximum(1, np.round(raw)).astype(np.int64)


def _write(frame: pl.DataFrame, f: object, header: bool) -> None:
    frame.write_csv(f, include_header=header)  # type: ignore[arg-type]


def ads(rng: np.random.Generator, n_ads: int, out: Path) -> tuple[np.ndarray, np.ndarray]:
    """Write ad_feature.csv; returns (adgroup ids, their categories)."""
    ids = rng.permutation(np.arange(1, FULL["ads"] + 1))[:n_ads]
    cate = rng.integers(1, AD_CATES + 1, n_ads)
    brand = rng.integers(1, AD_BRANDS + 1, n_ads).astype(str).astype(object)
    brand[rng.random(n_ads) < 0.29] = "NULL"
    pl.DataFrame({
        "adgroup_id": ids, "cate_id": cate,
        "campaign_id": rng.integers(1, 423_437, n_ads), "customer": rng.integers(1, 255_876, n_ads),
        "brand": brand.astype(str), "price": np.round(rng.lognormal(5, 1.5, n_ads), 2),
    }).write_csv(out / "ad_feature.csv")  # fmt: skip
    return ids, cate


def users_chunk(rng: np.random.Generator, users: np.ndarray, scale_rows: float,
                ad_ids: np.ndarray) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:  # fmt: skip
    """(behaviours, impressions, profiles) of one chunk of users."""
    n = len(users)
    nb = _counts(rng, n, 633.5 * scale_rows, 1.2)
    ni = _counts(rng, n, 23.3 * scale_rows, 0.9)
    bu = np.repeat(users, nb)
    brand = np.minimum(rng.zipf(1.3, len(bu)), BRANDS)  # a few brands are most of the log
    cate = np.where(rng.random(len(bu)) < 0.95, BRAND_CATE[brand],
                    rng.integers(1, CATES + 1, len(bu)))  # fmt: skip
    behaviours = pl.DataFrame({
        "user": bu, "time_stamp": rng.integers(LOG_START, AD_START + 8 * DAY, len(bu)),
        "btag": BTAGS[rng.choice(4, len(bu), p=BTAG_P)], "cate": cate, "brand": brand,
    })  # fmt: skip
    iu = np.repeat(users, ni)
    clk = (rng.random(len(iu)) < 0.0514).astype(np.int64)
    impressions = pl.DataFrame({
        "user": iu, "time_stamp": rng.integers(AD_START, AD_START + 8 * DAY, len(iu)),
        "adgroup_id": ad_ids[rng.integers(0, len(ad_ids), len(iu))],
        "pid": np.where(rng.random(len(iu)) < 0.7, "430548_1007", "430539_1007"),
        "nonclk": 1 - clk, "clk": clk,
    })  # fmt: skip
    has = users[rng.random(n) < FULL["profiles"] / FULL["users"]]
    m = len(has)
    level = rng.integers(1, 4, m).astype(str).astype(object)
    level[rng.random(m) < 0.54] = None  # written as an empty field, as in the release
    city = rng.integers(1, 5, m).astype(str).astype(object)
    city[rng.random(m) < 0.32] = None
    level_col = pl.Series(level.tolist(), dtype=pl.Utf8)
    city_col = pl.Series(city.tolist(), dtype=pl.Utf8)
    profiles = pl.DataFrame({
        "userid": has, "cms_segid": rng.integers(0, 97, m), "cms_group_id": rng.integers(0, 13, m),
        "final_gender_code": rng.integers(1, 3, m), "age_level": rng.integers(0, 7, m),
        "pvalue_level": level_col, "shopping_level": rng.integers(1, 4, m),
        "occupation": rng.integers(0, 2, m), "new_user_class_level ": city_col,
    })  # fmt: skip
    return behaviours, impressions, profiles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=0.01, help="fraction of the real size")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "taobao-ad")
    args = parser.parse_args()
    rng = np.random.default_rng(SEED)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    n_users = max(10, round(FULL["users"] * args.scale))
    ad_ids, _ = ads(rng, max(10, round(FULL["ads"] * args.scale)), args.out)
    users = rng.permutation(np.arange(1, 1_141_730))[:n_users]
    names = ("behavior_log.csv", "raw_sample.csv", "user_profile.csv")
    files = [open(args.out / name, "wb") for name in names]  # noqa: SIM115 - closed below
    totals = [0, 0, 0]
    try:
        for i, lo in enumerate(range(0, n_users, CHUNK_USERS)):
            frames = users_chunk(rng, users[lo : lo + CHUNK_USERS], 1.0, ad_ids)
            for k, (frame, f) in enumerate(zip(frames, files, strict=True)):
                _write(frame, f, header=i == 0)
                totals[k] += frame.height
    finally:
        for f in files:
            f.close()
    took = time.perf_counter() - start
    print(f"{args.out}: {n_users:,} users, {totals[0]:,} behaviours, {totals[1]:,} impressions, "
          f"{totals[2]:,} profiles in {took:.1f}s")  # fmt: skip


if __name__ == "__main__":
    main()
