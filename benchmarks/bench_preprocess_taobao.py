"""Peak RSS and rate of `dinctl preprocess taobao-ad` on the synthetic full-scale files.

    python benchmarks/gen_taobao_fullscale.py --scale 0.01 --out benchmarks/out/taobao-ad-1pct
    python benchmarks/bench_preprocess_taobao.py benchmarks/out/taobao-ad-1pct [--shards 1 4]

For each --shards value it runs the CLI once in a fresh process under /usr/bin/time -v and
prints wall time, peak RSS, the behaviour-log rows per second and the dataset's counts.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path


def _rows(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 24), b"")) - 1


def run(raw: Path, shards: int | None) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bench-taobao-") as tmp:
        cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "dinctl.cli.main", "preprocess",
               "taobao-ad", "--raw", str(raw), "--out", f"{tmp}/ds", "--json"]  # fmt: skip
        if shards:
            cmd += ["--shards", str(shards)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", done.stderr)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    assert wall and rss, done.stderr
    parts = [float(p) for p in wall.group(1).split(":")]
    seconds = parts[-1] + 60 * parts[-2] + (3600 * parts[-3] if len(parts) > 2 else 0)
    summary = json.loads(done.stdout)
    log_rows = _rows(raw / "behavior_log.csv")
    return {
        "shards": shards or "auto",
        "wall_s": round(seconds, 1),
        "peak_rss_mb": round(int(rss.group(1)) / 1024),
        "log_rows": log_rows,
        "log_rows_per_s": round(log_rows / seconds),
        "impressions": sum(summary["samples"].values()),
        "kept_behaviours": summary["behaviours"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("raw", type=Path, help="folder written by gen_taobao_fullscale.py")
    parser.add_argument("--shards", type=int, nargs="*", default=[0], help="0 = auto")
    args = parser.parse_args()
    for shards in args.shards:
        print(json.dumps(run(args.raw, shards or None)))


if __name__ == "__main__":
    main()
