"""Time dinctl.metrics on 5.5M predictions over 38k users against a scikit-learn per-user loop.

Run: python benchmarks/bench_metrics.py [--rows 5500000] [--users 38000] [--repeat 3]
Scores are float32 (what a model's sigmoid gives) rounded to 4 decimals so ties occur.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.metrics import roc_auc_score

from dinctl.metrics import auc_score, log_loss, user_auc_details


def best_of(repeat: int, fn):  # type: ignore[no-untyped-def]
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def sklearn_per_user(y: np.ndarray, s: np.ndarray, u: np.ndarray) -> float:
    """The usual GAUC: group rows by user, roc_auc_score per user, weight by impressions."""
    order = np.argsort(u, kind="stable")
    u_s, y_s, s_s = u[order], y[order], s[order]
    starts = np.flatnonzero(np.r_[True, u_s[1:] != u_s[:-1]])
    ends = np.r_[starts[1:], len(u_s)]
    num = den = 0.0
    for a, b in zip(starts, ends, strict=True):
        yu = y_s[a:b]
        if yu.min() != yu.max():
            num += (b - a) * roc_auc_score(yu, s_s[a:b])
            den += b - a
    return num / den


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=5_500_000)
    ap.add_argument("--users", type=int, default=38_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-sklearn", action="store_true")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    u = rng.integers(1, args.users + 1, args.rows).astype(np.int32)
    y = rng.integers(0, 2, args.rows).astype(np.int8)
    logit = rng.normal(size=args.rows) + 0.8 * y
    s = np.round(1 / (1 + np.exp(-logit)), 4).astype(np.float32)
    print(f"rows={args.rows:,} users={args.users:,} (best of {args.repeat})")

    t, d = best_of(args.repeat, lambda: user_auc_details(y, s, u))
    print(
        f"user_auc_details   {t:7.3f} s  gauc={d.score:.6f} scored={d.users_scored} "
        f"skipped={d.users_skipped}"
    )
    t_auc, a = best_of(args.repeat, lambda: auc_score(y, s))
    print(f"auc_score          {t_auc:7.3f} s  auc={a:.6f}")
    t_ll, ll = best_of(args.repeat, lambda: log_loss(y, s))
    print(f"log_loss           {t_ll:7.3f} s  logloss={ll:.6f}")
    s64 = s.astype(np.float64) + rng.random(args.rows) * 1e-9  # not representable in float32
    t64, _ = best_of(args.repeat, lambda: user_auc_details(y, s64, u))
    print(f"user_auc (float64) {t64:7.3f} s")
    if not args.skip_sklearn:
        t_sk, g = best_of(1, lambda: sklearn_per_user(y, s, u))
        print(f"sklearn per-user   {t_sk:7.3f} s  gauc={g:.6f}  (|diff|={abs(g - d.score):.1e})")
        print(f"speed-up           {t_sk / t:7.1f} x")


if __name__ == "__main__":
    main()
