"""DIN's serving forward from the behaviours' embedding rows on, as one CPU kernel per block
of candidates (numba), on numpy arrays: the eager engine's path for a request, no torch op in
it.

The padded (serving) layout scores every (candidate, behaviour) pair of a request. Written as
torch ops, each step (the first layer's matmul, its bias, the activation, the second layer,
its activation, the output, the masks, the weighted sum) is a pass over (C·T, H) activations
too large for the cache, and on a 2-core CPU those passes cost as much as the matmuls. Here
each block of `BLOCK` candidates of one request runs it all while its activations are in the
cache: its candidates' embedding rows (a thread gathers a request's behaviours' when it first
takes one of its blocks), the candidate term and the mixed weight (E, B·H1)
(`ActivationUnit._padded`'s algebra), one matmul of the request's valid keys by it, the bias
and activation in place, the second layer's matmul, its activation and the output dot product
(the attention weights, 0 at padding, or their softmax), Eq. (3)'s weighted sum of the keys,
and the MLP tower on [interest ⊕ candidate ⊕ the tower's other inputs]. The matmuls call the
MKL inside torch's own library (scipy's OpenBLAS where torch has none), each on its caller's
thread. As many threads as torch's intra-op count (the kernel holds no GIL) claim blocks from
an atomic counter, so a server's lanes keep their share of the cores and a late thread takes
fewer blocks.

`DIN.serve_arrays` calls it from the padded numpy inputs (the tables' rows of each id): the
torch forward's own dispatch, cold after a forward has filled the caches, cost 0.5 ms a
request around a 2.6 ms kernel. It is used where it gives the torch forward's numbers
to float rounding: float32, eval, an activation unit of two hidden layers and a tower with
PReLU / ReLU / Dice (eval) / sigmoid, not --bf16, numba installed (`pip install
dinctl[serve]`), and DINCTL_FUSED_UNIT not 0. Anything else, and every torch call of the model
(training, evaluation, export), runs the torch ops.
"""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

try:  # the serve extra; this module is imported only where the serving layout runs
    import numba
    from llvmlite import ir
    from numba.core import types
    from numba.extending import intrinsic
except ImportError:  # pragma: no cover - the suite installs it
    numba = None  # type: ignore[assignment]

ENV_SWITCH = "DINCTL_FUSED_UNIT"  # 0: always the torch ops
SPINS = 20_000_000  # atomic reads a forward's thread waits for its workers' blocks (0.09 s here)
BLOCK = 8  # candidates per block: 8 × (T·H1) activations stay in L2 (measured best of 4-50)
PRELU, DICE, SIGMOID = 0, 1, 2  # activation kinds; ReLU is PReLU with α = 0


def _jit(fn: Callable[..., Any]) -> Callable[..., Any]:
    """numba's compiled `fn` (compiled on first call, cached on disk where numba finds a
    writable cache folder, else compiled in each process), `fn` itself without numba. NumPy's
    error model: a float division is a plain division (Python's raises on zero, and that
    check kept every loop with a division from being vectorised)."""
    if numba is None:
        return fn
    try:
        return numba.njit(nogil=True, fastmath=True, error_model="numpy", cache=True)(fn)
    except RuntimeError:  # "cannot cache function ...: no locator available" (read-only)
        return numba.njit(nogil=True, fastmath=True, error_model="numpy")(fn)


