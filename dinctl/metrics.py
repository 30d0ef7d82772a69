"""Evaluation metrics of the DIN paper: arrays in, numbers out.

`*_score` is higher-is-better, `*_loss` lower-is-better. Every function is vectorised: the
user-weighted AUC does one global sort by (user, score) and segment sums, never a Python loop
over users.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dinctl.errors import DinctlError

__all__ = [
    "UserAUC",
    "auc_score",
    "log_loss",
    "rela_impr",
    "user_auc_details",
    "user_weighted_auc_score",
]


@dataclass(frozen=True)
class UserAUC:
    """User-weighted AUC (Eq. 10) and how many users and impressions it covers."""

    score: float
    users_scored: int
    users_skipped: int  # users whose impressions are all one class: their AUC is undefined
    impressions_scored: int


def _labels(y_true: Any, name: str = "y_true") -> np.ndarray:
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise DinctlError(f"expected {name} to be one-dimensional, got shape {y.shape} instead")
    if y.size == 0:
        raise DinctlError(f"expected at least one prediction, got an empty {name} instead")
    if y.dtype == bool:
        return y
    if not np.issubdtype(y.dtype, np.number):
        raise DinctlError(f"expected binary labels 0/1 in {name}, got dtype {y.dtype} instead")
    bad = (y != 0) & (y != 1)
    if bad.any():
        value = y[np.argmax(bad)].item()
        raise DinctlError(f"expected binary labels 0/1 in {name}, got {value!r} instead")
    return y == 1


def _scores(y_score: Any, n: int, name: str = "y_score") -> np.ndarray:
    s = np.asarray(y_score)
    if s.ndim != 1:
        raise DinctlError(f"expected {name} to be one-dimensional, got shape {s.shape} instead")
    if s.shape[0] != n:
        raise DinctlError(
            f"expected {name} to have the same length as y_true ({n}), got {s.shape[0]} instead"
        )
    if not np.issubdtype(s.dtype, np.number) or s.dtype == bool:
        raise DinctlError(f"expected numeric {name}, got dtype {s.dtype} instead")
    if s.dtype not in (np.float32, np.float64):
        s = s.astype(np.float64)
    n_nan = int(np.isnan(s).sum())
    if n_nan:
        raise DinctlError(
            f"expected finite scores, got {n_nan} NaN value(s) in {name}",
            hint="the model diverged or the input has NaNs; check the training log",
        )
    return s


def _both_classes(pos: np.ndarray) -> None:
    n_pos = int(pos.sum())
    if n_pos == 0 or n_pos == pos.shape[0]:
        only = "1s" if n_pos else "0s"
        raise DinctlError(
            f"expected both classes, got only {only}",
            hint="AUC is undefined with a single class; score a split with clicks and non-clicks",
        )


def _user_codes(user: np.ndarray) -> np.ndarray:
    """Dense non-negative int64 codes for user ids, order-preserving."""
    if np.issubdtype(user.dtype, np.integer) and user.size:
        lo, hi = int(user.min()), int(user.max())
        if hi - lo < 2**30:
            return user.astype(np.int64) - lo
    return np.unique(user, return_inverse=True)[1].reshape(-1).astype(np.int64)


def _score_codes(s: np.ndarray) -> tuple[np.ndarray, int]:
    """Order-preserving uint64 codes of scores (equal scores, equal codes) and their bit width."""
    s32 = s if s.dtype == np.float32 else s.astype(np.float32)
    if s32 is s or np.array_equal(s32, s):
        s32 = s32 + np.float32(0.0)  # -0.0 → +0.0: equal scores must get equal bits
        bits = s32.view(np.uint32)
        flipped = np.where(bits >> np.uint32(31), ~bits, bits | np.uint32(0x80000000))
        return flipped.astype(np.uint64), 32
    order = np.argsort(s)  # (N,) float64 scores: dense ranks instead of raw bits
    s_sorted = s[order]
    change = np.empty(s.shape[0], dtype=np.uint64)
    change[0] = 0
    np.not_equal(s_sorted[1:], s_sorted[:-1], out=change[1:], casting="unsafe")
    codes = np.empty(s.shape[0], dtype=np.uint64)
    codes[order] = np.cumsum(change)
    return codes, int(codes.max()).bit_length()


@dataclass(frozen=True)
class _PerUser:
    n: np.ndarray  # (U,) impressions
    n_pos: np.ndarray  # (U,)
    rank_sum_pos: np.ndarray  # (U,) sum of within-user tie-averaged ranks of the positives


def _per_user_rank_sums(pos: np.ndarray, s: np.ndarray, code: np.ndarray) -> _PerUser:
    """One global sort by (user, score) and segment sums; ties get their average rank."""
    n = pos.shape[0]
    score_code, width = _score_codes(s)
    if int(code.max()).bit_length() + width + 1 <= 64:
        # pack (user, score, label) in one uint64 so a plain sort (no argsort) does the work
        shift = np.uint64(width + 1)
        key = (code.astype(np.uint64) << shift) | (score_code << np.uint64(1))
        key = np.sort(key | pos.astype(np.uint64))  # (N,)
        pos_sorted = key & np.uint64(1)
        user_sorted = key >> shift
        tie_key = key >> np.uint64(1)  # (user, score)
        new_tie = np.empty(n, dtype=bool)
        new_tie[0] = True
        np.not_equal(tie_key[1:], tie_key[:-1], out=new_tie[1:])
    else:
        order = np.lexsort((s, code))  # (N,) by user, then score
        user_sorted = code[order]
        s_sorted = s[order]
        pos_sorted = pos[order].astype(np.float64)
        new_tie = np.empty(n, dtype=bool)
        new_tie[0] = True
        new_tie[1:] = (user_sorted[1:] != user_sorted[:-1]) | (s_sorted[1:] != s_sorted[:-1])

    new_user = np.empty(n, dtype=bool)
    new_user[0] = True
    np.not_equal(user_sorted[1:], user_sorted[:-1], out=new_user[1:])
    user_start = np.flatnonzero(new_user)  # (U,)

    tie_start = np.flatnonzero(new_tie)  # (G,)
    tie_end = np.append(tie_start[1:], n)  # (G,)
    # rank_sum_pos per user = Σ over tie runs of (#positives in run)·(average 1-based position)
    pos_in_tie = np.add.reduceat(pos_sorted, tie_start)  # (G,)
    mean_pos = (tie_start + tie_end + 1) / 2.0  # (G,) global 1-based average position
    tie_user = np.cumsum(new_user[tie_start]) - 1  # (G,) a new user always starts a new run
    n_pos = np.add.reduceat(pos_sorted, user_start).astype(np.float64)  # (U,)
    global_rank_sum = np.bincount(
        tie_user, weights=pos_in_tie * mean_pos, minlength=len(user_start)
    )
    rank_sum_pos = global_rank_sum - n_pos * user_start  # shift global positions to the user's
    n_u = np.diff(np.append(user_start, n)).astype(np.float64)  # (U,)
    return _PerUser(n=n_u, n_pos=n_pos, rank_sum_pos=rank_sum_pos)


def _mann_whitney(n_pos: np.ndarray, n_neg: np.ndarray, rank_sum_pos: np.ndarray) -> np.ndarray:
    return (rank_sum_pos - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def auc_score(y_true: Any, y_score: Any) -> float:
    """ROC AUC: P(score of a positive > score of a negative), ties counting 1/2 (Mann-Whitney)."""
    pos = _labels(y_true)
    s = _scores(y_score, pos.shape[0])
    _both_classes(pos)
    r = _per_user_rank_sums(pos, s, np.zeros(pos.shape[0], dtype=np.int64))
    return float(_mann_whitney(r.n_pos, r.n - r.n_pos, r.rank_sum_pos)[0])


def user_auc_details(y_true: Any, y_score: Any, user: Any) -> UserAUC:
    """Eq. (10): Σ_u #impressions_u·AUC_u / Σ_u #impressions_u over users with both classes."""
    pos = _labels(y_true)
    n = pos.shape[0]
    s = _scores(y_score, n)
    u = np.asarray(user)
    if u.ndim != 1 or u.shape[0] != n:
        raise DinctlError(
            f"expected user to have the same length as y_true ({n}), got shape {u.shape} instead"
        )
    _both_classes(pos)
    r = _per_user_rank_sums(pos, s, _user_codes(u))
    n_neg = r.n - r.n_pos
    ok = (r.n_pos > 0) & (n_neg > 0)
    users_scored = int(ok.sum())
    users_skipped = int(ok.shape[0] - users_scored)
    if users_scored == 0:
        raise DinctlError(
            f"expected at least one user with both classes, got {users_skipped} users "
            "each with a single class",
            hint="user-weighted AUC is undefined; every user needs a click and a non-click",
        )
    auc_u = _mann_whitney(r.n_pos[ok], n_neg[ok], r.rank_sum_pos[ok])  # (U_ok,)
    weight = r.n[ok]  # #impressions_u
    impressions = float(weight.sum())
    return UserAUC(
        score=float((weight * auc_u).sum() / impressions),  # Eq. (10)
        users_scored=users_scored,
        users_skipped=users_skipped,
        impressions_scored=int(impressions),
    )


