"""Generate the bundled sample data in the exact raw formats (seeded; re-run to reproduce).

Amazon 2014:  amazon/reviews_Electronics_5.json (strict JSON lines, all real keys) and
              amazon/meta_Electronics.json (Python-literal lines, single quotes).
MovieLens:    movielens/ratings.csv and movielens/movies.csv (`|`-separated genres).
Your logs:    logs/clicks.csv, a generic click log for `dinctl preprocess logs`;
              logs/events.csv + logs/users.csv + logs/schema.toml, a multi-field click log
              (item, category, brand per event; ad slot, hour and price per impression) with
              a user profile file (age band, gender, city).
Taobao:       taobao/UserBehavior.csv (Tianchi 649: user,item,category,pv|buy|cart|fav,time;
              no header).
Taobao ad:    taobao-ad/{raw_sample,ad_feature,user_profile,behavior_log}.csv (Tianchi 56,
              real headers, `NULL` brands, empty profile levels, the header's trailing space).

Planted structure: every user prefers 2-3 categories and most of their behaviours come from
those, so a candidate in the user's preferred categories (a positive) is predictable from the
history, and a uniformly drawn negative mostly is not.

    python dinctl/sample_data/generate.py     # writes next to this file
"""

from __future__ import annotations

import csv
import json
import random
import time
from collections.abc import Sequence
from pathlib import Path

SEED = 20180801
HERE = Path(__file__).resolve().parent

AMAZON_USERS = 250
AMAZON_CATEGORIES = [
    ("Computers & Accessories", "Cables & Accessories", "Monitor Accessories"),
    ("Computers & Accessories", "Data Storage", "External Hard Drives"),
    ("Computers & Accessories", "Keyboards, Mice & Input Devices", "Mice"),
    ("Computers & Accessories", "Networking Products", "Routers"),
    ("Computers & Accessories", "Laptop Accessories", "Bags & Cases"),
    ("Camera & Photo", "Lenses", "Camera Lenses"),
    ("Camera & Photo", "Tripods & Monopods", "Complete Tripods"),
    ("Camera & Photo", "Flashes", "Shoe Mount Flashes"),
    ("Television & Video", "Televisions", "LED & LCD TVs"),
    ("Television & Video", "Streaming Media Players", "Streaming Media Players"),
    ("Home Audio", "Speakers", "Bookshelf Speakers"),
    ("Home Audio", "Receivers & Amplifiers", "Receivers"),
    ("Headphones", "Earbud Headphones", "Earbud Headphones"),
    ("Headphones", "Over-Ear Headphones", "Over-Ear Headphones"),
    ("Car Electronics", "Car Audio", "Car Stereo Receivers"),
    ("GPS & Navigation", "Vehicle GPS", "Vehicle GPS Units"),
    ("Portable Audio & Video", "MP3 Players", "MP3 & MP4 Players"),
    ("Accessories & Supplies", "Batteries", "Rechargeable Batteries"),
    ("Accessories & Supplies", "Power Strips", "Surge Protectors"),
    ("Office Electronics", "Printers", "Laser Printers"),
    ("Security & Surveillance", "Surveillance Cameras", "Dome Cameras"),
    ("Kids' Electronics", "Kids' Tablets", "Kids' Tablets"),
]
ITEMS_PER_CATEGORY = 14
ADJECTIVES = ["great", "solid", "cheap", "sturdy", "flimsy", "excellent", "decent", "reliable"]
NOUNS = ["cable", "drive", "mouse", "router", "lens", "tripod", "speaker", "adapter", "charger"]
REVIEW_WORDS = (
    "works well for the price and arrived quickly the build quality is good but the manual "
    "could be better I would buy again after a month of daily use it still holds up fine"
).split()

MOVIELENS_USERS = 300
GENRES = [
    "Action",
    "Adventure",
    "Animation",
    "Children",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
]
MOVIES_PER_GENRE = 14
TITLE_WORDS = ["Night", "River", "Stranger", "Return", "House", "Last", "City", "Dream", "Road"]


def _asin(rng: random.Random) -> str:
    return "B00" + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(7))


def _reviewer(rng: random.Random) -> str:
    return "A" + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(13))