def _inline(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A scalar helper of the kernels, inlined into each loop that calls it (so the loop
    vectorises)."""
    if numba is None:
        return fn
    return numba.njit(inline="always", fastmath=True, error_model="numpy")(fn)


def _torch_mkl() -> tuple[Any, Any] | None:
    """MKL's sgemm_ and MKL_Set_Num_Threads_Local from torch's own library (x86 builds link
    MKL and export them), or None: there the kernel's matmuls go to scipy's OpenBLAS."""
    names = ("libtorch_cpu.so", "libtorch_cpu.dylib", "torch_cpu.dll")
    lib_dir = os.path.join(os.path.dirname(torch.__file__), "lib")
    for path in (os.path.join(lib_dir, name) for name in names):
        if not (os.path.exists(path) and torch.backends.mkl.is_available()):
            continue
        try:
            lib = ctypes.CDLL(path)
            sgemm, local_threads = lib.sgemm_, lib.MKL_Set_Num_Threads_Local
        except (OSError, AttributeError):
            return None
        sgemm.restype, sgemm.argtypes = None, [ctypes.c_void_p] * 13
        local_threads.restype, local_threads.argtypes = ctypes.c_int, [ctypes.c_int]
        return sgemm, local_threads
    return None


def _never(*args: Any) -> None:
    raise AssertionError("the kernel called MKL where torch has none")


_MKL = _torch_mkl() if numba is not None else None
# the kernel always takes two function pointers of these types (so one compiled, cached
# kernel serves both paths); without MKL they are placeholders it never calls
_FUNCTIONS = _MKL or (
    ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * 13))(_never),
    ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(_never),
)
MATMUL = "mkl"  # "blas" forces scipy's OpenBLAS (tests run both)


def available() -> bool:
    """Whether eager serving computes the unit with the kernel: numba installed and
    DINCTL_FUSED_UNIT not 0."""
    return numba is not None and os.environ.get(ENV_SWITCH, "1").strip() != "0"


@dataclass(frozen=True)
class UnitLayers:
    """What the kernel computes: an activation unit's first layer by term
    (`ActivationUnit.first_terms`), its second layer and output, their activations as
    (kind, (3, H) table of α, mean, 1/√(var + ε))."""

    key_weight: torch.Tensor  # (H1, E): W1 + W3
    query_weight: torch.Tensor  # (H1, E): W2 − W3
    pair_weight: torch.Tensor  # (H1, E): W4
    bias: torch.Tensor  # (H1,)
    first_act: tuple[int, np.ndarray]
    second: nn.Linear  # (H2, H1)
    second_act: tuple[int, np.ndarray]
    out: nn.Linear  # (1, H2)


def activation_table(
    width: int,
    alpha: torch.Tensor | None = None,
    mean: torch.Tensor | None = None,
    var: torch.Tensor | None = None,
    eps: float = 0.0,
) -> np.ndarray:
    """(3, width) float32: α, the mean and 1/√(var + ε) (zeros where not given)."""
    table = np.zeros((3, width), np.float32)
    if alpha is not None:
        table[0] = alpha.detach().float().numpy()
    if mean is not None and var is not None:
        table[1] = mean.detach().float().numpy()
        table[2] = torch.rsqrt(var.detach().float() + eps).numpy()
    return table


@dataclass(frozen=True)
class Prepared:
    """An activation unit's weights as the kernel takes them, made once per weight version."""

    args: tuple[Any, ...]  # the kernel's weight arguments, in its order


def prepare(layers: UnitLayers) -> Prepared:
    """The weights in the kernel's layout: the first layer's terms, the second layer and
    output transposed, with the activations' tables."""
    second, out = layers.second, layers.out
    args = (
        _array(layers.query_weight.t()),  # (E, H1)
        _array(layers.bias),  # (H1,)
        _array(layers.key_weight.t()),  # (E, H1)
        _array(layers.pair_weight.t()),  # (E, H1)
        _array(second.weight.t()),  # (H1, H2)
        _array(second.bias),  # (H2,)
        _array(out.weight[0]),  # (H2,)
        float(out.bias.detach()[0]),
        layers.first_act[1],
        layers.second_act[1],
        layers.first_act[0],
        layers.second_act[0],
    )
    return Prepared(args)


def _array(x: torch.Tensor) -> np.ndarray:
    """A weight as a contiguous float32 array the kernel reads."""
    return x.detach().contiguous().numpy()


@dataclass(frozen=True)
class PreparedTower:
    """An MLP's layers as the kernel takes them: each layer's weight (in, out), bias and
    activation (kind, table); the output layer's activation is the identity (PReLU at α = 1)."""

    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    tables: tuple[np.ndarray, ...]
    kinds: np.ndarray  # (layers,) int64


def prepare_tower(
    linears: list[nn.Linear], acts: list[tuple[int, np.ndarray]], out: nn.Linear
) -> PreparedTower:
    """An MLP (Linear → act per hidden layer, then the output Linear) in the kernel's layout."""
    identity = activation_table(out.out_features, torch.ones(out.out_features))
    return PreparedTower(
        tuple(_array(layer.weight.t()) for layer in (*linears, out)),
        tuple(_array(layer.bias) for layer in (*linears, out)),
        tuple(table for _, table in acts) + (identity,),
        np.array([kind for kind, _ in acts] + [PRELU], np.int64),
    )


def score_arrays(
    unit: Prepared,
    tower: PreparedTower,
    tables: tuple[np.ndarray, ...],
    hist_ids: np.ndarray,
    cand_ids: np.ndarray,
    lengths: np.ndarray,
    side: np.ndarray,
    softmax_scale: float = 0.0,
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """DIN's scoring of candidates against histories, from their ids: the behaviour embedding
    of an id row (..., K) is its K `tables`' rows side by side (E wide), of the histories'
    ids (R, T, K), the first `lengths` (R,) of each valid, and the candidates' (R, C, K). The
    tower's output (R, C, O) on [interest ⊕ candidate ⊕ side (R, C, D): user, context,
    numeric], and the attention weights (R, C, T), 0 at padding (with `softmax_scale` > 0,
    the softmax of scale × score over the valid behaviours: the authors' variant), which
    Eq. (3)'s interest sums the behaviours by; blocks shared out over `threads`. The rows are
    gathered inside the blocks, on every thread (gathered before, serially, they took 0.19 ms
    of a 2.6 ms request on cold caches)."""
    r, c, _ = cand_ids.shape
    sizes = np.array([t.shape[0] for t in tables])  # (K,)
    for ids in (hist_ids, cand_ids):  # the kernel reads rows unchecked: as torch's lookups do
        if ids.size and (ids.min() < 0 or (ids.reshape(-1, len(sizes)).max(0) >= sizes).any()):
            raise IndexError("index out of range in self")
    inputs = (
        tuple(np.ascontiguousarray(t, np.float32) for t in tables),  # [(V_k, D_k)]
        np.ascontiguousarray(hist_ids, np.int64),  # (R, T, K)
        np.ascontiguousarray(cand_ids, np.int64),  # (R, C, K)
        np.ascontiguousarray(lengths, np.int64),  # (R,)
        np.ascontiguousarray(side, np.float32),  # (R, C, D)
    )
    attention = np.empty((r, c, hist_ids.shape[1]), np.float32)
    out = np.empty((r, c, tower.weights[-1].shape[1]), np.float32)
    _one_blas_thread()
    mkl = _MKL is not None and MATMUL == "mkl"
    counter = np.zeros(1, np.int64)  # the next block to claim
    layers = (tower.weights, tower.biases, tower.tables, tower.kinds)
    args = (_FUNCTIONS, mkl, *inputs, *unit.args, float(softmax_scale), *layers)
    blocks = r * -(-c // BLOCK)
    call = (*args, attention, out, counter)
    run_workers(_score_blocks, call, min(blocks, threads), blocks)
    return out, attention


@functools.cache
def _one_blas_thread() -> None:
    """OpenBLAS (scipy's, which numba's matmul calls) computes on the calling thread: its own
    workers, started by a matmul inside the kernel, spin after it and took the cores from the
    kernel's other workers and from torch (the floor beside it measured 2.0x slower)."""
    import scipy.linalg.cython_blas  # noqa: F401  # loaded, so threadpoolctl sees it
    from threadpoolctl import ThreadpoolController

    ThreadpoolController().select(internal_api="openblas").limit(limits=1)


@functools.cache
def _pool(pid: int) -> ThreadPoolExecutor:
    """This process's workers (a forked child starts its own: the parent's threads are gone)."""
    return ThreadPoolExecutor(max(1, (os.cpu_count() or 1) - 1), thread_name_prefix="unit")


def run_workers(fn: Any, args: tuple[Any, ...], workers: int, blocks: int) -> None:
    """`fn(*args, done)` on this thread and on `workers` − 1 of the pool's, together: each
    claims blocks until none is left, so a worker that starts late or runs slowly (a busy
    core) takes fewer, instead of the others waiting for its fixed share. Each block done is
    counted in `done`; this thread, out of blocks, spins (without the GIL) until all `blocks`
    are done instead of sleeping on the workers' futures: a worker that had not woken up yet
    finds nothing left, and no thread's wake-up is waited for (a 2-worker call with nothing to
    do took 89 µs with futures). A worker's error is raised from its future."""
    done = np.zeros(1, np.int64)
    call = (*args, done)
    futures = [_pool(os.getpid()).submit(fn, *call) for _ in range(workers - 1)]
    fn(*call)
    if futures and not _finished(done, blocks, SPINS):
        for future in futures:
            future.result()
        if done[0] < blocks:  # pragma: no cover - a worker stopped without an error
            raise RuntimeError(f"the kernel's workers did {done[0]} of {blocks} blocks")


if numba is not None:

    @intrinsic
    def _atomic_add(typingctx, counter, value):  # noqa: ANN001, ANN202
        """counter[0] += value, atomically (LLVM atomicrmw, sequentially consistent: a block's
        outputs are written before its count is seen); its value before."""

        def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
            data = context.make_array(signature.args[0])(context, builder, args[0]).data
            return builder.atomic_rmw("add", data, args[1], "seq_cst")

        return types.int64(counter, types.int64), codegen

else:  # pragma: no cover - the suite installs numba

    def _atomic_add(counter: np.ndarray, value: int) -> int:
        counter[0] += value  # without numba the kernel runs as Python, one worker at a time
        return int(counter[0] - value)


@_jit
def _finished(done, total, spins):  # noqa: ANN001, ANN202
    """Whether done[0] reaches `total` within `spins` atomic reads."""
    for _ in range(spins):
        if _atomic_add(done, 0) >= total:
            return True
    return False


@_jit
def _score_blocks(functions, mkl, tables, hist_ids, cand_ids, lengths, side, qwt, qb, base, w4t,
                  w2t, b2, w3, b3, act1, act2, kind1, kind2, scale, weights, biases, tower_acts,
                  kinds, att, out, counter, done):  # fmt: skip  # noqa: ANN001, ANN202
    """att (R, C, T) and the tower's out (R, C, O), BLOCK candidates of one request at a time,
    each block claimed from `counter` and counted in `done` (numba); a thread gathers a
    request's behaviours when it first takes one of its blocks, and each block's candidates.
    The matmuls by MKL's `functions` when `mkl`, else OpenBLAS. Only each request's valid
    behaviours are scored."""
    t_len, c_len = hist_ids.shape[1], cand_ids.shape[1]
    e_len = 0
    for i in range(len(tables)):
        e_len += tables[i].shape[1]
    h1, h2, d_len = base.shape[1], w2t.shape[1], e_len + e_len + side.shape[2]
    per_request = (c_len + BLOCK - 1) // BLOCK
    scratch = np.zeros(8, np.int64)  # sgemm_'s arguments by reference (`_matmul`)
    keys = np.empty((t_len, e_len), np.float32)  # (T, E) the request `held`'s behaviours
    held = -1
    q_buf = np.empty(BLOCK * e_len, np.float32)
    pq_buf = np.empty(BLOCK * h1, np.float32)
    mix_buf = np.empty(e_len * BLOCK * h1, np.float32)
    pre_buf = np.empty(t_len * BLOCK * h1, np.float32)
    hid_buf = np.empty(t_len * BLOCK * h2, np.float32)
    interest_buf = np.empty(BLOCK * e_len, np.float32)
    x_buf = np.empty(BLOCK * d_len, np.float32)
    width = 1
    for i in range(len(weights)):
        width = max(width, weights[i].shape[1])
    tower_bufs = (np.empty(BLOCK * width, np.float32), np.empty(BLOCK * width, np.float32))
    while True:
        k = _atomic_add(counter, 1)
        if k >= cand_ids.shape[0] * per_request:
            return
        r, s = k // per_request, (k % per_request) * BLOCK
        n = min(BLOCK, c_len - s)
        valid = min(max(lengths[r], 0), t_len)
        if r != held:
            _gather(tables, hist_ids[r], keys)
            held = r
        q = q_buf[: n * e_len].reshape((n, e_len))
        _gather(tables, cand_ids[r, s : s + n], q)
        att[r, s : s + n, :] = 0.0
        if valid > 0:
            pq = pq_buf[: n * h1].reshape((n, h1))  # (n, H1): (W2 − W3)·v + b
            _matmul(functions, mkl, q, qwt, pq, scratch)
            for j in range(n):
                for h in range(h1):
                    pq[j, h] += qb[h]
            _scores(functions, mkl, keys[:valid], q, pq, base, w4t, w2t, b2, w3, b3, act1,
                    act2, kind1, kind2, att[r], s, n, mix_buf, pre_buf, hid_buf,
                    scratch)  # fmt: skip
            if scale > 0.0:
                _softmax(att[r], s, n, valid, scale)
        interest = interest_buf[: n * e_len].reshape((n, e_len))
        # Eq. (3): Σ_j a(e_j, v)·e_j, padding weighted 0
        _matmul(functions, mkl, att[r, s : s + n], keys, interest, scratch)
        x = x_buf[: n * d_len].reshape((n, d_len))
        x[:, :e_len] = interest
        x[:, e_len : 2 * e_len] = q
        x[:, 2 * e_len :] = side[r, s : s + n]
        out[r, s : s + n] = _tower(functions, mkl, x, weights, biases, tower_acts, kinds,
                                   tower_bufs, scratch)  # fmt: skip
        _atomic_add(done, 1)


@_jit
def _gather(tables, ids, rows):  # noqa: ANN001, ANN202
    """rows (n, E) = the behaviour embeddings of ids (n, K): the K tables' rows side by side."""
    for j in range(ids.shape[0]):
        start = 0
        for i in range(len(tables)):
            table = tables[i]
            row = ids[j, i]
            for d in range(table.shape[1]):
                rows[j, start + d] = table[row, d]
            start += table.shape[1]


@_jit
def _tower(functions, mkl, x, weights, biases, tables, kinds, buffers, scratch):  # noqa: ANN001, ANN202
    """The MLP of (weights, biases, tables, kinds) on rows x (M, in): a view (M, out) of one
    of `buffers`."""
    m = x.shape[0]
    w = weights[0].shape[1]
    h = buffers[0][: m * w].reshape((m, w))
    _matmul(functions, mkl, x, weights[0], h, scratch)
    _bias_act(h, biases[0], tables[0], kinds[0])
    for i in range(1, len(weights)):
        w = weights[i].shape[1]
        nxt = buffers[i % 2][: m * w].reshape((m, w))
        _matmul(functions, mkl, h, weights[i], nxt, scratch)
        _bias_act(nxt, biases[i], tables[i], kinds[i])
        h = nxt
    return h


@_jit
def _scores(functions, mkl, keys, q, pq, base, w4t, w2t, b2, w3, b3, act1, act2, kind1, kind2,
            att, s, n, mix_buf, pre_buf, hid_buf, scratch):  # fmt: skip  # noqa: ANN001, ANN202
    """att[s:s+n, :V] (C, T) = the unit's scores of one request's V valid keys (V, E) against
    its candidates s:s+n, q (n, E), their candidate terms pq (n, H1) given."""
    valid, e_len = keys.shape
    h1, h2 = base.shape[1], w2t.shape[1]
    mix = mix_buf[: e_len * n * h1].reshape((e_len, n * h1))  # (E, n·H1)
    for e in range(e_len):
        for j in range(n):
            qe = q[j, e]
            for h in range(h1):
                mix[e, j * h1 + h] = base[e, h] + qe * w4t[e, h]
    pre = pre_buf[: valid * n * h1].reshape((valid, n * h1))  # (V, n·H1)
    _matmul(functions, mkl, keys, mix, pre, scratch)
    _act_grid(pre, pq, kind1, act1)  # + the candidate terms, then the activation
    hid = hid_buf[: valid * n * h2].reshape((valid * n, h2))  # (V·n, H2)
    _matmul(functions, mkl, pre.reshape((valid * n, h1)), w2t, hid, scratch)
    _act_dot(hid, b2, w3, b3, kind2, act2, att, s, n)


@_jit
def _bias_act(h, bias, table, kind):  # noqa: ANN001, ANN202
    """h (M, W) += bias, then its activation (kind, table), in place."""
    _act_grid(h, bias.reshape((1, h.shape[1])), kind, table)


@_jit
def _act_grid(x, add, kind, table):  # noqa: ANN001, ANN202
    """x (M, G·W) = act(x + add[g] on each g-th run of W) in place, add (G, W): PReLU (ReLU at
    α = 0), Dice in eval (Eq. 9) or sigmoid, table (3, W) their α, mean and 1/√(var + ε). One
    loop nest per kind, with no branch inside, so each vectorises: with the kind chosen per
    value (and numba's scalar exp), the first layer's Dice activations of a 200 × 100 request
    took 7.0 ms on one thread instead of 0.75, PReLU's 0.21 instead of 0.17."""
    groups, width = add.shape
    if kind == PRELU:
        for i in range(x.shape[0]):
            for g in range(groups):
                for h in range(width):
                    v = x[i, g * width + h] + add[g, h]
                    x[i, g * width + h] = v if v > 0 else table[0, h] * v  # Eq. (8)
    elif kind == DICE:
        for i in range(x.shape[0]):
            for g in range(groups):
                for h in range(width):
                    v = x[i, g * width + h] + add[g, h]
                    p = _sigmoid((v - table[1, h]) * table[2, h])
                    x[i, g * width + h] = v * (table[0, h] + p * (1 - table[0, h]))  # Eq. (9)
    else:
        for i in range(x.shape[0]):
            for g in range(groups):
                for h in range(width):
                    x[i, g * width + h] = _sigmoid(x[i, g * width + h] + add[g, h])


@_jit
def _act_dot(hid, bias, w, b, kind, table, att, s, n):  # noqa: ANN001, ANN202
    """att[s + j, t] = Σ_i w[i]·act(hid[t·n + j, i] + bias[i]) + b: the unit's output layer on
    its second activation. PReLU in the dot product's loop; Dice and sigmoid in a pass of their
    own first (`_act_grid`: with the exp inside the dot product's loop, it was 11-14 % slower)."""
    if kind != PRELU:
        _act_grid(hid, bias.reshape((1, w.shape[0])), kind, table)
    for row in range(hid.shape[0]):
        total = np.float32(0.0)
        if kind == PRELU:
            for i in range(w.shape[0]):
                v = hid[row, i] + bias[i]
                total += w[i] * (v if v > 0 else table[0, i] * v)  # Eq. (8)
        else:
            for i in range(w.shape[0]):
                total += w[i] * hid[row, i]
        att[s + row % n, row // n] = total + b


@_inline
def _sigmoid(x):  # noqa: ANN001, ANN202
    return np.float32(1.0) / (np.float32(1.0) + _exp(-x))


@_inline
def _exp(x):  # noqa: ANN001, ANN202
    """e^x in float32, |error| ≤ 3e-7 relative, from mul/add only (so loops vectorise; numba
    has no vector exp without Intel's SVML): x = k·ln 2 + r, |r| ≤ ln 2 / 2, e^r by its degree-6
    Taylor polynomial, 2^k from the exponent bits."""
    f = np.float32
    x = min(max(x, f(-87.0)), f(88.0))
    k = np.int32(x * f(1.442695041) + (f(0.5) if x >= f(0.0) else f(-0.5)))
    r = x - f(k) * f(0.693359375) - f(k) * f(-2.12194440e-4)  # ln 2 in two parts
    poly = f(1.0 / 120) + r * f(1.0 / 720)
    poly = f(1.0) + r * (f(1.0) + r * (f(0.5) + r * (f(1.0 / 6) + r * (f(1.0 / 24) + r * poly))))
    return poly * _pow2(k)


if numba is not None:

    @intrinsic
    def _pow2(typingctx, k):  # noqa: ANN001, ANN202
        """2^k as a float32 for an int32 k in [-126, 127]: k + 127 in the exponent bits."""

        def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
            i32 = ir.IntType(32)
            bits = builder.shl(builder.add(args[0], ir.Constant(i32, 127)), ir.Constant(i32, 23))
            return builder.bitcast(bits, ir.FloatType())

        return types.float32(types.int32), codegen

else:  # pragma: no cover - the suite installs numba

    def _pow2(k: int) -> float:
        return float(np.float32(2.0) ** k)


@_jit
def _softmax(att, s, n, valid, scale):  # noqa: ANN001, ANN202
    """Rows s:s+n of att (C, T): the softmax of scale × the first `valid` entries."""
    for j in range(s, s + n):
        top = att[j, 0] * scale
        for t in range(1, valid):
            top = max(top, att[j, t] * scale)
        total = 0.0
        for t in range(valid):
            att[j, t] = _exp(att[j, t] * scale - top)
            total += att[j, t]
        for t in range(valid):
            att[j, t] /= total


@_jit
def _matmul(functions, mkl, a, b, c, scratch):  # noqa: ANN001, ANN202
    """c = a @ b (row-major). MKL: its column-major sgemm_ as cᵀ = bᵀ·aᵀ, on this thread only
    (MKL's OpenMP team would oversubscribe the kernel's threads). `scratch` (int64) holds
    sgemm_'s by-reference arguments one per 8-byte slot, N, M, K, float32 1.0's bits, 0.0 and
    'N', so a 32-bit and a 64-bit integer interface read the same values. Else numba's BLAS
    binding (scipy's OpenBLAS)."""
    if not mkl:
        np.dot(a, b, c)
        return
    sgemm, local_threads = functions
    m, k = a.shape
    n = b.shape[1]
    scratch[0], scratch[1], scratch[2] = n, m, k
    scratch[3], scratch[4], scratch[5] = 1065353216, 0, 78  # float32 1.0's bits; 0.0; 'N'
    p = scratch.ctypes.data
    previous = local_threads(1)
    sgemm(p + 40, p + 40, p, p + 8, p + 16, p + 24, b.ctypes.data, p, a.ctypes.data, p + 16,
          p + 32, c.ctypes.data, p)  # fmt: skip
    local_threads(previous)
