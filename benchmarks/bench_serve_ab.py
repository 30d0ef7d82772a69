"""Serving forward A/B in one process: each git ref's eager engine against this tree's.

Each git ref (default: 6671f8e, the kernel entered from inside the torch forward, and `main`)
is extracted with `git archive` into a temp folder and imported as `dinctl_<name>`, next to
this tree's `dinctl`. One DIN at the paper's size (64 + 64
embeddings, unit 80-40, MLP 200-80, PReLU; Amazon-shaped vocabulary), the same weights loaded
into every version (checked: their outputs agree to 1e-4), one padded request of R = 1,
T = 100, C = 200. Calls alternate between the versions (ABAB...) so a loaded machine hits all
alike; the median ms per call of each version and the median over rounds of its paired
ratio to the first ref are printed with the CPU flags. `--cold`: bench_serve.py's floor (a
forward-sized matmul) before every call, untimed, so each call starts on cold caches as a
served request does.

  python benchmarks/bench_serve_ab.py [--threads 1 2] [--rounds 30] [--calls 5]
      [--refs 6671f8e main] [--candidates 200] [--history 100] [--cold]
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path
from statistics import median
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dinctl.training.device import cpu_features  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import floor_call  # noqa: E402

N_ITEMS, N_CATES = 64_000, 800
NAMES = ("hist_item", "hist_cate", "hist_len", "cand_item", "cand_cate")  # `request`'s order
IMPORT = re.compile(r"\b(from|import) dinctl(?=[. ])")


def extract(ref: str, name: str, into: Path) -> str:
    """`dinctl/` at `ref` as the package `dinctl_<name>` under `into`; its module name."""
    blob = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "dinctl"], check=True,
                          capture_output=True).stdout  # fmt: skip
    with tarfile.open(fileobj=BytesIO(blob)) as tar:
        tar.extractall(into / name, filter="data")
    pkg = into / f"dinctl_{name}"
    (into / name / "dinctl").rename(pkg)
    for path in pkg.rglob("*.py"):
        path.write_text(IMPORT.sub(rf"\1 dinctl_{name}", path.read_text()))
    return f"dinctl_{name}"


def scorer(package: str, state: dict[str, torch.Tensor] | None) -> tuple[Any, Any]:
    """`package`'s eager engine (what serve and predict call: the RequestScorer, and since
    fc4c6af the fused kernel from the numpy inputs) around a DIN loaded with `state` (if
    given), as a function of the request's tensors returning its logits; and the DIN."""
    models = importlib.import_module(f"{package}.models")
    cfg = models.ModelConfig(model="din", n_users=10, n_items=N_ITEMS, n_cates=N_CATES, act="prelu")
    torch.manual_seed(0)
    net = models.build_model(cfg).eval()
    if state is not None:
        net.load_state_dict(state)
    request_scorer = importlib.import_module(f"{package}.serving.scorer").RequestScorer(net)
    engine = importlib.import_module(f"{package}.serving.engines").eager_engine(request_scorer)

    def run(*x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(engine(dict(zip(NAMES, (t.numpy() for t in x), strict=True)))[0])

    return run, net


def request(t: int, c: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    return (
        torch.randint(1, N_ITEMS, (1, t), generator=g),
        torch.randint(1, N_CATES, (1, t), generator=g),
        torch.tensor([t]),
        torch.randint(1, N_ITEMS, (1, c), generator=g),
        torch.randint(1, N_CATES, (1, c), generator=g),
    )


def alternate(scorers: dict[str, Any], x: tuple[torch.Tensor, ...], rounds: int, calls: int,
              cold: Any = None) -> tuple[dict[str, float], dict[str, float]]:  # fmt: skip
    """Median ms per call of each scorer, the scorers taking turns call by call, and the
    median over rounds of each one's round time over the first one's (paired ratios)."""
    times: dict[str, list[float]] = {name: [] for name in scorers}
    ratios: dict[str, list[float]] = {name: [] for name in scorers}
    with torch.inference_mode():
        for s in scorers.values():  # warm-up
            for _ in range(3):
                s(*x)
        for _ in range(rounds):
            spent = dict.fromkeys(scorers, 0.0)
            for _ in range(calls):
                for name, s in scorers.items():
                    if cold is not None:
                        cold()  # evicts the caches, as the previous request's forward does
                    t0 = time.perf_counter()
                    s(*x)
                    dt = (time.perf_counter() - t0) * 1e3
                    times[name].append(dt)
                    spent[name] += dt
            base = next(iter(spent.values()))
            for name in scorers:
                ratios[name].append(spent[name] / base)
    return ({name: median(ts) for name, ts in times.items()},
            {name: median(rs) for name, rs in ratios.items()})  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--calls", type=int, default=5)
    ap.add_argument("--refs", nargs="+", default=["6671f8e", "main"])
    ap.add_argument("--candidates", type=int, default=200)
    ap.add_argument("--history", type=int, default=100)
    ap.add_argument("--cold", action="store_true", help="the floor's matmuls before each call")
    a = ap.parse_args()
    print(f"cpu_flags={cpu_features()} cores={os.cpu_count()} torch={torch.__version__} "
          f"load={os.getloadavg()}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        sys.path.insert(0, tmp)
        packages = {ref: extract(ref, f"v{i}", Path(tmp)) for i, ref in enumerate(a.refs)}
        packages["this tree"] = "dinctl"
        first, net = scorer(packages[a.refs[0]], None)
        scorers = {a.refs[0]: first}
        for ref, pkg in list(packages.items())[1:]:
            scorers[ref] = scorer(pkg, net.state_dict())[0]
        x = request(a.history, a.candidates)
        with torch.inference_mode():
            want = first(*x)[0]
            for ref, s in scorers.items():
                diff = float((s(*x)[0] - want).abs().max())
                assert diff < 1e-4, f"{ref} disagrees with {a.refs[0]} by {diff}"
        for threads in a.threads:
            torch.set_num_threads(threads)
            cold = floor_call() if a.cold else None  # bench_serve.py's floor
            med, ratio = alternate(scorers, x, a.rounds, a.calls, cold)
            line = "  ".join(f"{k}: {v:.2f} ms ({ratio[k]:.2f}x)" for k, v in med.items())
            print(f"threads={threads} R=1 T={a.history} C={a.candidates} cold={a.cold}  {line}")


if __name__ == "__main__":
    main()
