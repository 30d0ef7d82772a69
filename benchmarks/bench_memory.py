"""Peak RSS and samples/s of `dinctl train` at MovieLens-20M scale (issue 8, "Memory").

    python benchmarks/gen_fullscale.py --only movielens   # once (bench_memory runs it if needed)
    python benchmarks/bench_memory.py [--skip-preprocess] [--train-seconds 90] [--max-lens 100 1000]

Stages (each skippable when its output is already there):
  1. the full-scale synthetic MovieLens-20M raw files (20,000,263 ratings of 138,493 users)
     under benchmarks/out/movielens, from gen_fullscale.py (reused when ratings.csv exists);
  2. `dinctl preprocess movielens` into benchmarks/out/ml20m-data under /usr/bin/time -v;
  3. the dataset's in-memory footprint (the CSR arrays + the split arrays, as
     `dinctl.data.store.load_dataset` holds them) against what materialising every sample's
     history would cost: Σ_samples min(hist_len, max_len) × 2 ids × 8 bytes (computed);
  4. per --max-lens value, `dinctl train --model din --act dice --reg mba --batch-size 1024`
     under /usr/bin/time -v, interrupted with SIGINT --train-seconds after its first log line
     (the trainer saves checkpoint.pt and exits 130; checked), samples/s from log.jsonl's step
     lines and peak RSS from time -v.
Prints a table; the load average (from /proc/loadavg) is printed next to each figure, since
other jobs on the machine slow it down.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
RSS_LIMIT_GIB = 8 * 1e9 / 2**30  # "8 GB": 7.45 GiB


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def peak_rss_gib(stderr: str) -> float:
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr)
    if m is None:
        sys.exit(f"no peak RSS in /usr/bin/time output:\n{stderr[-2000:]}")
    return int(m.group(1)) / 2**20


def child_rss_gib(time_pid: int) -> float | None:
    """Current RSS of the command /usr/bin/time runs (its only child), or None."""
    try:
        kids = Path(f"/proc/{time_pid}/task/{time_pid}/children").read_text().split()
        status = Path(f"/proc/{kids[0]}/status").read_text()
    except (OSError, IndexError):
        return None
    m = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(m.group(1)) / 2**20 if m else None


def ensure_raw(raw: Path) -> None:
    if (raw / "ratings.csv").exists() and (raw / "movies.csv").exists():
        print(
            f"[1] raw files: reusing {raw}/ratings.csv "
            f"({(raw / 'ratings.csv').stat().st_size / 1e9:.2f} GB)"
        )
        return
    print("[1] raw files: generating with gen_fullscale.py --only movielens (~2-3 min)")
    subprocess.run(
        [
            sys.executable,
            str(HERE / "gen_fullscale.py"),
            "--out",
            str(raw.parent),
            "--only",
            "movielens",
        ],
        check=True,
    )


def preprocess(raw: Path, data: Path) -> dict[str, float]:
    print(f"[2] dinctl preprocess movielens --raw {raw} --out {data} (load {loadavg()})")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [
            "/usr/bin/time",
            "-v",
            "dinctl",
            "preprocess",
            "movielens",
            "--raw",
            str(raw),
            "--out",
            str(data),
            "--overwrite",
        ],
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"preprocess failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    rss = peak_rss_gib(proc.stderr)
    print(f"    {wall:.1f} s, peak RSS {rss:.2f} GiB (load after: {loadavg()})")
    return {"wall_s": wall, "rss_gib": rss}


def footprint(data: Path, max_lens: list[int]) -> dict[str, float]:
    """Bytes of the dataset as load_dataset holds it vs per-sample materialised histories."""
    import numpy as np

    from dinctl.data.store import SPLITS, load_dataset

    print(f"[3] footprint of {data}")
    ds = load_dataset(data)
    csr = ds.seq_offsets.nbytes + ds.seq_items.nbytes + ds.seq_cates.nbytes
    small = ds.item_cate.nbytes + ds.item_freq.nbytes
    out: dict[str, float] = {
        "behaviours": int(ds.seq_items.shape[0]),
        "csr_bytes": csr,
        "item_table_bytes": small,
    }
    split_bytes = 0
    samples = 0
    hist = {m: 0 for m in max_lens}
    full = 0
    for name in SPLITS:
        if not ds.has_split(name):
            continue
        s = ds.split(name)
        split_bytes += sum(a.nbytes for a in (s.user, s.hist_len, s.item, s.cate, s.label))
        samples += len(s)
        h = s.hist_len.astype(np.int64)
        full += int(h.sum())
        for m in max_lens:
            hist[m] += int(np.minimum(h, m).sum())
        out[f"samples_{name}"] = len(s)
    out["split_bytes"] = split_bytes
    out["samples"] = samples
    out["dataset_bytes"] = csr + small + split_bytes
    for m in max_lens:
        out[f"materialised_bytes_max{m}"] = hist[m] * 2 * 8  # item + cate ids, int64
    out["materialised_bytes_full"] = full * 2 * 8
    return out


def first_step_time(log: Path) -> bool:
    if not log.exists():
        return False
    return any('"event": "step"' in line for line in log.read_text().splitlines())


def train(
    data: Path, run: Path, max_len: int, seconds: float, log_every: int, startup_limit: float
) -> dict[str, Any]:
    if run.exists():
        shutil.rmtree(run)
    cmd = [
        "dinctl",
        "train",
        "--data",
        str(data),
        "--model",
        "din",
        "--act",
        "dice",
        "--reg",
        "mba",
        "--batch-size",
        "1024",
        "--max-len",
        str(max_len),
        "--device",
        "cpu",
        "--log-every",
        str(log_every),
        "--out",
        str(run),
    ]
    print(f"[4] {' '.join(cmd)} (load {loadavg()})")
    load_before = loadavg()
    err = run.parent / f"{run.name}.time.txt"
    t0 = time.perf_counter()
    with open(err, "w") as ferr:
        # own session: the SIGINT goes to dinctl (GNU time ignores it while it waits)
        proc = subprocess.Popen(
            ["/usr/bin/time", "-v", *cmd],
            stdout=subprocess.DEVNULL,
            stderr=ferr,
            start_new_session=True,
        )
        log = run / "log.jsonl"
        t_first = None
        rss_samples: list[float] = []
        while proc.poll() is None:
            now = time.perf_counter()
            if t_first is None and first_step_time(log):
                t_first = now
            if (t_first is not None and now - t_first >= seconds) or (
                t_first is None and now - t0 > startup_limit
            ):
                break
            r = child_rss_gib(proc.pid)
            if r is not None:
                rss_samples.append(r)
            time.sleep(1.0)
        load_during = loadavg()
        t_sig = time.perf_counter()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        try:
            rc = proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            rc = proc.wait()
    stop_s = time.perf_counter() - t_sig
    stderr = err.read_text()
    ckpt = run / "checkpoint.pt"
    ok_stop = rc == 130 and ckpt.exists()
    steps = (
        [json.loads(x) for x in log.read_text().splitlines() if '"event": "step"' in x]
        if log.exists()
        else []
    )
    epochs = (
        [json.loads(x) for x in log.read_text().splitlines() if '"event": "epoch"' in x]
        if log.exists()
        else []
    )
    speeds = [s["samples_per_s"] for s in steps[1:]] or [s["samples_per_s"] for s in steps]
    res = {
        "max_len": max_len,
        "rc": rc,
        "checkpoint_saved": ckpt.exists(),
        "stopped_cleanly": ok_stop,
        "stop_s": stop_s,
        "startup_s": (t_first - t0) if t_first is not None else float("nan"),
        "steps": steps[-1]["step"] if steps else 0,
        "samples_per_s_median": statistics.median(speeds) if speeds else float("nan"),
        "samples_per_s_min": min(speeds) if speeds else float("nan"),
        "samples_per_s_max": max(speeds) if speeds else float("nan"),
        "rss_gib": peak_rss_gib(stderr),
        "rss_steady_gib": max(rss_samples[-10:]) if rss_samples else float("nan"),
        "validation_reached": bool(epochs),
        "load_before": load_before,
        "load_during": load_during,
    }
    saved = "checkpoint saved" if res["checkpoint_saved"] else "NO checkpoint"
    print(
        f"    exit {rc} after SIGINT ({saved}, "
        f"{stop_s:.1f} s to stop); startup {res['startup_s']:.1f} s; {res['steps']} steps; "
        f"median {res['samples_per_s_median']:,.0f} samples/s; peak RSS {res['rss_gib']:.2f} GiB; "
        f"load {load_during}"
    )
    if not ok_stop:
        print(f"    WARNING: expected exit 130 with checkpoint.pt; stderr tail:\n{stderr[-2000:]}")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--raw", type=Path, default=OUT / "movielens")
    ap.add_argument("--data", type=Path, default=OUT / "ml20m-data")
    ap.add_argument("--run", type=Path, default=OUT / "ml20m-run")
    ap.add_argument(
        "--skip-preprocess",
        action="store_true",
        help="reuse --data (must exist) instead of running preprocess",
    )
    ap.add_argument("--skip-footprint", action="store_true")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--max-lens", type=int, nargs="+", default=[100, 1000])
    ap.add_argument(
        "--train-seconds",
        type=float,
        default=90.0,
        help="wall time of training after the first log line, then SIGINT",
    )
    ap.add_argument(
        "--startup-limit",
        type=float,
        default=600.0,
        help="SIGINT anyway if no step line appeared after this long",
    )
    ap.add_argument(
        "--log-every",
        type=int,
        nargs="+",
        default=[10, 2],
        help="--log-every per --max-lens value (the last one repeats)",
    )
    ap.add_argument("--json", type=Path, default=OUT / "bench_memory.json")
    args = ap.parse_args()

    results: dict[str, object] = {"load_start": loadavg()}
    pre = None
    if not args.skip_preprocess:
        ensure_raw(args.raw)
        pre = preprocess(args.raw, args.data)
        results["preprocess"] = pre
    elif not (args.data / "meta.json").exists():
        sys.exit(f"--skip-preprocess but {args.data}/meta.json does not exist")
    fp = None
    if not args.skip_footprint:
        fp = footprint(args.data, args.max_lens)
        results["footprint"] = fp
    runs = []
    if not args.skip_train:
        for k, m in enumerate(args.max_lens):
            every = args.log_every[min(k, len(args.log_every) - 1)]
            run = args.run if k == 0 else args.run.with_name(f"{args.run.name}-len{m}")
            runs.append(train(args.data, run, m, args.train_seconds, every, args.startup_limit))
        results["train"] = runs
    args.json.write_text(json.dumps(results, indent=2) + "\n")

    gib = 2**30
    print(f"\nMovieLens-20M shape, 2-core CPU (load at start {results['load_start']})")
    print("| what | figure |")
    print("|---|---|")
    if pre:
        print(
            f"| `dinctl preprocess movielens` | {pre['wall_s']:.0f} s, "
            f"peak RSS {pre['rss_gib']:.2f} GiB |"
        )
    if fp:
        print(
            f"| samples (train/valid/test) | {fp['samples']:,} "
            f"({fp.get('samples_train', 0):,} / {fp.get('samples_valid', 0):,} / "
            f"{fp.get('samples_test', 0):,}) |"
        )
        print(
            f"| behaviour CSR (offsets + items + cates) | {fp['csr_bytes'] / gib:.3f} GiB "
            f"({fp['behaviours']:,} behaviours) |"
        )
        print(f"| split arrays (5 columns × all splits) | {fp['split_bytes'] / gib:.3f} GiB |")
        print(f"| dataset in memory, total | {fp['dataset_bytes'] / gib:.3f} GiB |")
        for m in args.max_lens:
            b = fp[f"materialised_bytes_max{m}"]
            print(
                f"| materialised histories, max_len {m} | {b / gib:,.1f} GiB "
                f"({b / fp['dataset_bytes']:,.0f}× the dataset) |"
            )
        b = fp["materialised_bytes_full"]
        print(f"| materialised histories, untruncated | {b / gib:,.1f} GiB |")
    for r in runs:
        val = "reached" if r["validation_reached"] else "not reached"
        fits = "yes" if r["rss_gib"] <= RSS_LIMIT_GIB else "NO"
        print(
            f"| train max_len {r['max_len']}: peak RSS | {r['rss_gib']:.2f} GiB "
            f"(≤ {RSS_LIMIT_GIB:.2f} GiB = 8 GB: {fits}) |"
        )
        print(
            f"| train max_len {r['max_len']}: samples/s | {r['samples_per_s_median']:,.0f} median "
            f"({r['samples_per_s_min']:,.0f}–{r['samples_per_s_max']:,.0f}), {r['steps']} steps, "
            f"startup {r['startup_s']:.0f} s, validation {val}, load {r['load_during']} |"
        )
        print(
            f"| train max_len {r['max_len']}: SIGINT | exit {r['rc']}, checkpoint "
            f"{'saved' if r['checkpoint_saved'] else 'MISSING'} in {r['stop_s']:.1f} s |"
        )
    print(f"\nfigures also in {args.json}")
    if any(r["rss_gib"] > RSS_LIMIT_GIB or not r["stopped_cleanly"] for r in runs):
        sys.exit(1)


if __name__ == "__main__":
    main()
