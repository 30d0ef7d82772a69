"""`pad_requests`: one request with a history goes without padding (views of its arrays); the
inputs are the ones the general path pads, in the same order, dtypes and values."""

from __future__ import annotations

import numpy as np
import pytest

from dinctl.inputs import INPUTS
from dinctl.serving.vocab import EncodedRequest, pad_requests


def request(t: int, c: int, fields: bool) -> EncodedRequest:
    rng = np.random.default_rng(t * 10 + c)
    extra = {}
    if fields:
        extra = {
            "hist_fields": rng.integers(0, 5, (t, 2)).astype(np.int32),  # converted
            "cand_fields": rng.integers(0, 5, (c, 2)),
            "user_fields": rng.integers(0, 5, (3,)),
            "context": rng.integers(0, 5, (c, 0)),  # a group of width 0 stays in
            "numeric": rng.random((c, 1)).astype(np.float32),
        }
    return EncodedRequest(
        hist_item=rng.integers(1, 50, t),
        hist_cate=rng.integers(1, 9, t),
        cand_item=rng.integers(1, 50, c),
        cand_cate=rng.integers(1, 9, c),
        unknown_items=[],
        **extra,
    )


@pytest.mark.parametrize("fields", [False, True])
@pytest.mark.parametrize(("t", "c"), [(1, 1), (7, 3), (100, 200)])
def test_one_request_is_the_padded_batch_s_first_row(t: int, c: int, fields: bool) -> None:
    q = request(t, c, fields)
    one, two = pad_requests([q]), pad_requests([q, q])  # two equal requests: nothing padded
    assert list(one) == list(two) == [f.name for f in INPUTS if f.name in two]
    for name, value in one.items():
        assert value.dtype == two[name].dtype and value.shape == two[name][:1].shape, name
        np.testing.assert_array_equal(value, two[name][:1])


def test_an_empty_history_is_padded_to_one_position() -> None:
    q = request(1, 4, False)
    empty = EncodedRequest(q.hist_item[:0], q.hist_cate[:0], q.cand_item, q.cand_cate, [])
    out = pad_requests([empty])
    assert out["hist_item"].shape == (1, 1) and out["hist_len"].tolist() == [0]