def user_weighted_auc_score(y_true: Any, y_score: Any, user: Any) -> float:
    """User-weighted AUC (GAUC), Eq. (10) of the paper; single-class users are skipped."""
    return user_auc_details(y_true, y_score, user).score


def log_loss(y_true: Any, y_prob: Any, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy of probabilities, clipped to [eps, 1 − eps]."""
    pos = _labels(y_true)
    p = _scores(y_prob, pos.shape[0], name="y_prob")
    if (p < 0).any() or (p > 1).any():
        bad = p[np.argmax((p < 0) | (p > 1))].item()
        raise DinctlError(
            f"expected probabilities in [0, 1] in y_prob, got {bad!r} instead",
            hint="pass sigmoid(logits), not logits",
        )
    p = np.clip(p.astype(np.float64, copy=False), eps, 1.0 - eps)
    return float(-np.mean(np.log(np.where(pos, p, 1.0 - p))))  # log of P(observed label)


def rela_impr(auc: float, base_auc: float) -> float:
    """RelaImpr in percent, Eq. (11): ((AUC − 0.5) / (AUC_base − 0.5) − 1) · 100."""
    if base_auc == 0.5:
        raise DinctlError(
            "expected a baseline AUC different from 0.5, got 0.5 instead",
            hint="RelaImpr is relative to the baseline's lift over random guessing",
        )
    return ((auc - 0.5) / (base_auc - 0.5) - 1.0) * 100.0
