"""dinctl/serving/id_table.py against a dict (the oracle), with numba and without, and
`RequestEncoder.items` on top of it against the rules of dinctl/serving/vocab.py."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dinctl.serving import id_table
from dinctl.serving.id_table import HEAD, IdTable
from dinctl.serving.vocab import RequestEncoder, RequestError

pytestmark = pytest.mark.notorch  # no torch needed; without numba the compiled cases skip

MODES = [pytest.param(True, id="numba"), pytest.param(False, id="dict")]
needs_numba = pytest.mark.skipif(not id_table.HAVE_NUMBA, reason="numba is not installed")


def table_of(keys: list[str], use_numba: bool) -> tuple[IdTable, dict[str, tuple[int, int]]]:
    """A two-column table of `keys` (values k + 1, 7 * (k + 1)) and the dict it must equal."""
    values = np.array([[k + 1, 7 * (k + 1)] for k in range(len(keys))], np.int64)
    table = IdTable(keys, values.reshape(len(keys), 2), use_numba=use_numba)
    if use_numba and id_table.HAVE_NUMBA:
        assert table.compiled
    return table, {key: (k + 1, 7 * (k + 1)) for k, key in enumerate(keys)}  # last one wins


def check(table: IdTable, oracle: dict[str, tuple[int, int]], queries: list[str]) -> None:
    """`table.lookup(queries)` equals the dict's answers, absent positions in order."""
    (first, second), absent = table.lookup(queries)
    expected = [oracle.get(q, (0, 0)) for q in queries]
    assert first.tolist() == [e[0] for e in expected]
    assert second.tolist() == [e[1] for e in expected]
    assert absent == [j for j, q in enumerate(queries) if q not in oracle]


def near_misses(keys: list[str]) -> list[str]:
    """Queries that are almost keys: prefixes, one character longer, one changed byte."""
    out: list[str] = []
    for key in keys:
        out += [key[:-1], key + "x", key + "\0", "\0" + key]
        for i in range(len(key)):
            out.append(key[:i] + chr(ord(key[i]) ^ 1) + key[i + 1 :])
    return out


# every length around the inline limit, NUL, non-ASCII (2, 3, 4 UTF-8 bytes), lone surrogates
EDGE_KEYS = [
    "",
    "a",
    "I12345",
    "1234567",
    "12345678",
    "123456789",
    "B000GRSQ8G",
    "ÿÿÿÿ",  # 8 UTF-8 bytes, the last ≥ 0x80 (a negative inline word)
    "ÿÿÿÿÿ",
    "é",
    "日本語",
    "🙂",
    "\ud800",
    "\udfff\ud800",
    "a\0b",
    "\0",
    "x" * 1000,
    "x" * 999 + "y",
    "0",
    "00",
]


@pytest.mark.parametrize("use_numba", MODES)
def test_edge_keys_and_near_misses(use_numba: bool) -> None:
    table, oracle = table_of(EDGE_KEYS, use_numba)
    check(table, oracle, EDGE_KEYS)
    check(table, oracle, near_misses(EDGE_KEYS))
    check(table, oracle, [])
    check(table, oracle, ["I12345", "I12345", "nope", "I12345", ""])  # repeats in a batch
    check(table, oracle, ["I12345", "12345678", "0"])  # ASCII, no NUL: the joined fast path
    assert len(table) == len(EDGE_KEYS) and table.to_dict() == {k: v[0] for k, v in oracle.items()}


@pytest.mark.parametrize("use_numba", MODES)
def test_repeated_keys_keep_the_last_values_and_scalar_tables(use_numba: bool) -> None:
    table = IdTable(["a", "b", "a"], np.array([1, 2, 3]), use_numba=use_numba)
    (values,), absent = table.lookup(["a", "b", "c"])
    assert values.tolist() == [3, 2, 0] and absent == [2] and len(table) == 2
    with pytest.raises(TypeError):
        table.lookup(["a", 1])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"2 keys but values of shape \(3,\)"):
        IdTable(["a", "b"], np.array([1, 2, 3]), use_numba=use_numba)


