"""An immutable string → int64 map in flat arrays, looked up a batch at a time (numba).

Serving maps each request's raw item ids (200 candidates and 100 behaviours, fresh strings)
to model ids. One Python dict look-up per id is a dependent chain of cache misses (the index,
the entry, the key object, the value object), and the ids are looked up one after another.
Here the vocabulary is an open-addressing table (load ≤ 0.5, linear probing) whose slots hold
the records themselves, 32 bytes each: a head (31 bits of the key's 64-bit hash, and its byte
length + 1 in the low 32 bits; 0: an empty slot), the key's UTF-8 bytes inline when they fit
8 bytes (else where they start in a second buffer, of the longer keys), then its values. So
a short key is found, verified and read in one cache line. The kernel takes the whole batch
in passes (hash every query, probe every query, verify the long ones), so the misses of
different queries are in flight together. A large table sits on 2 MiB pages where Linux
grants them (on 4 KiB pages the probes also miss the TLB). A head match alone never counts:
the bytes are compared (a short key's as one word, which holds all of them, zero-padded).

Measured on the benchmarks' requests (64,000 keys; `RequestEncoder.items` on 200 candidates
right after a forward-sized matmul, medians, 2 cores): one dict look-up per id 142-149 µs
(196-208 µs with fresh strings, whose hashes are not cached yet); a table of slot → key
number → record → key bytes ~65 µs; this layout 51-54 µs (~59 µs on 4 KiB pages), ~30 µs
of which is the fixed cost of a numba call and a numpy allocation on cold caches (one id
alone costs that much).

Without numba (it comes with `pip install dinctl[serve]`) the same class answers from a dict.
Strings are encoded as UTF-8 with "surrogatepass", so every Python str (a lone surrogate
included) has exactly one byte form, and two strings are equal iff their bytes are.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

try:  # the serve extra
    import numba
except ImportError:  # pragma: no cover - the suite installs it
    numba = None  # type: ignore[assignment]

__all__ = ["HAVE_NUMBA", "IdTable"]

HAVE_NUMBA = numba is not None
SEP = 0  # the byte after each query of a batch ("\0".join)
INLINE = 8  # keys of up to this many bytes are stored in their record
MAX_LEN = (1 << 32) - 2  # longest key or query the head's 32 length bits can hold
HEAD, KEY, VALUES = 0, 1, 2  # record words: head (0: empty), the key (or its start), values
HUGE_PAGE = 2 << 20
K0 = np.uint64(0x9E3779B97F4A7C15)
MIX1 = np.uint64(0xFF51AFD7ED558CCD)
MIX2 = np.uint64(0xC4CEB9FE1A85EC53)
S29, S32, S33 = np.uint64(29), np.int64(32), np.uint64(33)


def _jit(fn: Callable[..., Any]) -> Callable[..., Any]:
    """numba's compiled `fn`, without the GIL (cached on disk where numba finds a writable
    folder); `fn` itself without numba (then only the dict path runs)."""
    if numba is None:
        return fn
    try:
        return numba.njit(nogil=True, cache=True)(fn)
    except RuntimeError:  # "cannot cache function ...: no locator available" (read-only)
        return numba.njit(nogil=True)(fn)


@_jit
def _word(buf, lo, hi):  # noqa: ANN001, ANN202
    """buf[lo:hi]'s first (up to) 8 bytes as one little-endian word, zero-padded: for a key
    of ≤ 8 bytes, equal words and lengths mean equal bytes."""
    w = np.uint64(0)
    for i in range(min(hi - lo, INLINE)):
        w |= np.uint64(buf[lo + i]) << np.uint64(8 * i)
    return w


@_jit
def _hash(buf, lo, hi):  # noqa: ANN001, ANN202
    """64-bit hash of buf[lo:hi]: the length, then each 8-byte word multiplied in and shifted
    down (word-wise, not FNV's byte-wise chain), then MurmurHash3's finaliser."""
    h = np.uint64(hi - lo) * K0
    for p in range(lo, hi, INLINE):
        h = (h ^ _word(buf, p, hi)) * MIX1
        h ^= h >> S29
    h ^= h >> S33
    h *= MIX2
    h ^= h >> S33
    return h


@_jit
def _head(h, length):  # noqa: ANN001, ANN202
    """A record's head: the hash's top 31 bits over length + 1 (never 0, the empty slot)."""
    return (np.int64(h >> S33) << S32) | (length + 1)


@_jit
def _same(buf, lo, keys, start, length):  # noqa: ANN001, ANN202
    """Whether query bytes buf[lo:lo+length] equal key bytes keys[start:start+length]."""
    for i in range(length):
        if buf[lo + i] != keys[start + i]:
            return False
    return True


@_jit
def _probe(rec, slot, head, word, short):  # noqa: ANN001, ANN202
    """The first slot from `slot` on (linear probing) whose record has this head (and, for a
    short key, this inline word: then it is the key), or -1 at an empty slot."""
    mask = rec.shape[0] - 1
    while True:
        r = rec[slot, HEAD]
        if r == 0:
            return -1
        if r == head and (not short or rec[slot, KEY] == word):
            return slot
        slot = (slot + 1) & mask


@_jit
def _build(keys, starts, values, rec, long):  # noqa: ANN001, ANN202
    """Insert K distinct keys keys[starts[k]:starts[k+1]] with values (K, W) into the zeroed
    records (S, R), S a power of two ≥ 2K; keys over INLINE bytes are copied into `long`."""
    mask = rec.shape[0] - 1
    at = 0
    for k in range(starts.size - 1):
        lo, hi = starts[k], starts[k + 1]
        h = _hash(keys, lo, hi)
        slot = np.int64(h & np.uint64(mask))
        while rec[slot, HEAD] != 0:
            slot = (slot + 1) & mask
        rec[slot, HEAD] = _head(h, hi - lo)
        if hi - lo <= INLINE:
            rec[slot, KEY] = np.int64(_word(keys, lo, hi))
        else:
            rec[slot, KEY] = at
            long[at : at + hi - lo] = keys[lo:hi]
            at += hi - lo
        for w in range(values.shape[1]):
            rec[slot, VALUES + w] = values[k, w]


@_jit
def _split(buf, n, starts):  # noqa: ANN001, ANN202
    """Fill starts (n + 1,) with where each of the n queries of a SEP-joined buffer starts,
    the last entry one past the end as if a SEP followed it (a branch-free scan)."""
    starts[0] = 0
    j = 1
    for i in range(len(buf)):
        starts[j] = i + 1
        j += buf[i] == SEP
    starts[n] = len(buf) + 1


@_jit
def _find(buf, n, split, rec, long, width, space):  # noqa: ANN001, ANN202
    """Look up n queries, query j = buf[starts[j] : starts[j+1] - 1]. `space` ((W+3)·n + 1,):
    out values (W rows of n, 0: absent), then hashes, slots and starts (given, or found by
    splitting buf at SEP); returns m, the absent queries' positions being the slot row's
    first m. Pass by pass, so the queries' cache misses overlap."""
    hashes = space[width * n : (width + 1) * n]  # (n,) the uint64 hashes' bits
    found = space[(width + 1) * n : (width + 2) * n]  # (n,) the candidate slot, -1: none
    starts = space[(width + 2) * n :]  # (n + 1,)
    if split:
        _split(buf, n, starts)
    mask = np.uint64(rec.shape[0] - 1)
    for j in range(n):  # pass 1: hash
        hashes[j] = np.int64(_hash(buf, starts[j], starts[j + 1] - 1))
    for j in range(n):  # pass 2: probe; a short key is found and verified here
        lo, length = starts[j], starts[j + 1] - 1 - starts[j]
        h = np.uint64(hashes[j])
        word = np.int64(_word(buf, lo, lo + length))
        slot, short = np.int64(h & mask), length <= INLINE
        found[j] = _probe(rec, slot, _head(h, length), word, short) if length <= MAX_LEN else -1
    m = 0
    for j in range(n):  # pass 3: verify a long key's bytes (a head collision probes on)
        slot, lo, length = found[j], starts[j], starts[j + 1] - 1 - starts[j]
        if length > INLINE:
            head = _head(np.uint64(hashes[j]), length)
            while slot >= 0 and not _same(buf, lo, long, rec[slot, KEY], length):
                slot = _probe(rec, (slot + 1) & (rec.shape[0] - 1), head, 0, False)
        for w in range(width):
            space[w * n + j] = rec[slot, VALUES + w] if slot >= 0 else 0
        if slot < 0:
            found[m] = j  # found[:j] is spent: it now lists the absent positions
            m += 1
    return m


def _utf8(text: str) -> bytes:
    """A string's one byte form (a lone surrogate too, as its 3-byte pattern)."""
    return text.encode("utf-8", "surrogatepass")


def _zeros(rows: int, cols: int) -> np.ndarray:
    """A zeroed (rows, cols) int64 array; one of 2 MiB or more on 2 MiB pages where Linux
    grants them (transparent huge pages, madvise), so probes do not each walk page tables."""
    nbytes = rows * cols * 8
    advise = getattr(mmap, "MADV_HUGEPAGE", None)
    if nbytes < HUGE_PAGE or advise is None:
        return np.zeros((rows, cols), np.int64)
    try:  # private anonymous memory is zero-filled; it lives as long as the array
        area = mmap.mmap(-1, nbytes + HUGE_PAGE, flags=mmap.MAP_PRIVATE)
        area.madvise(advise)
    except (OSError, ValueError):
        return np.zeros((rows, cols), np.int64)
    raw = np.frombuffer(area, np.uint8)  # (nbytes + 2 MiB,)
    skip = -raw.ctypes.data % HUGE_PAGE
    return raw[skip : skip + nbytes].view(np.int64).reshape(rows, cols)


class IdTable:
    """An immutable str → int64 map (or str → W int64 values), built once, looked up in
    batches; a key not present gives 0 (so a value 0 reads as not present)."""

    def __init__(self, keys: Sequence[str], values: np.ndarray, use_numba: bool = True) -> None:
        """`keys` (K,) and their `values` (K,) or (K, W); a repeated key keeps its last values
        (as a dict would). `use_numba=False` (or no numba) answers from a dict."""
        vals = np.asarray(values, dtype=np.int64)
        self.scalar = vals.ndim == 1
        vals = vals[:, None] if self.scalar else vals  # (K, W)
        if vals.ndim != 2 or len(keys) != len(vals):
            raise ValueError(f"{len(keys)} keys but values of shape {np.shape(values)}")
        self.width = vals.shape[1]
        index = {str(k): j for j, k in enumerate(keys)}  # the last of a repeated key wins
        rows = vals[list(index.values())].reshape(len(index), self.width)  # (K', W)
        parts = [_utf8(k) for k in index]
        lengths = np.fromiter(map(len, parts), np.int64, len(parts))  # (K',)
        self._index: dict[str, int] | None = None
        if not (use_numba and HAVE_NUMBA) or lengths.max(initial=0) > MAX_LEN:
            self._index = {k: j + 1 for j, k in enumerate(index)}  # key → its row
            self._rows = np.concatenate([np.zeros((1, self.width), np.int64), rows])
            return
        size = 8
        while size < 2 * len(parts):
            size *= 2
        record = 1 << (VALUES + self.width - 1).bit_length()  # words: a power of two
        self._rec = _zeros(size, record)  # (S, R) head, key, values, padding
        self._long = np.zeros(int(lengths[lengths > INLINE].sum()) + 1, np.uint8)  # (bytes,)
        starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)  # (K'+1,)
        flat = np.frombuffer(b"".join(parts) or b"\0", np.uint8)  # (bytes,) all keys
        _build(flat, starts, rows, self._rec, self._long)
        self.lookup(["", "warm-up: longer than INLINE"])  # compiled (or loaded) now, not later

    @property
    def compiled(self) -> bool:
        """Whether look-ups run the numba kernel (else the dict)."""
        return self._index is None

    def __len__(self) -> int:
        """The number of distinct keys."""
        if self._index is not None:
            return len(self._index)
        return int(np.count_nonzero(self._rec[:, HEAD]))

    def lookup(self, ids: Sequence[Any]) -> tuple[list[np.ndarray], list[int]]:
        """The values of `ids`, one (n,) array per value column (0 where an id is not a key),
        and those ids' positions, in order. A non-str id raises TypeError: the table holds
        text, so the caller decides what other types stand for."""
        if self._index is not None:
            return self._from_dict(ids)
        n, width = len(ids), self.width
        joined = "\0".join(ids)  # TypeError for a non-str id
        space = np.empty((width + 3) * n + 1, np.int64)  # see _find
        if joined.isascii() and joined.count("\0") == n - 1:  # no id holds a NUL itself
            buf, split = joined.encode("ascii"), True
        else:  # each id encoded on its own; where each starts (its SEP after it)
            parts = [_utf8(k) for k in ids]
            buf, split = b"\0".join(parts), False
            sizes = np.fromiter(map(len, parts), np.int64, n) + 1  # (n,)
            space[(width + 2) * n] = 0
            np.cumsum(sizes, out=space[(width + 2) * n + 1 :])
        m = _find(buf, n, split, self._rec, self._long, width, space)
        columns = [space[w * n : (w + 1) * n] for w in range(width)]
        return columns, (space[(width + 1) * n : (width + 1) * n + m].tolist() if m else [])

    def _from_dict(self, ids: Sequence[Any]) -> tuple[list[np.ndarray], list[int]]:
        """`lookup` answered by the dict (no numba)."""
        if not all(isinstance(k, str) for k in ids):
            raise TypeError("an id is not a str")
        get = (self._index or {}).get
        rows = np.fromiter((get(k, 0) for k in ids), np.int64, len(ids))  # (n,) 0: absent
        values = self._rows[rows]  # (n, W)
        columns = [np.ascontiguousarray(values[:, w]) for w in range(self.width)]
        return columns, np.flatnonzero(rows == 0).tolist()

    def to_dict(self, column: int = 0) -> dict[str, int]:
        """Key → value (of one column): the table as a plain dict, for tools and tests."""
        if self._index is not None:
            return dict(zip(self._index, self._rows[1:, column].tolist(), strict=True))
        used = self._rec[self._rec[:, HEAD] != 0]  # (K, R)
        lengths = ((used[:, HEAD] & 0xFFFFFFFF) - 1).tolist()
        long = self._long.tobytes()
        keys = [
            (int(w).to_bytes(8, "little", signed=True)[:m] if m <= INLINE else long[w : w + m])
            for w, m in zip(used[:, KEY].tolist(), lengths, strict=True)
        ]
        text = [k.decode("utf-8", "surrogatepass") for k in keys]
        return dict(zip(text, used[:, VALUES + column].tolist(), strict=True))
