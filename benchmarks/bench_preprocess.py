"""Time `dinctl preprocess` on the full-scale synthetic files next to Polars' bare read floor.

    python benchmarks/gen_fullscale.py          # once: writes benchmarks/out/{amazon,movielens}
    python benchmarks/bench_preprocess.py [--only amazon|movielens]

For each dataset it measures, in the same run and with a warm page cache:
  * the read floor: the time Polars needs merely to read the needed columns of the same file
    (reviews: reviewerID, asin, unixReviewTime; ratings: all four columns), best of 2;
  * `dinctl preprocess` end to end (wall time and peak RSS from /usr/bin/time -v);
and prints the ratio. Amazon also checks the paper's counts.

--as-downloaded first registers the files with `dinctl download amazon --from` (untimed: hard
links plus the MANIFEST.json a download writes), so the timed preprocess reuses the recorded,
verified sha256 instead of hashing 1.5 GB of inputs, as it does after a real download.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
AMAZON_EXPECTED = {
    "users": 192_403,
    "items": 63_001,
    "categories": 801,
    "behaviours": 1_689_188,
    "train+valid": 2 * (1_689_188 - 2 * 192_403),  # 2,608,764
    "test": 2 * 192_403,  # 384,806
}

FLOOR = {
    "amazon": (
        "import polars as pl, sys\n"
        "df = pl.read_ndjson(sys.argv[1], schema={'reviewerID': pl.Utf8, 'asin': pl.Utf8,"
        " 'unixReviewTime': pl.Int64}, low_memory=False)\n"
        "print(df.height)\n"
    ),
    "movielens": (
        "import polars as pl, sys\n"
        "df = pl.read_csv(sys.argv[1], schema_overrides={'userId': pl.Int64, 'movieId': pl.Int64,"
        " 'rating': pl.Float64, 'timestamp': pl.Int64})\n"
        "print(df.height)\n"
    ),
}


def _timed(cmd: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS GiB, stdout) of a command under /usr/bin/time -v."""
    t0 = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))  # type: ignore[union-attr]
    return wall, rss_kb / 2**20, proc.stdout


def bench(name: str, raw: Path, data_file: Path) -> dict[str, float]:
    floors = [_timed([sys.executable, "-c", FLOOR[name], str(data_file)]) for _ in range(2)]
    floor = min(f[0] for f in floors)
    out = OUT / "data" / name
    cmd = [
        "dinctl",
        "preprocess",
        name,
        "--raw",
        str(raw),
        "--out",
        str(out),
        "--overwrite",
        "--json",
    ]
    wall, rss, stdout = _timed(cmd)
    summary = json.loads(stdout)
    print(f"\n{name}: {data_file.name} ({data_file.stat().st_size / 1e9:.2f} GB)")
    floor_rss = min(f[1] for f in floors)
    print(f"  polars read floor (needed columns): {floor:7.2f} s  peak RSS {floor_rss:.2f} GiB")
    print(f"  dinctl preprocess {name:<17}: {wall:7.2f} s  peak RSS {rss:.2f} GiB")
    print(f"  ratio preprocess / floor: {wall / floor:.2f}x")
    counts = {k: summary[k] for k in ("users", "items", "categories", "behaviours")}
    print(f"  summary: {counts} samples {summary['samples']}")
    return {"floor_s": floor, "wall_s": wall, "rss_gib": rss, "summary": summary}  # type: ignore[dict-item]


def _register(raw: Path, out: Path) -> Path:
    """`dinctl download amazon --from raw --out out` (hard links + MANIFEST.json), untimed."""
    cmd = ["dinctl", "download", "amazon", "--from", str(raw), "--out", str(out),
           "--no-progress", "--json"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    print(f"registered {raw} as {out} (MANIFEST.json with each file's sha256)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", choices=["amazon", "movielens"])
    ap.add_argument("--as-downloaded", action="store_true",
                    help="Amazon: time it on files registered by `dinctl download --from`")
    args = ap.parse_args()
    ok = True
    if args.only in (None, "amazon"):
        raw = OUT / "amazon"
        if args.as_downloaded:
            raw = _register(raw, OUT / "amazon-downloaded")
        r = bench("amazon", raw, raw / "reviews_Electronics_5.json")
        s = r["summary"]
        got = {
            "users": s["users"],  # type: ignore[index]
            "items": s["items"],  # type: ignore[index]
            "categories": s["categories"],  # type: ignore[index]
            "behaviours": s["behaviours"],  # type: ignore[index]
            "train+valid": s["samples"]["train"] + s["samples"]["valid"],  # type: ignore[index]
            "test": s["samples"]["test"],  # type: ignore[index]
        }
        if got != AMAZON_EXPECTED:
            print(f"  COUNTS WRONG: expected {AMAZON_EXPECTED}, got {got}")
            ok = False
        else:
            print(
                "  counts match the paper: 192,403 / 63,001 / 801 / 1,689,188 → 2,608,764 + 384,806"
            )
        target = r["wall_s"] <= 2 * r["floor_s"] and r["rss_gib"] <= 4
        print(f"  target (≤ 2x floor, ≤ 4 GiB): {'met' if target else 'MISSED'}")
    if args.only in (None, "movielens"):
        raw = OUT / "movielens"
        r = bench("movielens", raw, raw / "ratings.csv")
        target = r["wall_s"] <= 30 and r["rss_gib"] <= 6
        print(f"  target (≤ 30 s, ≤ 6 GiB): {'met' if target else 'MISSED'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
