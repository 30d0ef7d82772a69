"""Building blocks: PReLU, Dice (Eq. 9), MLP, the local activation unit, shared embeddings."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dinctl.data.batching import Batch
from dinctl.models.config import ModelConfig


class PReLU(nn.Module):
    """Per-channel PReLU over the last dimension: f(s) = max(s, 0) + α·min(s, 0)."""

    def __init__(self, num_features: int, init: float = ModelConfig.dice_alpha_init) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.full((num_features,), float(init)))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if _RELU_PRELU.get():  # exactly f(s), in ops without a branch per element
            return F.relu(x) - self.alpha * F.relu(-x)
        if x.dim() == 2:  # (N, H): torch's fused kernel, channels on dim 1
            return F.prelu(x, self.alpha)
        return x.clamp(min=0) + self.alpha * x.clamp(max=0)


_RELU_PRELU: ContextVar[bool] = ContextVar("dinctl_relu_prelu", default=False)


@contextmanager
def relu_form_prelu() -> Iterator[None]:
    """Trace PReLU as relu(s) − α·relu(−s) (the ONNX export): ONNX Runtime's PRelu kernel took
    9x as long on a request's activations (mixed signs) as on constant ones; Relu does not."""
    token = _RELU_PRELU.set(True)
    try:
        yield
    finally:
        _RELU_PRELU.reset(token)


