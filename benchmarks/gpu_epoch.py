"""Whole DIN-Dice epochs on full-scale synthetic Amazon data, end to end (run by benchmarks/gpu.sh).

1. writes (once, seeded) the Amazon Electronics shape at full scale with `bench_train.make_dataset`:
   192,403 users, 63,001 items, 801 categories, ~1.69M behaviours, 2,223,958 train rows,
   384,806 valid and 384,806 test rows (the raw-file path, gen_fullscale.py + preprocess, takes
   minutes more and gives the same shape);
2. runs `dinctl train` as a process for one epoch at batch 4096: float32, `--amp` (bf16
   autocast) and `--compile --length-buckets`, each under its own time limit;
3. samples `nvidia-smi` every 200 ms while each runs and prints, per run: the whole process's
   wall seconds, the epoch's seconds from log.jsonl (training + validation, the data path
   included: the CSR store and the rows live on the device, batches are gathered there), the
   training samples/s, validation seconds, valid AUC and the mean / peak GPU utilisation.

`--dry-run` runs the same on a small dataset on CPU (no nvidia-smi): it checks the script itself.
Results are printed and written as JSON to $OUT/gpu_epoch.json (or ./gpu_epoch.json).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
AMAZON_USERS = 192_403

RUNS = {
    "fp32": [],
    "amp": ["--amp"],
    "compile": ["--compile", "--length-buckets"],
}


def dataset(users: int) -> Path:
    """The seeded full-scale (or --users) Amazon-shaped dataset with a valid split."""
    from bench_train import OUT, make_dataset

    path = OUT / f"bench_train_amazon_u{users}_valid"
    if not (path / "meta.json").exists():
        t = time.perf_counter()
        make_dataset(path, users, valid=True)
        print(f"wrote {path} in {time.perf_counter() - t:.1f} s", flush=True)
    return path


class GpuSampler:
    """`nvidia-smi` utilisation and memory every 200 ms into a CSV file, while a run lasts."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> GpuSampler:
        if shutil.which("nvidia-smi"):
            query = "--query-gpu=timestamp,utilization.gpu,memory.used"
            with open(self.out, "w") as sink:
                self.proc = subprocess.Popen(
                    ["nvidia-smi", query, "--format=csv,noheader,nounits", "-lms", "200"],
                    stdout=sink,
                    stderr=subprocess.DEVNULL,
                )
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def summary(self) -> dict[str, Any]:
        """Mean and peak utilisation (%), peak memory (MiB); None without nvidia-smi."""
        if self.proc is None or not self.out.exists():
            return {"gpu_util_mean": None, "gpu_util_max": None, "gpu_mem_max_mib": None}
        util, mem = [], []
        for line in self.out.read_text().splitlines():
            parts = [p.strip() for p in line.split(",")]
            if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                util.append(int(parts[1]))
                mem.append(int(parts[2]))
        if not util:
            return {"gpu_util_mean": None, "gpu_util_max": None, "gpu_mem_max_mib": None}
        return {
            "gpu_util_mean": round(sum(util) / len(util), 1),
            "gpu_util_max": max(util),
            "gpu_mem_max_mib": max(mem),
            "gpu_samples": len(util),
        }


def run_one(name: str, data: Path, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """One `dinctl train` epoch as a process, timed, with the GPU sampled."""
    run_dir = out / f"gpu_epoch_{name}"
    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = [
        sys.executable, "-m", "dinctl", "train", "--data", str(data), "--model", "din",
        "--act", "dice", "--optimizer", "adam", "--lr", "0.001",
        "--batch-size", str(args.batch_size), "--epochs", "1", "--patience", "0",
        "--device", args.device, "--log-every", "50", "--out", str(run_dir), "--json",
        *RUNS[name],
    ]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    log = out / f"gpu_epoch_{name}.log"
    print(f"[{name}] {' '.join(cmd[1:])}", flush=True)
    with GpuSampler(out / f"gpu_epoch_{name}_smi.csv") as smi, open(log, "w") as sink:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env)
        try:
            code = proc.wait(timeout=args.run_timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        wall = time.perf_counter() - t0
    result: dict[str, Any] = {"run": name, "exit_code": code, "wall_seconds": round(wall, 1)}
    result.update(smi.summary())
    records = []
    if (run_dir / "log.jsonl").exists():
        records = [json.loads(x) for x in (run_dir / "log.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r.get("event") == "epoch"]
    if code != 0 or not epochs:
        print(log.read_text()[-3000:], file=sys.stderr)
        result["error"] = f"exit code {code}" + ("" if epochs else ", no epoch finished")
        return result
    rows = json.loads((data / "meta.json").read_text())["counts"]["train"]
    ep = epochs[-1]
    train_seconds = ep["seconds"] - ep.get("validation_seconds", 0.0)
    result.update(
        epoch_seconds=ep["seconds"],
        validation_seconds=ep.get("validation_seconds"),
        train_samples_per_s=round(rows / train_seconds),
        epoch_samples_per_s=round(rows / ep["seconds"]),
        valid_user_weighted_auc=ep.get("valid_user_weighted_auc"),
        valid_global_auc=ep.get("valid_global_auc"),
    )
    return result


def show(r: dict[str, Any]) -> None:
    if "error" in r:
        print(f"[{r['run']}] FAILED ({r['error']}) after {r['wall_seconds']} s", flush=True)
        return
    util = (
        f"GPU util mean {r['gpu_util_mean']}% / peak {r['gpu_util_max']}%, "
        f"memory peak {r['gpu_mem_max_mib']} MiB"
        if r["gpu_util_mean"] is not None
        else "GPU utilisation not sampled (no nvidia-smi)"
    )
    print(
        f"[{r['run']}] epoch {r['epoch_seconds']:.1f} s "
        f"(validation {r['validation_seconds']:.1f} s),"
        f" {r['train_samples_per_s']:,} train samples/s, {r['epoch_samples_per_s']:,} samples/s"
        f" over the epoch; whole process {r['wall_seconds']:.1f} s; valid AUC (user-weighted)"
        f" {r['valid_user_weighted_auc']:.4f}, global {r['valid_global_auc']:.4f}; {util}",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="small data on CPU: checks the script")
    ap.add_argument(
        "--users", type=int, default=None, help=f"default {AMAZON_USERS:,}; dry run 1,500"
    )
    ap.add_argument("--batch-size", type=int, default=None, help="default 4096; dry run 512")
    ap.add_argument("--runs", default="fp32,amp,compile", help="comma list of: " + ",".join(RUNS))
    ap.add_argument("--run-timeout", type=float, default=150, help="seconds allowed per run")
    args = ap.parse_args()
    args.users = args.users or (1_500 if args.dry_run else AMAZON_USERS)
    args.batch_size = args.batch_size or (512 if args.dry_run else 4096)
    args.device = "cpu" if args.dry_run else "cuda"
    out = Path(os.environ.get("OUT") or ".")
    out.mkdir(parents=True, exist_ok=True)

    import torch

    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
    print(f"torch {torch.__version__}, {name}; device {args.device}", flush=True)
    if not args.dry_run and not torch.cuda.is_available():
        raise SystemExit("error: no CUDA device here; run `benchmarks/gpu.sh --dry-run` instead")
    data = dataset(args.users)
    results = []
    for name in args.runs.split(","):
        if name not in RUNS:
            raise SystemExit(f"error: unknown run {name!r}; expected one of {', '.join(RUNS)}")
        results.append(run_one(name, data, args, out))
        show(results[-1])
    (out / "gpu_epoch.json").write_text(json.dumps(results, indent=2) + "\n")
    if any("error" in r for r in results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
