"""dinctl.metrics against brute-force oracles, scikit-learn and hand-computed toy cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import log_loss as sk_log_loss
from sklearn.metrics import roc_auc_score

from dinctl.errors import DinctlError
from dinctl.metrics import (
    UserAUC,
    auc_score,
    log_loss,
    rela_impr,
    user_auc_details,
    user_weighted_auc_score,
)

pytestmark = pytest.mark.notorch  # torch-free: `make test-py` runs it on 3.10 and 3.13


def pairwise_auc(y: list[int], s: list[float]) -> float:
    """Oracle: mean over (positive, negative) pairs of 1[s_p > s_n] + 0.5·1[s_p = s_n]."""
    pos = [si for yi, si in zip(y, s, strict=True) if yi == 1]
    neg = [si for yi, si in zip(y, s, strict=True) if yi == 0]
    total = sum((1.0 if p > q else 0.5 if p == q else 0.0) for p in pos for q in neg)
    return total / (len(pos) * len(neg))


def per_user_gauc(y: list[int], s: list[float], u: list[int]) -> tuple[float, int, int, int]:
    """Oracle: a Python loop over users, Eq. (10) written out."""
    num = den = 0.0
    scored = skipped = 0
    for user in sorted(set(u)):
        yu = [yi for yi, ui in zip(y, u, strict=True) if ui == user]
        su = [si for si, ui in zip(s, u, strict=True) if ui == user]
        if len(set(yu)) < 2:
            skipped += 1
            continue
        scored += 1
        num += len(yu) * pairwise_auc(yu, su)
        den += len(yu)
    return num / den, scored, skipped, int(den)


# small integer-valued scores make ties frequent; floats exercise the float64 path
scores = st.one_of(
    st.integers(min_value=-3, max_value=3).map(float),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, width=64),
    st.floats(min_value=-1.0, max_value=1.0, allow_nan=False, width=32),
)


@st.composite
def labelled(draw: st.DrawFn, users: bool = False) -> tuple[list[int], list[float], list[int]]:
    n = draw(st.integers(min_value=2, max_value=40))
    y = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    y[0], y[1] = 0, 1  # both classes overall
    s = draw(st.lists(scores, min_size=n, max_size=n))
    u = draw(st.lists(st.integers(0, 5), min_size=n, max_size=n)) if users else [0] * n
    if users:
        u[1] = u[0]  # at least one user with both classes
    return y, s, u


@settings(max_examples=100, deadline=None)
@given(labelled())
def test_auc_matches_pairwise_oracle(data: tuple[list[int], list[float], list[int]]) -> None:
    y, s, _ = data
    assert auc_score(np.array(y), np.array(s)) == pytest.approx(pairwise_auc(y, s), abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(labelled(users=True))
def test_gauc_matches_per_user_oracle(data: tuple[list[int], list[float], list[int]]) -> None:
    y, s, u = data
    score, scored, skipped, impressions = per_user_gauc(y, s, u)
    got = user_auc_details(np.array(y), np.array(s), np.array(u))
    assert got.score == pytest.approx(score, abs=1e-12)
    assert (got.users_scored, got.users_skipped, got.impressions_scored) == (
        scored,
        skipped,
        impressions,
    )


@settings(max_examples=50, deadline=None)
@given(labelled(users=True), st.integers(min_value=-(2**62), max_value=2**62))
def test_gauc_does_not_depend_on_user_id_values(
    data: tuple[list[int], list[float], list[int]], shift: int
) -> None:
    y, s, u = data
    ids = np.array(u, dtype=np.int64) * 7 + shift  # huge and negative ids, same grouping
    names = np.array([f"user-{x}" for x in u])
    expect = user_weighted_auc_score(np.array(y), np.array(s), np.array(u))
    assert user_weighted_auc_score(np.array(y), np.array(s), ids) == pytest.approx(expect)
    assert user_weighted_auc_score(np.array(y), np.array(s), names) == pytest.approx(expect)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_auc_and_logloss_match_sklearn_on_random_data(dtype: type) -> None:
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 20_000)
    p = (1 / (1 + np.exp(-(rng.normal(size=20_000) + y)))).astype(dtype)
    p[:500] = p[500:1000]  # some ties
    assert auc_score(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert log_loss(y, p) == pytest.approx(sk_log_loss(y, p.astype(np.float64)), rel=1e-6)


def test_gauc_matches_sklearn_per_user_loop() -> None:
    rng = np.random.default_rng(3)
    n, users = 10_000, 100
    u = rng.integers(0, users, n)
    y = rng.integers(0, 2, n)
    s = np.round(rng.random(n), 2).astype(np.float32)  # many ties within users
    num = den = 0.0
    for user in np.unique(u):
        m = u == user
        if len(np.unique(y[m])) == 2:
            num += m.sum() * roc_auc_score(y[m], s[m])
            den += m.sum()
    assert user_weighted_auc_score(y, s, u) == pytest.approx(num / den, abs=1e-12)


def test_toy_auc_with_ties() -> None:
    # pairs (p, n): (0.8, 0.1) 1, (0.8, 0.8) 0.5, (0.4, 0.1) 1, (0.4, 0.8) 0 → 2.5 / 4
    assert auc_score([1, 1, 0, 0], [0.8, 0.4, 0.1, 0.8]) == 0.625
    assert auc_score([1, 0], [0.5, 0.5]) == 0.5
    assert auc_score([0, 1], [0.2, 0.9]) == 1.0
    assert auc_score([True, False], [0.2, 0.9]) == 0.0


def test_toy_integer_scores_with_many_ties() -> None:
    # pos {2,2,1}, neg {1,0,0}: 2>each neg ×2 = 6, 1 vs {1,0,0} = 0.5+1+1 → 8.5 / 9
    assert auc_score([1, 1, 1, 0, 0, 0], [2, 2, 1, 1, 0, 0]) == pytest.approx(8.5 / 9)


def test_toy_gauc_skips_and_counts_single_class_users() -> None:
    y = [1, 0, 0, 1, 1, 0, 1, 1, 0]
    s = [0.9, 0.1, 0.5, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8]
    u = [1, 1, 1, 2, 2, 2, 3, 3, 4]
    # user 1: pos .9 vs .1,.5 → AUC 1, 3 impressions; user 2: pos .2,.3 vs .4 → 0, 3
    # impressions; user 3 (all clicks) and user 4 (one non-click) are skipped
    got = user_auc_details(y, s, u)
    assert got == UserAUC(score=0.5, users_scored=2, users_skipped=2, impressions_scored=6)
    assert user_weighted_auc_score(y, s, u) == 0.5


def test_toy_gauc_weights_by_impressions() -> None:
    y = [1, 0, 1, 0, 0, 0]
    s = [0.9, 0.1, 0.1, 0.9, 0.5, 0.5]
    u = [1, 1, 2, 2, 2, 2]  # user 1: AUC 1 over 2 impressions, user 2: AUC 0 over 4
    assert user_weighted_auc_score(y, s, u) == pytest.approx(2 / 6)


def test_one_user_gauc_equals_auc() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    s = rng.integers(0, 5, 200).astype(np.float64)
    assert user_weighted_auc_score(y, s, np.full(200, 42)) == pytest.approx(auc_score(y, s))


def test_log_loss_toy_and_clipping() -> None:
    assert log_loss([1, 0], [0.5, 0.5]) == pytest.approx(math.log(2))
    assert log_loss([1, 0], [0.8, 0.4]) == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2)
    assert log_loss([1], [0.0], eps=1e-7) == pytest.approx(-math.log(1e-7))
    assert math.isfinite(log_loss([0], [1.0]))


def test_rela_impr_eq_11() -> None:
    # Table 3 of the paper, Amazon: BaseModel 0.8623, DIN with Dice 0.8871 → +6.85% (rounded)
    assert rela_impr(0.8871, 0.8623) == pytest.approx(6.845, abs=1e-3)
    assert rela_impr(0.7, 0.7) == 0.0
    assert rela_impr(0.5, 0.75) == -100.0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: auc_score([1, 0], [0.1]),
            "expected y_score to have the same length as y_true (2), got 1 instead",
        ),
        (
            lambda: auc_score([], []),
            "expected at least one prediction, got an empty y_true instead",
        ),
        (
            lambda: auc_score([1, 2], [0.1, 0.2]),
            "expected binary labels 0/1 in y_true, got 2 instead",
        ),
        (lambda: auc_score([0, 0], [0.1, 0.2]), "expected both classes, got only 0s"),
        (lambda: auc_score([1, 1], [0.1, 0.2]), "expected both classes, got only 1s"),
        (
            lambda: auc_score([1, 0], [0.1, float("nan")]),
            "expected finite scores, got 1 NaN value(s) in y_score",
        ),
        (
            lambda: user_weighted_auc_score([1, 0], [0.1, 0.2], [1]),
            "expected user to have the same length as y_true (2), got shape (1,) instead",
        ),
        (
            lambda: user_weighted_auc_score([1, 0], [0.1, 0.2], [1, 2]),
            "expected at least one user with both classes, got 2 users each with a single class",
        ),
        (
            lambda: user_weighted_auc_score([0, 0], [0.1, 0.2], [1, 1]),
            "expected both classes, got only 0s",
        ),
        (
            lambda: log_loss([1, 0], [1.5, 0.2]),
            "expected probabilities in [0, 1] in y_prob, got 1.5 instead",
        ),
        (
            lambda: rela_impr(0.7, 0.5),
            "expected a baseline AUC different from 0.5, got 0.5 instead",
        ),
    ],
)
def test_error_messages(call: object, message: str) -> None:
    with pytest.raises(DinctlError) as err:
        call()  # type: ignore[operator]
    assert str(err.value) == message


def test_lexsort_fallback_agrees_with_packed_sort() -> None:
    # user codes too wide to pack with the score bits take the lexsort path
    from dinctl.metrics import _per_user_rank_sums

    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 2_000).astype(bool)
    s = rng.integers(0, 20, 2_000).astype(np.float32)
    u = rng.integers(0, 50, 2_000).astype(np.int64)
    packed = _per_user_rank_sums(y, s, u)
    wide = _per_user_rank_sums(y, s, u << 40)
    np.testing.assert_array_equal(packed.n, wide.n)
    np.testing.assert_array_equal(packed.n_pos, wide.n_pos)
    np.testing.assert_allclose(packed.rank_sum_pos, wide.rank_sum_pos, rtol=0, atol=1e-9)