class Dice(nn.Module):
    """Data-adaptive activation, Eq. (9): f(s) = p(s)·s + (1 − p(s))·α·s.

    p(s) = sigmoid((s − E[s]) / sqrt(Var[s] + eps)), per channel (last dimension), no affine.
    Training uses the statistics of the batch (biased variance) over the positions where `mask`
    is True; eval uses running averages updated torch-BN style with `momentum`.
    """

    running_mean: torch.Tensor
    running_var: torch.Tensor

    def __init__(
        self,
        num_features: int,
        eps: float = ModelConfig.dice_eps,
        momentum: float = ModelConfig.dice_momentum,
        init: float = ModelConfig.dice_alpha_init,
    ) -> None:
        super().__init__()
        self.eps = float(eps)
        self.momentum = float(momentum)
        self.alpha = nn.Parameter(torch.full((num_features,), float(init)))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (..., H); mask: x.shape[:-1] bool (True = a real position) or None for all."""
        if self.training and mask is None and x.dim() == 2 and x.dtype == torch.float32 \
                and x.shape[0] > 1:  # fmt: skip
            return self._train_2d(x)
        if self.training:
            flat = x.reshape(-1, x.shape[-1])  # (N, H)
            if mask is not None:
                flat = flat[mask.reshape(-1)]  # (N_valid, H)
            if flat.shape[0] == 0:
                return x
            # statistics in float32, also under autocast (the buffers are float32)
            var, mean = torch.var_mean(flat.float(), dim=0, correction=0)  # (H,), (H,) biased
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_var.lerp_(var.detach(), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        p = torch.sigmoid((x - mean) * torch.rsqrt(var + self.eps))  # (..., H)
        return x * torch.addcmul(self.alpha, p, 1 - self.alpha)  # Eq. (9): p·s + (1−p)·α·s

    def _train_2d(self, x: torch.Tensor) -> torch.Tensor:
        """Training on (N, H) float32 rows, every row real: the same statistics through one
        fused batch-norm kernel (forward and backward), ~17% off a Dice step at batch 1024.
        Its statistics go to temporary buffers (momentum 1: mean and unbiased variance), from
        which ours move with `momentum`, biased as in the general path."""
        n, h = x.shape
        mean, var = x.new_zeros(h), x.new_ones(h)
        z = F.batch_norm(x, mean, var, None, None, True, 1.0, self.eps)  # (x − E) / √(Var + ε)
        with torch.no_grad():
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var * ((n - 1) / n), self.momentum)  # unbiased → biased
        p = torch.sigmoid(z)
        return x * torch.addcmul(self.alpha, p, 1 - self.alpha)  # Eq. (9)


Activation = Callable[[int], nn.Module]  # channels → a fresh activation module


def activation(name: str, cfg: ModelConfig | None = None) -> Activation:
    """The factory of activation `name` (`prelu` | `dice` | `sigmoid` | `relu`), with the
    config's Dice/PReLU settings (ModelConfig's defaults without one)."""
    if cfg is None:
        return functools.partial(make_activation, name)
    return functools.partial(
        make_activation,
        name,
        eps=cfg.dice_eps,
        momentum=cfg.dice_momentum,
        alpha_init=cfg.dice_alpha_init,
    )


def make_activation(
    name: str,
    num_features: int,
    eps: float = ModelConfig.dice_eps,
    momentum: float = ModelConfig.dice_momentum,
    alpha_init: float = ModelConfig.dice_alpha_init,
) -> nn.Module:
    """`prelu` | `dice` | `sigmoid` | `relu` over `num_features` channels."""
    if name == "prelu":
        return PReLU(num_features, init=alpha_init)
    if name == "dice":
        return Dice(num_features, eps=eps, momentum=momentum, init=alpha_init)
    if name == "sigmoid":
        return _Sigmoid()
    if name == "relu":
        return _ReLU()
    raise ValueError(f"unknown activation {name!r}")


class _Sigmoid(nn.Module):
    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return torch.sigmoid(x)


class _ReLU(nn.Module):
    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return torch.relu(x)


def init_linears(model: nn.Module, scheme: str) -> None:
    """Re-initialise every nn.Linear: `torch` keeps nn.Linear's own (Kaiming-uniform weights,
    uniform bias); `xavier` draws Xavier-normal weights and zero biases."""
    if scheme == "torch":
        return
    if scheme != "xavier":
        raise ValueError(f"unknown linear init {scheme!r}")
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class MLP(nn.Module):
    """Linear → act for each hidden size, then a linear output layer (no output activation).
    Inputs of any leading shape (..., in_dim) run as one (N, in_dim) matrix."""

    def __init__(
        self,
        in_dim: int,
        hidden: tuple[int, ...],
        act: Activation,
        out_dim: int = 1,
    ) -> None:
        super().__init__()
        dims = (in_dim, *hidden)
        self.linears = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True)
        )
        self.acts = nn.ModuleList(act(h) for h in hidden)
        self.out = nn.Linear(dims[-1], out_dim)
        self._kernel_args: tuple[Any, ...] | None = None  # `kernel_weights`'

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x = x.reshape(-1, x.shape[-1])  # (N, in): Dice and PReLU take their 2-D kernels
        for linear, act in zip(self.linears, self.acts, strict=True):
            x = act(linear(x))
        return self.out(x).reshape(*lead, self.out.out_features)

    def kernel_layers(self) -> Any:
        """This MLP as dinctl/models/fused_unit.py's kernel takes it (`PreparedTower`), made
        once per version of its weights; None with an activation the kernel does not compute."""
        import dinctl.models.fused_unit as fused_unit

        def make() -> Any:
            linears = [cast(nn.Linear, layer) for layer in self.linears]
            widths = [layer.out_features for layer in linears]
            acts = [kernel_activation(a, w) for a, w in zip(self.acts, widths, strict=True)]
            if any(a is None for a in acts):
                return None
            return fused_unit.prepare_tower(linears, cast(list, acts), self.out)

        return kernel_weights(self, make)


def kernel_weights(module: nn.Module, make: Callable[[], Any]) -> Any:
    """`make()`'s weights for a kernel, kept in `module._kernel_args` and made again only when
    one of its tensors changed: a new tensor, new storage (`.to`) or a write in place
    (load_state_dict, an optimizer step). The module's submodules are listed once (walking
    them for the unit and the tower took 31 µs a forward, this 8 µs); their tensors are read
    from their own tables each time."""
    cached = module.__dict__.get("_kernel_args")  # a plain attribute (nn.Module types its own)
    modules = cached[2] if cached is not None else list(module.modules())
    version = [
        (x.data_ptr(), x._version)
        for m in modules
        for table in (m._parameters, m._buffers)
        for x in table.values()
        if x is not None
    ]
    if cached is None or cached[0] != version:
        cached = (version, make(), modules)
        module.__dict__["_kernel_args"] = cached
    return cached[1]


_BF16_PAIRS: ContextVar[bool] = ContextVar("dinctl_bf16_pairs", default=False)


@contextmanager
def bf16_pairs() -> Iterator[None]:
    """Run the activation unit's (behaviour × candidate) matmul in bfloat16 (serving's --bf16:
    the dominant matmul only; everything else stays float32)."""
    token = _BF16_PAIRS.set(True)
    try:
        yield
    finally:
        _BF16_PAIRS.reset(token)


class ActivationUnit(nn.Module):
    """The local activation unit a(e_j, v_A) over [e_j, v_A, e_j − v_A, e_j ⊙ v_A] (Fig. 2).

    Scores every behaviour of a `History` (keys (N, E), `row` (N,) naming its request) against
    each of its request's C candidates, queries (R, C, E). The first layer is applied
    algebraically, W·[e, v, e−v, e⊙v] + b = (W1+W3)·e + ((W2−W3)·v + b) + W4·(e⊙v), so the
    candidate term is computed once per candidate, the behaviour term once per behaviour, and
    no (N, C, 4E) input is built. Training is C = 1 over the packed valid behaviours; serving is
    C candidates over every history position (padding is masked by the `History`).
    """

    def __init__(
        self,
        dim: int,
        hidden: tuple[int, ...],
        act: Activation,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.first = nn.Linear(4 * dim, hidden[0])  # weights over [e, v, e−v, e⊙v]
        self.first_act = act(hidden[0])
        self.rest = MLP(hidden[0], tuple(hidden[1:]), act, 1)
        self._kernel_args: tuple[Any, ...] | None = None  # `kernel_weights`'

    def first_terms(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The first layer's weights by term, each (H, E): W·[e, v, e−v, e⊙v] =
        (W1+W3)·e + (W2−W3)·v + W4·(e⊙v), so the behaviour's, the candidate's, the pair's."""
        w1, w2, w3, w4 = self.first.weight.split(self.dim, dim=1)  # each (H, E)
        return w1 + w3, w2 - w3, w4

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, history: History) -> torch.Tensor:
        """Scores (N, C) of keys (N, E) against their request's queries (R, C, E)."""
        if isinstance(history, PaddedHistory):
            return self._padded(queries, keys, history)
        key_w, query_w, pair_w = self.first_terms()  # each (H, E)
        n, c, h = keys.shape[0], queries.shape[1], self.first.out_features
        per_query = history.rows(F.linear(queries, query_w, self.first.bias))  # (N, C, H)
        cross = (keys.unsqueeze(1) * history.rows(queries)).reshape(n * c, self.dim)  # (N·C, E)
        low = torch.bfloat16 if _BF16_PAIRS.get() else keys.dtype  # --bf16: the pair terms
        pre = torch.mm(cross.to(low), pair_w.t().to(low)).view(n, c, h)  # (N, C, H)
        key_term = torch.mm(keys.to(low), key_w.t().to(low))  # (N, H)
        pre = pre + per_query.to(low) + key_term.unsqueeze(1)  # (N, C, H)
        if low is torch.bfloat16:
            pre = pre.float()
        return self.rest(self.first_act(pre.reshape(n * c, h))).view(n, c)  # (N, C)

    def _padded(
        self, queries: torch.Tensor, keys: torch.Tensor, history: PaddedHistory
    ) -> torch.Tensor:
        """The serving layout, the first layer as one matmul per candidate: k·(W1+W3)ᵀ +
        (k⊙q)·W4ᵀ = k·((W1+W3)ᵀ + diag(q)·W4ᵀ), each request's keys (T, E) against each
        candidate's mixed weight (E, H), so no (N, C, E) pair tensor is built. The keys are
        broadcast by `matmul` from a literal size-1 axis (reshaping keys expanded to (R·C, T, E)
        specialised C = 1 in the export); the exported graph holds for every C, T ≥ 1
        (tests/test_models_servable.py)."""
        key_w, query_w, pair_w = self.first_terms()  # each (H, E)
        r, t = history.shape
        c, e, h = queries.shape[1], self.dim, self.first.out_features
        per_query = F.linear(queries, query_w, self.first.bias)  # (R, C, H)
        # both weights H-contiguous, as the output is written: with the transposed views the
        # whole forward took 1.05x as long (paired A/B, 1 and 2 threads)
        base, w4t = key_w.t().contiguous(), pair_w.t().contiguous()  # (E, H) each
        mix = torch.addcmul(base, queries.unsqueeze(-1), w4t)  # (R, C, E, H)
        low = torch.bfloat16 if _BF16_PAIRS.get() else keys.dtype  # --bf16: the pair terms
        pre = torch.matmul(keys.view(r, 1, t, e).to(low), mix.to(low))  # (R, C, T, H)
        pre = pre.add_(per_query.unsqueeze(2).to(low)).float()  # (R, C, T, H), in place
        scores = self.rest(self.first_act(pre.view(r * c * t, h))).view(r, c, t)
        return scores.transpose(1, 2).reshape(r * t, c)  # (N, C)

    def serve_arrays(
        self,
        tables: tuple[np.ndarray, ...],
        hist_ids: np.ndarray,
        cand_ids: np.ndarray,
        lengths: np.ndarray,
        tower: MLP,
        side: np.ndarray,
        softmax: bool = False,
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """DIN's serving forward from the behaviour ids on, as dinctl/models/fused_unit.py's
        kernel: the embeddings of hist_ids (R, T, K), the first `lengths` (R,) valid, and of
        cand_ids (R, C, K) as their K `tables`' rows side by side, the unit's scores of the
        histories against the candidates as `forward` (`softmax`: their softmax over the valid
        behaviours of scores / √E), Eq. (3)'s interest as `PaddedHistory.weighted_sum`, and
        `tower`'s output (R, C, O) on [interest ⊕ candidate ⊕ side (R, C, D)], with the
        attention (R, C, T), 0 at padding. None where the kernel does not apply: training, a
        unit of other than two hidden layers, an activation it does not compute, not float32,
        numba missing or switched off."""
        import dinctl.models.fused_unit as fused_unit  # numba loads only where this runs

        if self.training or tower.training or not fused_unit.available():
            return None
        if any(t.dtype != np.float32 for t in tables) or side.dtype != np.float32:
            return None
        unit, layers = self.kernel_layers(), tower.kernel_layers()
        if unit is None or layers is None:
            return None
        if not unit.args[0].dtype == layers.weights[0].dtype == np.float32:
            return None
        scale = 1.0 / math.sqrt(sum(t.shape[1] for t in tables)) if softmax else 0.0
        threads = torch.get_num_threads()
        ids = (hist_ids, cand_ids, lengths, side, scale, threads)
        return fused_unit.score_arrays(unit, layers, tables, *ids)

    def kernel_layers(self) -> Any:
        """This unit as the kernel takes it (`fused_unit.Prepared`), made once per version of
        its weights; None if it cannot: other than two hidden layers, or an activation the
        kernel does not compute."""
        import dinctl.models.fused_unit as fused_unit

        def make() -> Any:
            layers = self._unit_layers()
            return fused_unit.prepare(layers) if layers is not None else None

        return kernel_weights(self, make)

    def kernel_ready(self) -> bool:
        """Whether, in eval, this unit's padded forward runs as the fused kernel."""
        import dinctl.models.fused_unit as fused_unit

        return fused_unit.available() and self._unit_layers() is not None

    def _unit_layers(self) -> Any:
        """The unit as the kernel takes it (`fused_unit.UnitLayers`), None if it cannot: other
        than two hidden layers, or an activation the kernel does not compute."""
        import dinctl.models.fused_unit as fused_unit

        if len(self.rest.linears) != 1:
            return None
        second = cast(nn.Linear, self.rest.linears[0])
        acts = (
            kernel_activation(self.first_act, second.in_features),
            kernel_activation(self.rest.acts[0], second.out_features),
        )
        if acts[0] is None or acts[1] is None:
            return None
        terms = (*self.first_terms(), self.first.bias)
        return fused_unit.UnitLayers(*terms, acts[0], second, acts[1], self.rest.out)


def kernel_activation(act: nn.Module, width: int) -> tuple[int, np.ndarray] | None:
    """An activation of `width` channels as the fused unit's kernel takes it, (kind, table),
    None for one it does not compute."""
    import dinctl.models.fused_unit as fused_unit

    if isinstance(act, PReLU):
        return fused_unit.PRELU, fused_unit.activation_table(width, act.alpha)
    if isinstance(act, Dice):  # eval: the running statistics, Eq. (9)
        stats = (act.running_mean, act.running_var, act.eps)
        return fused_unit.DICE, fused_unit.activation_table(width, act.alpha, *stats)
    if isinstance(act, _ReLU | _Sigmoid):  # their tables are unused (ReLU is PReLU at α = 0)
        kind = fused_unit.PRELU if isinstance(act, _ReLU) else fused_unit.SIGMOID
        return kind, fused_unit.activation_table(width)
    return None


def embeddings(tables: nn.ModuleList) -> list[nn.Embedding]:
    """The tables of a ModuleList of nn.Embedding, typed as such."""
    return [t for t in tables if isinstance(t, nn.Embedding)]


class ItemMap(nn.Module):
    """`--reg filter`'s item map (§6.5): dataset item id → the model's item id, 0 (padding) for
    a thrown-away id. State of the tables it feeds: sized from the config (`item_filter`),
    filled once at training from the item frequencies, saved and loaded with the weights."""

    ids: torch.Tensor

    def __init__(self, n_items: int) -> None:
        super().__init__()
        self.register_buffer("ids", torch.zeros(n_items + 1, dtype=torch.long))  # (N+1,)

    def forward(self, item: torch.Tensor) -> torch.Tensor:
        return self.ids[item]


def map_items(model: nn.Module, item: torch.Tensor) -> torch.Tensor:
    """Item ids as `model`'s item tables see them (through its ItemMap, if it has one)."""
    for module in model.modules():
        if isinstance(module, ItemMap):
            return module(item)
    return item


class BehaviourEmbedding(nn.Module):
    """Shared embeddings of a behaviour's fields (item ⊕ category ⊕ extra fields) for the
    history and the candidate; row 0 of every table is padding."""

    def __init__(
        self,
        n_items: int,
        n_cates: int,
        dim: int,
        use_item_ids: bool,
        init_std: float,
        extra: tuple[tuple[str, int], ...] = (),
        item_filter: int = 0,
    ) -> None:
        super().__init__()
        self.use_item_ids = use_item_ids
        self.item_map = ItemMap(item_filter) if item_filter and use_item_ids else None
        self.item = nn.Embedding(n_items + 1, dim, padding_idx=0) if use_item_ids else None
        self.cate = nn.Embedding(n_cates + 1, dim, padding_idx=0)
        # extra behaviour fields (brand, shop, ...): vocab already counts the padding row
        self.extra = nn.ModuleList(nn.Embedding(v, dim, padding_idx=0) for _, v in extra)
        self.extra_names = tuple(name for name, _ in extra)
        for table in self.tables():
            init_table(table, init_std)

    def extra_tables(self) -> list[nn.Embedding]:
        return embeddings(self.extra)

    def tables(self) -> list[nn.Embedding]:
        return [t for t in (self.item, self.cate) if t is not None] + self.extra_tables()

    def sparse_tables(self) -> list[tuple[str, nn.Embedding, str]]:
        out = [("cate_emb", self.cate, "cate")]
        if self.item is not None:
            out.insert(0, ("item_emb", self.item, "item"))
        for k, (name, table) in enumerate(zip(self.extra_names, self.extra_tables(), strict=True)):
            out.append((f"{name}_emb", table, f"beh:{k}:{name}"))
        return out

    def fields(
        self, item: torch.Tensor, cate: torch.Tensor, extra: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """The per-id embeddings [item, cate, extra...] (no item without item ids) of ids of any
        shape (...,) → (..., D); `extra` (..., F) holds the extra fields' ids."""
        mapped = self.item_map(item) if self.item_map is not None else item
        ids = self.table_ids(mapped, cate, extra)
        return [table(rows) for table, rows in zip(self.tables(), ids, strict=True)]

    def table_ids(self, item: Any, cate: Any, extra: Any = None) -> list[Any]:
        """The ids each of `tables` is looked up with, in its order (torch or numpy): item
        ids already through the item map, category ids, then each extra field's (..., F)."""
        ids = [cate]
        if self.item is not None:
            ids.insert(0, item)
        if self.extra_names:
            assert extra is not None, "the model has extra behaviour fields: the batch lacks them"
            ids += [extra[..., k] for k in range(len(self.extra_names))]
        return ids

    def forward(
        self, item: torch.Tensor, cate: torch.Tensor, extra: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Behaviour embedding, its fields concatenated: (...,) → (..., E)."""
        parts = self.fields(item, cate, extra)
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def kernel_ids(
        self, item: np.ndarray, cate: np.ndarray, extra: np.ndarray | None = None
    ) -> np.ndarray:
        """For ids (...,) and extra field ids (..., F), the row of each of `kernel_tables` that
        `forward` reads, (..., K): the kernel gathers them."""
        mapped = self.item_map.ids.numpy()[item] if self.item_map is not None else item
        columns = self.table_ids(mapped, cate, extra)
        return np.stack(columns, axis=-1).astype(np.int64, copy=False)  # (..., K)

    def kernel_tables(self) -> tuple[np.ndarray, ...]:
        """The tables in `fields`' order (their rows side by side are `forward`'s) as numpy
        views of their weights (so a write in place shows), made again when a weight is
        replaced: getting them from the tensors at each look-up took 14 µs of it on cold caches
        (a numpy gather of a request's rows 70 → 56 µs)."""

        def make() -> tuple[np.ndarray, ...]:
            return tuple(t.weight.detach().numpy() for t in self.tables())  # [(V, D)]

        return kernel_weights(self, make)

    def candidate_and_history(
        self, batch: Batch, pack: PackedHistory
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Candidate (B, E) and packed behaviour (N, E) embeddings from one lookup per table,
        so each table's backward builds one dense gradient, not two."""
        item = torch.cat([batch.item, pack.item])  # (B+N,)
        cate = torch.cat([batch.cate, pack.cate])  # (B+N,)
        extra = None
        if self.extra_names:
            assert batch.cand_fields is not None and pack.fields is not None
            extra = torch.cat([batch.cand_fields, pack.fields])  # (B+N, F)
        both = self(item, cate, extra)  # (B+N, E)
        candidate, keys = both.split([batch.item.shape[0], pack.item.shape[0]])  # (B, E), (N, E)
        return candidate, keys  # split: its backward is one cat, not two zero-filled copies


def init_table(table: nn.Embedding, init_std: float) -> None:
    """N(0, std²) rows, the padding row 0 zero."""
    nn.init.normal_(table.weight, std=init_std)
    with torch.no_grad():
        table.weight[0].zero_()


def side_entries(
    label: str, names: tuple[str, ...], tables: nn.ModuleList, n_user: int
) -> list[tuple[str, nn.Embedding, str]]:
    """(label.format(name), table, vocabulary tag) of each user-then-context field's table;
    the tag `user:k:name` / `ctx:k:name` is what the regularisers read."""
    out = []
    for k, (name, table) in enumerate(zip(names, tables, strict=True)):
        assert isinstance(table, nn.Embedding)
        tag = f"user:{k}:{name}" if k < n_user else f"ctx:{k - n_user}:{name}"
        out.append((label.format(name), table, tag))
    return out


class SideEmbedding(nn.Module):
    """User and context field embeddings plus the numeric fields: the inputs Fig. 2 joins to
    the MLP next to the pooled behaviours and the candidate."""

    def __init__(
        self,
        user: tuple[tuple[str, int], ...],
        context: tuple[tuple[str, int], ...],
        n_numeric: int,
        dim: int,
        init_std: float,
    ) -> None:
        super().__init__()
        self.n_user, self.n_numeric = len(user), n_numeric
        self.names = tuple(name for name, _ in (*user, *context))
        self.tables = nn.ModuleList(
            nn.Embedding(v, dim, padding_idx=0) for _, v in (*user, *context)
        )
        for table in self.tables:
            assert isinstance(table, nn.Embedding)
            init_table(table, init_std)

    def sparse_tables(self) -> list[tuple[str, nn.Embedding, str]]:
        return side_entries("{}_emb", self.names, self.tables, self.n_user)

    @staticmethod
    def ids_of(batch: Batch) -> torch.Tensor:
        """(B, U+K) user then context ids."""
        parts = [t for t in (batch.user_fields, batch.context) if t is not None]
        if not parts:
            return batch.item.new_zeros(batch.item.shape[0], 0)
        return torch.cat(parts, dim=1)

    def fields(self, batch: Batch) -> torch.Tensor:
        """User and context field embeddings (B, U+K, D)."""
        ids = self.ids_of(batch)  # (B, U+K)
        assert ids.shape[1] == len(self.names), "the batch lacks the model's user/context fields"
        return torch.stack([table(ids[:, k]) for k, table in enumerate(self.tables)], dim=1)

    def numeric(self, batch: Batch) -> torch.Tensor:
        """(B, M) numeric fields (M may be 0)."""
        if not self.n_numeric:
            return batch.label.new_zeros(batch.item.shape[0], 0)
        assert batch.numeric is not None, "the batch lacks the model's numeric fields"
        return batch.numeric

    def user(self, user_fields: torch.Tensor | None) -> torch.Tensor | None:
        """The user fields' embeddings (R, U·D), once per request; None without user fields."""
        if not self.n_user:
            return None
        assert user_fields is not None, "the model has user fields: user_fields is missing"
        tables = list(self.tables)[: self.n_user]
        return torch.cat([t(user_fields[:, k]) for k, t in enumerate(tables)], dim=-1)

    def per_candidate(
        self,
        user: torch.Tensor | None,
        context: torch.Tensor | None,
        numeric: torch.Tensor | None,
        n_candidates: int,
    ) -> torch.Tensor:
        """[user ⊕ context ⊕ numeric] per candidate (R, C, (U+K)·D + M), from the user part
        `user` (R, U·D), context ids (R, C, K) and numeric values (R, C, M)."""
        parts = []
        if user is not None:
            parts.append(user.unsqueeze(1).expand(user.shape[0], n_candidates, user.shape[1]))
        tables = list(self.tables)[self.n_user :]
        if tables:
            assert context is not None, "the model has context fields: context is missing"
            parts += [t(context[..., k]) for k, t in enumerate(tables)]  # (R, C, D) each
        if self.n_numeric:
            assert numeric is not None, "the model has numeric fields: numeric is missing"
            parts.append(numeric.float())  # (R, C, M)
        return torch.cat(parts, dim=-1)

    def forward(self, batch: Batch) -> torch.Tensor:
        """Everything flattened: (B, (U+K)·D + M)."""
        parts = [self.numeric(batch)]
        if self.names:
            parts.insert(0, self.fields(batch).flatten(1))
        return torch.cat(parts, dim=1)


class History(Protocol):
    """Where a batch's behaviours sit: N keys (N, E) of R requests, as models pool them.

    Two layouts, one interface, so a model's pooling and attention are written once:
    `PackedHistory` (training: the valid behaviours only) and `PaddedHistory` (serving: every
    position of a left-aligned (R, T) window, padding masked).
    """

    shape: tuple[int, int]  # (R, T)

    @property
    def lengths(self) -> torch.Tensor:
        """(R,) valid behaviours per request."""
        ...

    def rows(self, values: torch.Tensor) -> torch.Tensor:
        """Per-request values (R, ...) → per-behaviour (N, ...)."""
        ...

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """Per-request sum of per-behaviour values (N, D) over valid behaviours → (R, D)."""
        ...

    def weighted_sum(self, weights: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """Σ_j w_jc·k_j per request and candidate: weights (N, C), keys (N, E) → (R, C, E)."""
        ...

    def softmax(self, scores: torch.Tensor) -> torch.Tensor:
        """Softmax of scores (N, C) over each request's valid behaviours → (N, C)."""
        ...

    def unpack(self, values: torch.Tensor) -> torch.Tensor:
        """Per-behaviour values (N, C) → (R, C, T), 0 at padding."""
        ...


class PackedHistory:
    """The valid behaviours of a batch, flattened: padding is dropped before any compute."""

    def __init__(self, batch: Batch) -> None:
        b, t = batch.hist_mask.shape
        self.shape = (b, t)
        self.lengths = batch.hist_mask.sum(1)  # (B,)
        self.flat_index = batch.hist_mask.reshape(-1).nonzero().squeeze(1)  # (N,)
        self.row = torch.div(self.flat_index, t, rounding_mode="floor")  # (N,)
        self.item = batch.hist_item.reshape(-1)[self.flat_index]  # (N,)
        self.cate = batch.hist_cate.reshape(-1)[self.flat_index]  # (N,)
        self.fields: torch.Tensor | None = None  # (N, F) extra behaviour fields
        if batch.hist_fields is not None:
            self.fields = batch.hist_fields.reshape(b * t, -1)[self.flat_index]

    def rows(self, values: torch.Tensor) -> torch.Tensor:
        # index_select, not x[row]: its backward is an index_add, not an accumulating index_put
        return values.index_select(0, self.row)

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """Per-row sum of packed values (N, D) → (B, D)."""
        out = values.new_zeros(self.shape[0], values.shape[1])  # (B, D)
        return out.index_add_(0, self.row, values)

    def weighted_sum(self, weights: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        n, c = weights.shape
        pairs = weights.unsqueeze(-1) * keys.unsqueeze(1)  # (N, C, E)
        pairs = pairs.reshape(n, c * keys.shape[1])  # (N, C·E)
        return self.sum(pairs).view(self.shape[0], c, keys.shape[1])  # (B, C, E)

    def softmax(self, scores: torch.Tensor) -> torch.Tensor:
        n_rows, index = self.shape[0], self.row.unsqueeze(1).expand_as(scores)  # (N, C)
        top = scores.new_full((n_rows, scores.shape[1]), -math.inf).scatter_reduce(
            0, index, scores.detach(), reduce="amax"
        )  # (B, C)
        z = torch.exp(scores - top.index_select(0, self.row))  # (N, C)
        total = z.new_zeros(n_rows, scores.shape[1]).index_add_(0, self.row, z)  # (B, C)
        return z / total.index_select(0, self.row)  # (N, C)

    def unpack(self, values: torch.Tensor) -> torch.Tensor:
        b, t = self.shape
        out = values.new_zeros(b * t, values.shape[1])  # (B·T, C)
        out = out.index_copy(0, self.flat_index, values)  # (B·T, C)
        return out.view(b, t, values.shape[1]).transpose(1, 2)  # (B, C, T)


class PaddedHistory:
    """Every position of left-aligned (R, T) histories (N = R·T), positions ≥ hist_len masked:
    the serving layout (no data-dependent shapes, so it exports)."""

    def __init__(self, hist_len: torch.Tensor, shape: torch.Size) -> None:
        """`hist_len` (R,) of histories of `shape` (R, T) (hist_item's: symbolic under
        torch.export, so no int() and one size for R). The masks are made when first used
        (the fused unit's serving forward needs none)."""
        self.shape = (shape[0], shape[1])
        self.hist_len = hist_len

    @functools.cached_property
    def valid(self) -> torch.Tensor:
        pos = torch.arange(self.shape[1], device=self.hist_len.device)  # (T,)
        return pos.unsqueeze(0) < self.hist_len.unsqueeze(1)  # (R, T)

    @functools.cached_property
    def lengths(self) -> torch.Tensor:
        return self.valid.sum(1)  # (R,)

    @functools.cached_property
    def row(self) -> torch.Tensor:
        flat = torch.arange(self.shape[0] * self.shape[1], device=self.hist_len.device)
        return torch.div(flat, self.shape[1], rounding_mode="floor")  # (R·T,) each one's request

    def rows(self, values: torch.Tensor) -> torch.Tensor:
        return values.index_select(0, self.row)  # (R·T, ...)

    def _grid(self, values: torch.Tensor) -> torch.Tensor:
        """(N, D) → (R, T, D), 0 at padding."""
        grid = values.view(*self.shape, values.shape[1])  # (R, T, D)
        return torch.where(self.valid.unsqueeze(-1), grid, 0.0)

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        return self._grid(values).sum(1)  # (R, D)

    def weighted_sum(self, weights: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return torch.matmul(self.unpack(weights), self._grid(keys))  # (R, C, E)

    def softmax(self, scores: torch.Tensor) -> torch.Tensor:
        grid = scores.view(-1, self.shape[1], scores.shape[1])  # (R, T, C)
        mask = self.valid.unsqueeze(-1)  # (R, T, 1)
        p = torch.softmax(grid.masked_fill(~mask, -math.inf), dim=1)  # NaN for an empty history
        return torch.where(mask, p, 0.0).reshape(scores.shape)  # (N, C)

    def unpack(self, values: torch.Tensor) -> torch.Tensor:
        return self._grid(values).transpose(1, 2)  # (R, C, T)