@pytest.mark.parametrize("use_numba", MODES)
def test_many_keys_like_a_vocabulary(use_numba: bool) -> None:
    rng = np.random.default_rng(0)
    keys = [f"I{i}" for i in rng.permutation(20_000)] + [f"B{i:09d}" for i in range(500)]
    table, oracle = table_of(keys, use_numba)
    queries = [f"I{i}" for i in rng.integers(0, 25_000, 300)] + [
        f"B{i:09d}" for i in range(490, 510)
    ]
    check(table, oracle, queries)
    check(table, oracle, near_misses(keys[:50]))


keys_strategy = st.lists(st.text(max_size=12), max_size=40)


@needs_numba
@settings(max_examples=300, deadline=None)
@given(keys=keys_strategy, extra=st.lists(st.text(max_size=12), max_size=20), data=st.data())
def test_matches_a_dict(keys: list[str], extra: list[str], data: Any) -> None:
    table, oracle = table_of(keys, True)
    queries = keys + extra + near_misses(keys[:5])
    order = data.draw(st.permutations(range(len(queries))))
    check(table, oracle, [queries[j] for j in order])


@settings(max_examples=100, deadline=None)
@given(keys=keys_strategy, queries=st.lists(st.text(max_size=12), max_size=20))
def test_dict_fallback_matches_a_dict(keys: list[str], queries: list[str]) -> None:
    table, oracle = table_of(keys, False)
    assert not table.compiled
    check(table, oracle, keys + queries)


@needs_numba
def test_tiny_tables_probe_past_other_keys() -> None:
    """Every pair of 3-4 keys in an 8-slot table: the home slots collide often (1 in 8)."""
    for n in range(1, 5):
        keys = [f"k{n}-{i}" for i in range(n)] + [f"a long key {n}"]
        table, oracle = table_of(keys, True)
        assert table._rec.shape[0] <= 16
        check(table, oracle, keys + near_misses(keys))


def planted(key: str, decoy: str) -> tuple[IdTable, int]:
    """A table of `key` whose record is moved one slot on; its home slot now holds a decoy
    record (of a key as long as `key`) given `key`'s head: the same hash tag and length."""
    table = IdTable([key, decoy], np.array([1, 2]))
    rec, mask = table._rec, len(table._rec) - 1
    raw = key.encode()
    home = int(id_table._hash(raw, 0, len(raw)) & np.uint64(mask))
    record = rec[rec[:, HEAD] == table_head(key)][0].copy()
    fake = rec[rec[:, HEAD] == table_head(decoy)][0].copy()
    rec[:] = 0
    fake[HEAD] = record[HEAD]  # only a byte compare tells them apart now
    rec[home], rec[(home + 1) & mask] = fake, record
    return table, home


def table_head(key: str) -> int:
    """The head `key`'s record carries."""
    raw = key.encode()
    return int(id_table._head(np.uint64(id_table._hash(raw, 0, len(raw))), len(raw)))


@needs_numba
@pytest.mark.parametrize(
    "key, decoy", [("I12345", "I12346"), ("ÿÿÿÿ", "ÿÿÿþ"), ("a long key", "a long keY")]
)
def test_a_head_match_alone_never_counts(key: str, decoy: str) -> None:
    table, home = planted(key, decoy)
    (values,), absent = table.lookup([key, decoy, key])
    assert values.tolist() == [1, 0, 1] and absent == [1]  # probed past the decoy
    table._rec[(home + 1) & (table._rec.shape[0] - 1)] = 0  # the real record gone
    (values,), absent = table.lookup([key, decoy])
    assert values.tolist() == [0, 0] and absent == [0, 1]  # the decoy's head alone: absent


@needs_numba
def test_verification_reads_the_stored_bytes() -> None:
    """A long key whose stored bytes are changed is no longer found by its old text."""
    table = IdTable(["a long key", "short"], np.array([1, 2]))
    table._long[table._long == ord("y")] = ord("Y")
    (values,), absent = table.lookup(["a long key", "short"])
    assert values.tolist() == [0, 2] and absent == [0]


def test_without_numba_the_dict_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(id_table, "HAVE_NUMBA", False)
    table, oracle = table_of(EDGE_KEYS, True)
    assert not table.compiled
    check(table, oracle, EDGE_KEYS + near_misses(EDGE_KEYS))
    encoder = tiny_encoder()
    assert not encoder.item_table.compiled
    assert encoder.items(["I1", 3, "nope"], {"nope": "c2"})[2] == ["nope"]


