"""`train --shard-embeddings`: TorchRec-sharded tables on 2 gloo ranks match 1 unsharded process.

Needs the `scale` extra (`make install-scale`, which `make test` runs): these tests run in CI,
they do not skip.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dinctl.cli.main import app
from dinctl.errors import DinctlError
from dinctl.inference import open_run, score
from dinctl.metrics import log_loss, user_weighted_auc_score
from dinctl.models import build_model
from dinctl.training import distributed as D
from dinctl.training.checkpoint import load_checkpoint, read_run_config
from dinctl.training.config import TrainConfig, resolve_config
from dinctl.training.loop import train
from dinctl.training.sharded import check_sharded_config

# PReLU (no batch statistics) and SGD (updates add up): a sharded run is the unsharded run
# up to float summation order. A large lr, init and λ, so that the tables (and MBA's pull on
# them) move far beyond float noise: the item table moves by ~0.03 over the 2 epochs. At lr 2
# they moved further but the two runs' rounding gap grew chaotically in the second epoch
# (1e-7 to 7e-5 in the loss within 5 steps, 1e-3 in the valid log loss); at lr 1 it stays ~1e-7.
SETTINGS: dict[str, Any] = {
    "batch_size": 256,
    "emb_dim": 8,
    "optimizer": "sgd",
    "lr": 1.0,
    "emb_init_std": 0.3,
    "log_every": 1,
    "act": "prelu",
    # the layout these tolerances were measured on (the defaults before #20): the rounding gap
    # between the two runs grows faster under α 0 / Xavier
    "dice_alpha_init": 0.25,
    "linear_init": "torch",
    "reg": "mba",
    "reg_lambda": 0.5,
    "seed": 7,
}
runner = CliRunner()


def _flags(settings: dict[str, Any]) -> list[str]:
    out = []
    for key, value in settings.items():
        out += ["--" + key.replace("_", "-"), str(value)]
    return out


def torchrun(nproc: int, args: list[str]) -> dict[str, Any]:
    """`torchrun --nproc-per-node nproc -m dinctl train ... --json`; rank 0's JSON result."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(nproc),
        "-m",
        "dinctl",
        "train",
        "--device",
        "cpu",
        "--json",
        *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    # the head too: a rank's own message comes before torchrun's report of its failure
    assert proc.returncode == 0, proc.stderr[:2000] + "\n…\n" + proc.stderr[-3000:]
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def log_records(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def sharded_run(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A 2-epoch run on 2 ranks with sharded tables."""
    out = tmp_path_factory.mktemp("sharded") / "two"
    flags = ["--data", str(tiny_dataset), "--out", str(out), "--epochs", "2"]
    payload = torchrun(2, [*flags, "--shard-embeddings", *_flags(SETTINGS)])
    return {"dir": out, "payload": payload}


@pytest.mark.slow
def test_sharded_two_ranks_match_one_unsharded_process(
    sharded_run: dict[str, Any], tiny_dataset: Path, tmp_path: Path
) -> None:
    cfg = {"data": str(tiny_dataset), "out": str(tmp_path / "one"), "device": "cpu"}
    one = train(resolve_config({**cfg, "epochs": 2, **SETTINGS}))
    two_dir = sharded_run["dir"]
    records, ones = log_records(two_dir), log_records(tmp_path / "one")
    assert [(r["event"], r["step"]) for r in records] == [(r["event"], r["step"]) for r in ones]
    assert len([r for r in records if r["event"] == "step"]) >= 20  # several steps, 2 epochs
    for a, b in zip(records, ones, strict=True):
        key = "loss" if a["event"] == "step" else "train_loss"
        assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6)
    got_valid, want_valid = sharded_run["payload"]["best_valid"], one.best_valid
    assert got_valid["valid_logloss"] == pytest.approx(want_valid["valid_logloss"], abs=1e-5)
    for key in ("valid_user_weighted_auc", "valid_global_auc"):  # 400 rows: scores that float
        assert got_valid[key] == pytest.approx(want_valid[key], abs=5e-4)  # rounding may swap

    # the checkpoint holds the full tables under the unsharded keys, equal to float rounding
    got = load_checkpoint(two_dir / "checkpoint.pt")["model"]
    want = load_checkpoint(tmp_path / "one" / "checkpoint.pt")["model"]
    assert sorted(got) == sorted(want)
    for name, value in want.items():
        assert got[name].shape == value.shape, name
        gap = float((got[name].float() - value.float()).abs().max())
        # float rounding, grown over 2 epochs (per-step losses agree to ~1e-7); the tables moved
        # by ~0.03, 60x this bound, so this still tells a sharded run from another
        assert gap < 5e-4, f"{name} differs by {gap}"
    torch.manual_seed(SETTINGS["seed"])  # the model both runs started from
    start = build_model(read_run_config(two_dir).model).state_dict()
    for name in ("emb.item.weight", "emb.cate.weight"):
        assert float((got[name] - start[name]).abs().max()) > 0.02  # the tables did move


@pytest.mark.slow
def test_sharded_checkpoint_resumes_on_another_world_size(
    sharded_run: dict[str, Any], tiny_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "resumed"
    flags = ["--data", str(tiny_dataset), "--out", str(out)]
    torchrun(2, [*flags, "--epochs", "1", "--shard-embeddings", *_flags(SETTINGS)])
    assert load_checkpoint(out / "checkpoint.pt")["world_size"] == 2
    payload = torchrun(1, ["--resume", "--out", str(out), "--epochs", "2"])
    assert payload["epochs_run"] == 1
    # epoch 2 on one rank continues exactly as the uninterrupted 2-rank run did
    straight = log_records(sharded_run["dir"])
    resumed = log_records(out)
    assert [(r["event"], r["step"]) for r in resumed] == [(r["event"], r["step"]) for r in straight]
    for a, b in zip(resumed, straight, strict=True):
        key = "loss" if a["event"] == "step" else "train_loss"
        assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6)
    got = load_checkpoint(out / "checkpoint.pt")["model"]
    want = load_checkpoint(sharded_run["dir"] / "checkpoint.pt")["model"]
    for name, value in want.items():
        torch.testing.assert_close(got[name], value, rtol=1e-4, atol=5e-4, msg=name)


@pytest.mark.slow
def test_sharded_run_exports_and_scores_like_its_training_forward(
    sharded_run: dict[str, Any], tmp_path: Path
) -> None:
    run_dir = sharded_run["dir"]
    res = runner.invoke(
        app, ["export", str(run_dir), "--format", "torch", "--out", str(tmp_path / "b"), "--json"]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["parity_max_abs_diff"] < 1e-4
    # the full tables score the valid rows as the sharded forward did during training
    opened = open_run(run_dir)
    prob = np.asarray(score(opened, "valid"), dtype=np.float64)
    valid = opened.dataset.split("valid")
    best = sharded_run["payload"]["best_valid"]
    assert log_loss(valid.label, prob) == pytest.approx(best["valid_logloss"], abs=1e-6)
    uw = user_weighted_auc_score(valid.label, prob, valid.user)
    assert uw == pytest.approx(best["valid_user_weighted_auc"], abs=1e-9)


def test_shard_embeddings_outside_torchrun_is_one_line(tiny_dataset: Path, tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        ["train", "--data", str(tiny_dataset), "--out", str(tmp_path / "r"), "--shard-embeddings"],
    )
    assert res.exit_code == 1
    assert res.stderr.startswith(
        "error: --shard-embeddings shards the tables over torchrun's processes, and this is no "
        "torchrun job"
    )
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("changes", "device", "message"),
    [
        (
            {"optimizer": "adam"},
            "cpu",
            "--optimizer adam has no fused sharded kernel on cpu; expected one of sgd, adagrad",
        ),
        (
            {"reg": "l2"},
            "cpu",
            "--reg l2 is not available with --shard-embeddings; expected one of none, mba, dropout",
        ),
        ({"grad_clip": 5.0}, "cpu", "--grad-clip is not available with --shard-embeddings"),
    ],
)
def test_refused_sharded_settings_name_what_is_allowed(
    changes: dict[str, Any], device: str, message: str
) -> None:
    cfg = TrainConfig(**{**SETTINGS, **changes})
    with pytest.raises(DinctlError) as err:
        check_sharded_config(cfg, torch.device(device), D.DistInfo(0, 2, 0, True))
    assert err.value.message == message
    check_sharded_config(  # adam is what CUDA's fused kernels add
        TrainConfig(**{**SETTINGS, "optimizer": "adam"}),
        torch.device("cuda"),
        D.DistInfo(0, 2, 0, True),
    )


def test_block_init_does_not_depend_on_how_the_rows_are_sharded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dinctl.training import initial

    monkeypatch.setattr(initial, "INIT_BLOCK_ROWS", 4)
    whole = torch.full((11, 3), float("nan"))
    initial.block_init([(0, whole)], "emb__item", 0.5, seed=3)
    parts = [torch.full((6, 3), float("nan")), torch.full((5, 3), float("nan"))]
    initial.block_init([(0, parts[0]), (6, parts[1])], "emb__item", 0.5, seed=3)
    assert torch.equal(torch.cat(parts), whole)
    assert torch.equal(whole[0], torch.zeros(3))  # padding row
    assert 0.2 < float(whole[1:].std()) < 0.8  # N(0, 0.5²) rows, every one drawn
    other = torch.empty(11, 3)
    initial.block_init([(0, other)], "emb__cate", 0.5, seed=3)  # another table: other rows
    assert not torch.equal(other[1:], whole[1:])


# ------------------------------------------------ in one process: a gloo group of world size 1


@pytest.fixture
def one_rank(tmp_path: Path) -> Any:
    import torch.distributed as dist

    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        yield D.DistInfo(0, 1, 0, True)
    finally:
        dist.destroy_process_group()


def schema_config() -> Any:
    from dinctl.models import ModelConfig

    return ModelConfig(
        model="din",
        n_users=10,
        n_items=40,
        n_cates=6,
        emb_dim=4,
        behaviour_fields=(("brand", 7),),
        user_fields=(("age", 4),),
        context_fields=(("hour", 5),),
    )


def schema_batch(seed: int) -> Any:
    from dinctl.data.batching import Batch

    g = torch.Generator().manual_seed(seed)
    b, t = 12, 5
    mask = torch.arange(t) < torch.randint(0, t + 1, (b, 1), generator=g)  # (B, T), some empty
    ids = lambda hi, *shape: torch.randint(1, hi, shape, generator=g)  # noqa: E731
    return Batch(
        user=ids(11, b),
        item=ids(41, b),
        cate=ids(7, b),
        hist_item=ids(41, b, t) * mask,
        hist_cate=ids(7, b, t) * mask,
        hist_mask=mask,
        label=torch.randint(0, 2, (b,), generator=g).float(),
        hist_fields=(ids(7, b, t) * mask).unsqueeze(2),
        cand_fields=ids(7, b, 1),
        user_fields=ids(4, b, 1),
        context=ids(5, b, 1),
    )


def sharded_parts_for(seed: int, info: D.DistInfo) -> Any:
    from dinctl.training.sharded import sharded_parts

    cfg = TrainConfig(optimizer="adagrad", lr=0.3, emb_init_std=0.5, seed=seed)
    freqs = {name: torch.ones(64, dtype=torch.long) for name in ("item", "cate", "brand", "age")}
    return sharded_parts(schema_config(), cfg, freqs, torch.Generator(), torch.device("cpu"), info)


def adagrad_step(parts: Any, batch: Any) -> None:
    sharded, optimizers, _ = parts
    for opt in optimizers:
        opt.zero_grad()
    torch.nn.functional.binary_cross_entropy_with_logits(
        sharded.dmp(batch).logits, batch.label
    ).backward()
    for opt in optimizers:
        opt.step()


def whole(state: dict[str, Any]) -> dict[str, Any]:
    """A state dict with its `StreamedTensor`s read whole (as loading the checkpoint gives)."""
    from dinctl.training.checkpoint import StreamedTensor

    return {
        k: torch.cat(list(v.blocks())).reshape(v.shape) if isinstance(v, StreamedTensor) else v
        for k, v in state.items()
    }


def test_every_schema_table_is_sharded_and_scores_like_the_unsharded_model(one_rank: Any) -> None:
    from dinctl.training.sharded import full_state_dict

    sharded, _, _ = parts = sharded_parts_for(5, one_rank)
    plain = build_model(schema_config())
    names = {p for p, m in plain.named_modules() if type(m) is torch.nn.Embedding}
    assert set(sharded.tables) == names  # items, categories, brand, age, hour
    assert len(names) == 5
    for step in range(3):
        adagrad_step(parts, schema_batch(step))
    plain.load_state_dict(whole(full_state_dict(sharded, one_rank)))
    plain.eval(), sharded.module.eval()
    batch = schema_batch(99)
    with torch.no_grad():
        torch.testing.assert_close(sharded.module(batch).logits, plain(batch).logits)
        # padding is no learned row: it reads as zero and row 0 of every table stays zero
        for name in names:
            assert not plain.get_submodule(name).weight[0].any()


def test_beyond_the_exact_init_budget_the_unsharded_run_starts_where_the_sharded_one_does(
    one_rank: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tables too large to build whole are block-drawn on every path, so an unsharded run and
    a sharded one (any world size) start from the same model and train alike."""
    from dinctl.training import initial
    from dinctl.training.sharded import full_state_dict

    for small_budget in (False, True):
        if small_budget:  # the schema model's tables (~1.5 KB) are now "too large"
            monkeypatch.setattr(initial, "EXACT_INIT_BYTES", 0)
        sharded, _, _ = sharded_parts_for(5, one_rank)
        start = whole(full_state_dict(sharded, one_rank))
        plain = initial.seeded_model(schema_config(), 5, emb_init_std=0.5)
        want = plain.state_dict()
        assert sorted(start) == sorted(want)
        for name, value in want.items():
            torch.testing.assert_close(start[name], value, rtol=0, atol=0, msg=name)
    torch.manual_seed(5)  # the block-drawn start is not the model's own draw
    own = build_model(schema_config()).state_dict()
    assert not torch.equal(own["emb.item.weight"], want["emb.item.weight"])
    assert torch.equal(want["emb.item.weight"][0], torch.zeros(4))  # padding row


def test_fused_row_wise_adagrad_state_survives_a_checkpoint(one_rank: Any) -> None:
    from dinctl.training.sharded import full_state_dict, load_full_state_dict

    first = sharded_parts_for(5, one_rank)
    for step in range(3):
        adagrad_step(first, schema_batch(step))
    weights = whole(full_state_dict(first[0], one_rank))  # as a checkpoint file holds
    dense_state = copy.deepcopy(first[1][0].state_dict())
    opt_state = whole(first[1][1].state_dict())
    assert opt_state and all(v.abs().sum() > 0 for v in opt_state.values())  # accumulators
    restored, fresh = sharded_parts_for(6, one_rank), sharded_parts_for(6, one_rank)
    for parts in (restored, fresh):
        load_full_state_dict(parts[0], weights)
    restored[1][0].load_state_dict(dense_state)
    restored[1][1].load_state_dict(opt_state)
    fresh[1][0].load_state_dict(copy.deepcopy(dense_state))
    for parts in (first, restored, fresh):
        adagrad_step(parts, schema_batch(3))
    after = whole(full_state_dict(first[0], one_rank))
    got = whole(full_state_dict(restored[0], one_rank))
    lost = whole(full_state_dict(fresh[0], one_rank))
    assert after is not None and got is not None and lost is not None
    for name in after:
        torch.testing.assert_close(got[name], after[name], rtol=0, atol=1e-7, msg=name)
    # without its accumulators the same step moves the rows differently: the check can fail
    assert not torch.allclose(lost["emb.item.weight"], after["emb.item.weight"], atol=1e-4)


def _held_bytes(*tensors: Any) -> int:
    return sum(int(t.nbytes) for t in tensors if t is not None)


def row_bytes(data: Any) -> int:
    """Bytes of a `Data`'s per-row parts: the train / valid rows and the behaviour CSR."""
    held = 0
    for rows in (data.train_rows, data.valid_rows):
        held += _held_bytes(rows.user, rows.hist_len, rows.item, rows.cate, rows.label)
    g = data.gatherer
    return held + _held_bytes(g.seq_items, g.seq_cates, g.seq_fields)


def _kib(field: str) -> int:
    """A /proc/self/status figure in KiB (VmRSS: resident now, VmHWM: its peak)."""
    line = next(ln for ln in Path("/proc/self/status").read_text().splitlines() if field in ln)
    return int(line.split()[1])


def _rank_memory(rank: int, world: int, tmp: str, out: Any) -> None:
    """One of 2 spawned ranks: this rank's share of a dataset whose item table dominates, its
    shard of the tables, and a checkpoint of the full tables; reports what it held."""
    import torch.distributed as dist

    from dinctl.models import ModelConfig
    from dinctl.training.checkpoint import save_checkpoint
    from dinctl.training.loop import run_config, setup_data
    from dinctl.training.sharded import full_state_dict, sharded_parts, table_shards

    torch.set_num_threads(1)
    store = dist.FileStore(str(Path(tmp) / "store"), world)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world)
    info = D.DistInfo(rank, world, 0, True)
    cfg = TrainConfig(data=str(Path(tmp) / "big"), optimizer="sgd", lr=0.1, emb_dim=BIG_DIM)
    device = torch.device("cpu")
    small = ModelConfig(model="din", n_users=10, n_items=10, n_cates=10, emb_dim=BIG_DIM)
    freqs = {"item": torch.ones(11), "cate": torch.ones(11)}
    sharded_parts(small, cfg, freqs, torch.Generator(), device, info)  # loads TorchRec's code
    import polars  # noqa: F401 - code, not data: loaded before the peak restarts
    import pyarrow.parquet  # noqa: F401

    Path("/proc/self/clear_refs").write_text("5")  # the peak restarts from here (VmHWM)
    before = _kib("VmRSS:")
    data = setup_data(cfg, device, info=info)
    config = run_config(cfg, data.ds).model
    sharded, _, _ = sharded_parts(config, cfg, data.freqs, torch.Generator(), device, info)
    weights = full_state_dict(sharded, info)
    save_checkpoint(Path(tmp) / "best.pt", {"model": weights}, write=info.is_main)
    peak = _kib("VmHWM:")  # not ru_maxrss: a spawned process starts at its parent's peak
    rows = sum(r.shape[0] for _, r in table_shards(sharded.tables["emb.item"]))
    out.put((rank, rows, len(data.train_rows), row_bytes(data), (peak - before) * 1024))
    dist.barrier()
    dist.destroy_process_group()


BIG_DIM = 32  # with 4M items: a 512 MB item table, beyond the whole-model init


def test_each_rank_holds_about_half_of_the_tables_and_the_data(tmp_path: Path) -> None:
    import torch.multiprocessing as mp
    from conftest import make_tiny_dataset

    from dinctl.data.batching import SplitTensors, WindowGatherer
    from dinctl.data.store import load_dataset
    from dinctl.training.state import Data

    make_tiny_dataset(tmp_path / "big", n_users=2000, n_cates=10, items_per_cate=400_000)
    ds = load_dataset(tmp_path / "big")
    train, valid = SplitTensors(ds.split("train")), SplitTensors(ds.split("valid"))
    whole = Data(ds, train, valid, WindowGatherer(ds), {})
    n_items = ds.n_items + 1
    whole_bytes = n_items * BIG_DIM * 4 + row_bytes(whole) + ds.item_freq.nbytes
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_rank_memory, args=(r, 2, str(tmp_path), queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = sorted(queue.get(timeout=300) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert sum(rows for _, rows, *_ in results) == n_items
    assert sum(n for _, _, n, *_ in results) == len(train)
    for _, rows, n_rows, held, grown in results:
        assert abs(rows - n_items / 2) <= 1  # row-wise: half the table's rows each
        assert abs(n_rows - len(train) / 2) <= 1  # half the training rows each
        # its rows and the behaviours of its users: about half (the users split at one)
        assert held < 0.55 * row_bytes(whole), (held, row_bytes(whole))
        # no rank ever held a whole table or the whole data, not even to write the checkpoint
        # of the full tables: its peak grew by its half of them (0.47 of the whole here), the
        # n_j of every item, one init piece, one checkpoint block, TorchRec's bookkeeping
        # (measured: 0.61 and 0.64; gathering a table for the checkpoint would be >= 1.4)
        assert grown < 0.7 * whole_bytes, f"peak grew by {grown / 2**20:.0f} MiB"
    saved = load_checkpoint(tmp_path / "best.pt", mmap=True)["model"]
    assert saved["emb.item.weight"].shape == (n_items, BIG_DIM)  # the full table


def _rank_validation(rank: int, world: int, tmp: str, data: str, out: Any) -> None:
    """One of the spawned ranks: score its share of `valid` with a seeded model, gather."""
    import torch.distributed as dist

    from dinctl.training.loop import run_config, setup_data
    from dinctl.training.predict import predict_proba
    from dinctl.training.selection import truth, valid_metrics

    torch.set_num_threads(1)
    store = dist.FileStore(str(Path(tmp) / "store"), world)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world)
    info = D.DistInfo(rank, world, 0, True)
    cfg = TrainConfig(data=data, emb_dim=8, act="prelu")
    shares = setup_data(cfg, torch.device("cpu"), info=info)
    torch.manual_seed(3)
    model = build_model(run_config(cfg, shares.ds).model)
    assert shares.valid_rows is not None
    prob = predict_proba(model, shares.valid_rows, shares.gatherer, 64, info)
    out.put((rank, len(shares.valid_rows), valid_metrics(prob, truth(shares.valid_rows, info))))
    dist.barrier()
    dist.destroy_process_group()


def test_validation_on_rank_shares_gives_the_single_process_metrics(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    import torch.multiprocessing as mp

    from dinctl.training.loop import run_config, setup_data
    from dinctl.training.predict import predict_proba
    from dinctl.training.selection import valid_metrics

    cfg = TrainConfig(data=str(tiny_dataset), emb_dim=8, act="prelu")
    whole = setup_data(cfg, torch.device("cpu"))
    torch.manual_seed(3)
    model = build_model(run_config(cfg, whole.ds).model)
    assert whole.valid_rows is not None
    want = valid_metrics(
        predict_proba(model, whole.valid_rows, whole.gatherer, 64), whole.valid_rows
    )
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    args = (str(tmp_path), str(tiny_dataset), queue)
    procs = [ctx.Process(target=_rank_validation, args=(r, 2, *args)) for r in range(2)]
    for p in procs:
        p.start()
    results = sorted(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert sum(n for _, n, _ in results) == len(whole.valid_rows)
    assert all(0 < n < len(whole.valid_rows) for _, n, _ in results)  # each scored a share
    for _, _, got in results:  # every rank: the metrics of the whole split, not of its share
        assert got.keys() == want.keys()
        for key, value in want.items():
            assert got[key] == pytest.approx(value, abs=1e-9), key