def _prefs(rng: random.Random, n: int) -> list[int]:
    return rng.sample(range(n), rng.choice([2, 2, 3]))


def _amazon_title(rng: random.Random, cat: tuple[str, ...], i: int) -> str:
    kind = i % 4
    base = f"{rng.choice(ADJECTIVES).title()} {cat[-1]} {rng.choice(NOUNS)}"
    if kind == 0:
        return f"Kid's {base}"  # an apostrophe: repr() switches to double quotes
    if kind == 1:
        return f'{base} 7" Screen'  # a double quote inside single quotes
    if kind == 2:
        return f"""Monster's 3' {base} "Pro\""""  # both quotes: repr() escapes \'
    return base


def generate_amazon(out: Path, rng: random.Random) -> None:
    """Write reviews_Electronics_5.json and meta_Electronics.json."""
    out.mkdir(parents=True, exist_ok=True)
    items: list[tuple[str, int]] = []  # (asin, category index)
    seen: set[str] = set()
    for c in range(len(AMAZON_CATEGORIES)):
        for _ in range(ITEMS_PER_CATEGORY):
            asin = _asin(rng)
            while asin in seen:
                asin = _asin(rng)
            seen.add(asin)
            items.append((asin, c))
    by_cat: dict[int, list[str]] = {}
    for asin, c in items:
        by_cat.setdefault(c, []).append(asin)

    reviews: list[dict[str, object]] = []
    reviewers: set[str] = set()
    for _ in range(AMAZON_USERS):
        uid = _reviewer(rng)
        while uid in reviewers:
            uid = _reviewer(rng)
        reviewers.add(uid)
        prefs = _prefs(rng, len(AMAZON_CATEGORIES))
        n = rng.randint(5, 12)  # 5-core: every user has at least 5 reviews
        day = rng.randint(14_000, 16_000)  # days since the epoch (2008..2013)
        chosen: list[str] = []
        while len(chosen) < n:
            if rng.random() < 0.85:
                asin = rng.choice(by_cat[rng.choice(prefs)])
            else:
                asin = rng.choice(items)[0]
            if asin not in chosen:
                chosen.append(asin)
        name = rng.choice(["J. Smith", 'Robert "Bob" Lee', "O'Brien", "Amazon Customer", "K"])
        for asin in chosen:
            day += rng.choice([0, 0, 1, 3, 12, 40])  # day resolution: ties happen, as for real
            ts = day * 86_400
            up = rng.randint(0, 5)
            words = rng.sample(REVIEW_WORDS, rng.randint(4, 9))
            reviews.append(
                {
                    "reviewerID": uid,
                    "asin": asin,
                    "reviewerName": name,
                    "helpful": [up, up + rng.randint(0, 3)],
                    "reviewText": " ".join(words).capitalize() + ".",
                    "overall": float(rng.randint(3, 5)),
                    "summary": " ".join(words[:3]).capitalize(),
                    "unixReviewTime": ts,
                    "reviewTime": time.strftime("%m %d, %Y", time.gmtime(ts)).replace(" 0", " "),
                }
            )
    # the real file is grouped by item, not by user or time: the reader must sort
    rng.shuffle(reviews)
    reviews.sort(key=lambda r: str(r["asin"]))
    with open(out / "reviews_Electronics_5.json", "w", encoding="utf-8") as f:
        for r in reviews:
            f.write(json.dumps(r) + "\n")

    meta_rows = list(items)
    for _ in range(12):  # products nobody reviewed: the reader must drop them
        meta_rows.append((_asin(rng), rng.randrange(len(AMAZON_CATEGORIES))))
    rng.shuffle(meta_rows)
    with open(out / "meta_Electronics.json", "w", encoding="utf-8") as f:
        for i, (asin, c) in enumerate(meta_rows):
            cat = AMAZON_CATEGORIES[c]
            row: dict[str, object] = {"asin": asin}
            if i % 3:
                row["title"] = _amazon_title(rng, cat, i)
            row["price"] = round(rng.uniform(3, 400), 2)
            row["imUrl"] = f"http://ecx.images-amazon.com/images/I/{asin}.jpg"
            if i % 2:
                row["related"] = {"also_bought": [x for x, _ in rng.sample(items, 3)]}
            row["salesRank"] = {"Electronics": rng.randint(1, 500_000)}
            cats = [["Electronics", *cat]]
            if i % 5 == 0:  # several category paths: the last one decides (categories[-1][-1])
                cats.insert(0, ["Electronics", "Brands", "Generic"])
            row["categories"] = cats
            f.write(repr(row) + "\n")