# ------------------------------------------------------------------ RequestEncoder.items


# "I1" twice: its last row wins, as with the dict; item 2 twice (as "I2" and "2b"): its last
# category wins, as item_cate gives it; "True" and "None" are items, yet True and None refused
RAW_ITEMS = ["I1", "I2", "3", "é", "I1", "2b", "True", "None"]
ITEM_IDS = [1, 2, 3, 4, 5, 2, 6, 7]
ITEM_CATES = [1, 1, 2, 1, 2, 2, 1, 1]


def tiny_encoder() -> RequestEncoder:
    """RAW_ITEMS' vocabulary (categories c1 = 1, c2 = 2); one user."""
    return RequestEncoder(
        raw_items=RAW_ITEMS,
        item_ids=np.array(ITEM_IDS),
        item_cates=np.array(ITEM_CATES),
        cate_names=[f"c{c}" for c in ITEM_CATES],
        users=["u"],
        user_lengths=np.array([2]),
        user_hist=np.array([1, 2]),
        max_len=10,
    )


def reference_items(enc: RequestEncoder, ids: list[Any], cates: dict[str, Any]) -> Any:
    """vocab.py's rules by hand: an int stands for its text; unknown → 0, its category from
    `cates`; other types are refused (RequestError) in order."""
    cate_of = dict(zip(ITEM_IDS, ITEM_CATES, strict=True))  # an item's last category
    vocab = {r: (i, cate_of[i]) for r, i in zip(RAW_ITEMS, ITEM_IDS, strict=True)}
    items, cate_ids, unknown = [], [], []
    for k in ids:
        if isinstance(k, bool) or not isinstance(k, (str, int, np.integer)):
            raise RequestError(f"an id must be a string or an integer, got {k!r} instead")
        item, cate = vocab.get(str(k), (0, 0))
        if item == 0:
            unknown.append(str(k))
            given = cates.get(str(k))
            cate = enc.cate_id.get(str(given), 0) if given is not None else 0
        items.append(item)
        cate_ids.append(cate)
    return items, cate_ids, unknown


@pytest.mark.parametrize("use_numba", MODES)
@pytest.mark.parametrize(
    "ids",
    [
        ["I1", "I2", "3", "é", "2b", "True", "None"],
        ["I1", 3, np.int64(3), "nope", "I2", "nope"],
        [3, 3, 7],
        ["I1\0", "\0", "", "ée", "I1"],
        [],
    ],
)
def test_items_follow_the_rules(monkeypatch: pytest.MonkeyPatch, use_numba: bool, ids: Any) -> None:
    monkeypatch.setattr(id_table, "HAVE_NUMBA", use_numba and id_table.HAVE_NUMBA)
    encoder = tiny_encoder()
    cates: dict[str, Any] = {"nope": "c2", "7": 1, "": "unknown-cate", "ée": "c1"}
    item, cate, unknown = encoder.items(ids, cates)
    assert (item.tolist(), cate.tolist(), unknown) == reference_items(encoder, ids, cates)
    assert item.dtype == cate.dtype == np.int64


@pytest.mark.parametrize("use_numba", MODES)
def test_items_refuse_what_is_not_an_id_in_order(
    monkeypatch: pytest.MonkeyPatch, use_numba: bool
) -> None:
    monkeypatch.setattr(id_table, "HAVE_NUMBA", use_numba and id_table.HAVE_NUMBA)
    encoder = tiny_encoder()
    cases: list[tuple[list[Any], str]] = [
        (["I1", True], "True"),
        (["I1", None, True], "None"),
        ([False], "False"),
        (["I1", 1.5], "1.5"),
        (["nope", [1], None], r"\[1\]"),
        ([{"item": "I1"}], "{'item': 'I1'}"),
    ]
    for ids, bad in cases:
        with pytest.raises(RequestError, match=f"got {bad} instead"):
            encoder.items(ids, {})


def test_the_item_table_is_the_vocabulary() -> None:
    encoder = tiny_encoder()
    vocabulary = {"I1": 5, "I2": 2, "3": 3, "é": 4, "2b": 2, "True": 6, "None": 7}
    assert encoder.item_table.to_dict() == vocabulary
    assert encoder.encode(["I1", 3], history=["é", "gone"]).unknown_items == ["gone"]
