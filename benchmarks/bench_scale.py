"""Per-rank peak RSS and step time of `train --shard-embeddings` on 1 and 2 ranks vs unsharded.

    python benchmarks/gen_scale.py --out benchmarks/out/scale-20m        # once (20M items)
    python benchmarks/bench_scale.py [--data benchmarks/out/scale-20m] [--emb-dim 16]
        [--runs unsharded,sharded1,sharded2] [--epochs 1] [--eval-batch-size 1024] [--seed 23]

Each run is a real `dinctl train` process tree (torchrun for the sharded ones), one thread per
process (OMP_NUM_THREADS=1: 2 ranks on this 2-core machine), SGD, PReLU, MBA. Every 0.1 s the
script reads VmHWM (the kernel's peak resident set) of each training process, so each rank's
peak RSS is its own, not the sum. Step time is the median over log.jsonl's step lines of
batch / samples-per-second. The valid user-weighted AUC comes from the run's --json result.
Prints the CPU flags and the load average with the figures, and a JSON line per run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

RUNS = ("unsharded", "sharded1", "sharded2")


def cpu_flags() -> str:
    """The CPU model and the SIMD flags that matter to the kernels (avx2, avx512*, amx*)."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next(
        (ln.split(":", 1)[1].strip() for ln in text.splitlines() if "model name" in ln), ""
    )
    flags = next(
        (ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), []
    )
    keep = sorted(f for f in flags if f.startswith(("avx2", "avx512", "amx", "fma")))
    return f"{model or platform.processor()} [{' '.join(keep)}] cores={os.cpu_count()}"


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        out += [int(k) for k in kids]
        todo += [int(k) for k in kids]
    return out


def peak_kib(pid: int) -> tuple[int, str] | None:
    """(VmHWM in KiB, command line) of a process, None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]), cmd
    return None


def run_watched(
    cmd: list[str], env: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], dict[int, int]]:
    """Run `cmd`, polling the peak RSS of every training process in its tree."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peaks: dict[int, int] = {}
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            for pid in [proc.pid, *descendants(proc.pid)]:
                got = peak_kib(pid)
                if got and " train " in got[1] and "torch.distributed.run" not in got[1]:
                    peaks[pid] = max(peaks.get(pid, 0), got[0])
            time.sleep(0.1)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    out, err = proc.communicate()
    done.set()
    watcher.join()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), peaks


def eval_config(args: argparse.Namespace) -> Path:
    """A --config file with the validation batch size (a setting without a flag)."""
    path = args.work / "eval.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"eval_batch_size = {args.eval_batch_size}\n")
    return path


def command(run: str, args: argparse.Namespace, out: Path) -> list[str]:
    train = [
        "-m", "dinctl", "train", "--data", str(args.data), "--out", str(out), "--json",
        "--device", "cpu", "--optimizer", "sgd", "--lr", str(args.lr), "--act", "prelu",
        "--reg", "mba", "--reg-lambda", str(args.reg_lambda), "--emb-dim", str(args.emb_dim),
        "--batch-size", str(args.batch_size),
        "--epochs", str(args.epochs), "--log-every", "20", "--seed", str(args.seed),
        "--threads", "1", "--config", str(eval_config(args)),
    ]  # fmt: skip
    if run == "unsharded":
        return [sys.executable, *train]
    nproc = run.removeprefix("sharded")
    launch = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        nproc,
    ]
    return [*launch, *train, "--shard-embeddings"]


def one_run(run: str, args: argparse.Namespace) -> dict[str, Any]:
    out = args.work / run
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    proc, peaks = run_watched(command(run, args, out), env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{run} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout)
    steps = [
        json.loads(line)
        for line in (out / "log.jsonl").read_text().splitlines()
        if json.loads(line)["event"] == "step"
    ]
    step_s = [args.batch_size / r["samples_per_s"] for r in steps[1:]]  # the first holds warm-up
    return {
        "run": run,
        "ranks": max(len(peaks), 1),
        "peak_rss_mib_per_rank": sorted(round(k / 1024) for k in peaks.values()),
        "step_ms_median": round(1000 * statistics.median(step_s), 1) if step_s else None,
        "steps": steps[-1]["step"] if steps else 0,
        "valid_user_weighted_auc": result["best_valid"].get("valid_user_weighted_auc"),
        "valid_logloss": result["best_valid"].get("valid_logloss"),
        "wall_s": round(wall, 1),
        "load_avg": os.getloadavg()[0],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("benchmarks/out/scale-20m"))
    p.add_argument("--work", type=Path, default=Path("benchmarks/out/scale-runs"))
    p.add_argument("--runs", default=",".join(RUNS))
    p.add_argument("--emb-dim", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=1024)
    # validation's activations at 4096 rows x 100 behaviours are ~130 MB of every run's peak
    p.add_argument("--eval-batch-size", type=int, default=1024)
    p.add_argument("--lr", type=float, default=0.5)
    # §6.5's λ, spelled out: the fast recipe's default MBA λ (1) is tuned for Adam, not SGD
    p.add_argument("--reg-lambda", type=float, default=0.01)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--seed", type=int, default=23)
    args = p.parse_args()
    print(f"# cpu: {cpu_flags()}")
    results = [one_run(run, args) for run in args.runs.split(",")]
    base = next((r for r in results if r["run"] == "unsharded"), None)
    for r in results:
        if base is not None:
            r["peak_vs_unsharded"] = round(
                max(r["peak_rss_mib_per_rank"]) / max(base["peak_rss_mib_per_rank"]), 2
            )
            if r["step_ms_median"] and base["step_ms_median"]:
                r["step_vs_unsharded"] = round(r["step_ms_median"] / base["step_ms_median"], 2)
        print(json.dumps(r))


if __name__ == "__main__":
    main()