def generate_movielens(out: Path, rng: random.Random) -> None:
    """Write ratings.csv and movies.csv in the ml-20m format."""
    out.mkdir(parents=True, exist_ok=True)
    movies: list[tuple[int, str, list[str]]] = []
    movie_id = 1
    by_genre: dict[int, list[int]] = {}
    for g in range(len(GENRES)):
        for j in range(MOVIES_PER_GENRE):
            words = rng.sample(TITLE_WORDS, 2)
            title = f"{words[0]} {words[1]}"
            if j % 3 == 0:
                title = f"{title}, The"  # a comma: the CSV field is quoted
            title = f"{title} ({rng.randint(1950, 2015)})"
            extra = rng.sample(range(len(GENRES)), rng.randint(0, 2))
            others = [GENRES[x] for x in extra if x != g]
            movies.append((movie_id, title, [GENRES[g], *others]))
            by_genre.setdefault(g, []).append(movie_id)
            movie_id += rng.randint(1, 3)  # ids have gaps, as in the release
    movies.append((movie_id, "Unrated Movie (2015)", ["(no genres listed)"]))
    genre_of = {m: GENRES.index(gs[0]) for m, _, gs in movies if gs[0] in GENRES}
    all_ids = [m for m, _, gs in movies if gs[0] in GENRES]

    rows: list[tuple[int, int, float, int]] = []
    for user in range(1, MOVIELENS_USERS + 1):
        prefs = _prefs(rng, len(GENRES))
        n = rng.randint(8, 40)
        ts = rng.randint(1_000_000_000, 1_400_000_000)
        chosen: list[int] = []
        while len(chosen) < n:
            if rng.random() < 0.6:
                m = rng.choice(by_genre[rng.choice(prefs)])
            else:
                m = rng.choice(all_ids)
            if m not in chosen:
                chosen.append(m)
        for m in chosen:
            liked = genre_of[m] in prefs
            if liked:
                rating = rng.choice([4.0, 4.5, 5.0, 5.0, 3.5])
            else:
                rating = rng.choice([1.0, 2.0, 2.5, 3.0, 4.0])
            ts += rng.choice([0, 1, 30, 600, 86_400])  # some ties: broken by movieId
            rows.append((user, m, rating, ts))
    rows.sort(key=lambda r: (r[0], r[1]))  # the release is sorted by user, then movieId
    with open(out / "ratings.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["userId", "movieId", "rating", "timestamp"])
        for user, m, rating, ts in rows:
            w.writerow([user, m, f"{rating:.1f}", ts])
    with open(out / "movies.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["movieId", "title", "genres"])
        for m, title, genres in movies:
            w.writerow([m, title, "|".join(genres)])


def generate_logs(out: Path, rng: random.Random) -> None:
    """Write clicks.csv: a generic click log (user, item, category, Unix time, 0/1 click)."""
    out.mkdir(parents=True, exist_ok=True)
    cats = ["audio", "cameras", "cables", "storage", "phones", "games"]
    items = [(f"p{i:03d}", cats[i % len(cats)]) for i in range(1, 121)]
    by_cat = {c: [it for it in items if it[1] == c] for c in cats}
    with open(out / "clicks.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["uid", "pid", "shop", "ts", "click"])
        for u in range(1, 81):
            prefs = rng.sample(cats, 2)
            t = rng.randint(1_600_000_000, 1_650_000_000)
            for _ in range(rng.randint(6, 14)):
                liked = rng.random() < 0.6
                pid, shop = rng.choice(by_cat[rng.choice(prefs)] if liked else items)
                t += rng.choice([60, 3_600, 86_400])
                click = int(shop in prefs and rng.random() < 0.8)
                w.writerow([f"u{u:03d}", pid, shop, t, click])


def generate_multifield_logs(out: Path, rng: random.Random) -> None:
    """Write events.csv (labelled impressions with behaviour, context and numeric fields) and
    users.csv (one profile row per user, some users without one).

    Planted: clicks follow the user's preferred categories, are likelier in ad slot "top" and
    for users of segment gender "f" (a signal only the user field carries)."""
    out.mkdir(parents=True, exist_ok=True)
    cats = ["audio", "cameras", "cables", "storage", "phones", "games"]
    brands = ["acme", "globex", "initech", "umbrella", "hooli"]
    items = [
        (f"i{i:03d}", cats[i % len(cats)], brands[(i * 7) % len(brands)]) for i in range(1, 91)
    ]
    by_cat = {c: [it for it in items if it[1] == c] for c in cats}
    profiles = []
    with open(out / "events.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["user_id", "item_id", "cate", "brand", "ts", "slot", "hour", "price", "click"])
        for u in range(1, 101):
            prefs = rng.sample(cats, 2)
            gender = rng.choice(["f", "m"])
            if u % 10:  # every tenth user has no profile row
                profiles.append(
                    (
                        f"u{u:03d}",
                        rng.choice(["18-24", "25-34", "35+"]),
                        gender,
                        rng.choice(["north", "south"]),
                    )
                )
            t = rng.randint(1_600_000_000, 1_650_000_000)
            for _ in range(rng.randint(8, 16)):
                item, cate, brand = rng.choice(
                    by_cat[rng.choice(prefs)] if rng.random() < 0.6 else items
                )
                slot = rng.choice(["top", "side", "feed"])
                t += rng.choice([60, 3_600, 86_400])
                p = 0.15 + 0.35 * (cate in prefs) + 0.25 * (slot == "top") + 0.2 * (gender == "f")
                click = int(rng.random() < p)
                price = round(rng.uniform(5, 500), 2)
                w.writerow(
                    [f"u{u:03d}", item, cate, brand, t, slot, (t // 3600) % 24, price, click]
                )
    with open(out / "users.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["user_id", "age", "gender", "city"])
        w.writerows(profiles)
    (out / "schema.toml").write_text(
        "# dinctl preprocess logs events.csv --schema schema.toml\n"
        'user = "user_id"\n'
        'time = "ts"\n'
        'label = "click"\n'
        'behaviour = ["item_id", "cate", "brand"]  # item, category, then more fields\n'
        'context = ["slot", "hour"]\n'
        'numeric = ["price"]\n'
        "\n"
        "[user_features]\n"
        'file = "users.csv"  # relative to this file\n'
        'columns = ["age", "gender", "city"]\n'
    )


def generate_taobao(out: Path, rng: random.Random) -> None:
    """Write UserBehavior.csv: 300 users over 2017-11-25..12-03 (Beijing), no header."""
    out.mkdir(parents=True, exist_ok=True)
    n_cates = 30
    cate_ids = rng.sample(range(1_000, 5_000_000), n_cates)
    items = [(rng.randrange(1, 5_163_070), cate_ids[i % n_cates]) for i in range(600)]
    by_cat = {c: [it for it in items if it[1] == c] for c in cate_ids}
    rows = []
    for u in rng.sample(range(1, 1_018_011), 300):
        prefs = rng.sample(cate_ids, rng.choice([2, 2, 3]))
        t = rng.randint(1_511_539_200, 1_511_800_000)
        for _ in range(rng.randint(8, 30)):
            liked = rng.random() < 0.8
            item, cate = rng.choice(by_cat[rng.choice(prefs)] if liked else items)
            btag = rng.choices(["pv", "cart", "fav", "buy"], weights=[89, 6, 3, 2])[0]
            t = min(t + rng.choice([5, 60, 600, 3_600, 20_000]), 1_512_316_799)
            rows.append((u, item, cate, btag, t))
    with open(out / "UserBehavior.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)


def _ad_catalogue(rng: random.Random) -> tuple[list[tuple[int, int, int, int, int]], list[int]]:
    """(adgroup, cate, campaign, customer, brand or 0) rows and the category ids."""
    cates = rng.sample(range(1, 12_961), 16)
    brands = {c: rng.sample(range(1, 461_498), 3) for c in cates}
    ads = []
    for i, a in enumerate(rng.sample(range(1, 846_812), 160)):
        cate = cates[i % len(cates)]
        brand = rng.choice(brands[cate]) if rng.random() < 0.85 else 0
        ads.append((a, cate, rng.randrange(1, 423_437), rng.randrange(1, 255_876), brand))
    return ads, cates


def generate_taobao_ad(out: Path, rng: random.Random) -> None:
    """Write the four Alimama display-ad files for 240 users (real headers and quirks).

    Planted signal: a click is likely when the ad's category is one the user browsed before
    the impression, more so on slot 430539_1007 and for gender-2 users."""
    out.mkdir(parents=True, exist_ok=True)
    ads, cates = _ad_catalogue(rng)
    start, day = 1_494_000_000, 86_400  # 2017-05-06 00:00 Beijing; 8 days of impressions
    users = rng.sample(range(1, 1_141_730), 240)
    profiles, samples = [], []
    behaviours: list[tuple[int, int, str, int, int | str]] = []
    for u in users:
        prefs = set(rng.sample(cates, 2))
        gender = rng.choice([1, 2])
        if rng.random() < 0.9:  # some impression users have no profile row, as in the data
            pvalue = rng.choice(["", "1", "2", "3"])
            city = rng.choice(["", "1", "2", "3", "4"])
            profiles.append((u, rng.randrange(0, 97), rng.randrange(0, 13), gender,
                             rng.randrange(0, 7), pvalue, rng.choice([1, 2, 3]),
                             rng.choice([0, 1]), city))  # fmt: skip
        t = start - 14 * day + rng.randrange(0, day)
        own = len(behaviours)  # this user's behaviours are behaviours[own:]
        for _ in range(rng.randint(10, 40)):
            t += rng.randrange(600, 2 * day)
            cate = rng.choice(sorted(prefs)) if rng.random() < 0.8 else rng.choice(cates)
            brand = rng.choice([a[4] for a in ads if a[1] == cate] + [rng.randrange(1, 460_561)])
            btag = rng.choices(["pv", "cart", "fav", "buy"], weights=[90, 4, 3, 3])[0]
            behaviours.append((u, t, btag, cate, brand if brand else "NULL"))
        for _ in range(rng.randint(4, 14)):
            ts = start + rng.randrange(0, 8 * day)
            ad = rng.choice(ads)
            pid = rng.choice(["430548_1007", "430539_1007"])
            seen = any(b[3] == ad[1] and b[1] < ts for b in behaviours[own:])
            p = 0.04 + 0.5 * seen + 0.15 * (pid == "430539_1007") + 0.1 * (gender == 2)
            clk = int(rng.random() < p)
            samples.append((u, ts, ad[0], pid, 1 - clk, clk))
    _write_csv(out / "raw_sample.csv", ["user", "time_stamp", "adgroup_id", "pid", "nonclk",
                                        "clk"], samples)  # fmt: skip
    _write_csv(out / "ad_feature.csv",
               ["adgroup_id", "cate_id", "campaign_id", "customer", "brand", "price"],
               [(a, c, camp, cust, b if b else "NULL", f"{rng.randrange(1, 100_000) / 10:.1f}")
                for a, c, camp, cust, b in ads])  # fmt: skip
    _write_csv(out / "user_profile.csv",
               ["userid", "cms_segid", "cms_group_id", "final_gender_code", "age_level",
                "pvalue_level", "shopping_level", "occupation", "new_user_class_level "],
               sorted(profiles))  # fmt: skip
    rng.shuffle(behaviours)  # the real log is not sorted
    _write_csv(out / "behavior_log.csv", ["user", "time_stamp", "btag", "cate", "brand"],
               behaviours)


def _write_csv(path: Path, header: list[str], rows: Sequence[Sequence[object]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def main() -> None:
    generate_amazon(HERE / "amazon", random.Random(SEED))
    generate_movielens(HERE / "movielens", random.Random(SEED + 1))
    generate_logs(HERE / "logs", random.Random(SEED + 2))
    generate_multifield_logs(HERE / "logs", random.Random(SEED + 3))
    generate_taobao(HERE / "taobao", random.Random(SEED + 3))
    generate_taobao_ad(HERE / "taobao-ad", random.Random(SEED + 4))


if __name__ == "__main__":
    main()
