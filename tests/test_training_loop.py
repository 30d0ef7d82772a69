"""The training loop on the tiny planted-signal dataset: learning, determinism, resume, errors."""

from __future__ import annotations

import json
import math
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest
import torch

from dinctl.data.store import load_dataset
from dinctl.errors import DinctlError
from dinctl.inference import open_run
from dinctl.reporting import Reporter
from dinctl.training import loop
from dinctl.training.checkpoint import load_checkpoint, save_checkpoint
from dinctl.training.config import TrainConfig, resolve_config
from dinctl.training.loop import epoch_order, n_global_batches, resume_config, train

BATCH = 256


def quick(data: Path, out: Path, **over: Any) -> TrainConfig:
    settings: dict[str, Any] = {
        "data": str(data),
        "out": str(out),
        "batch_size": BATCH,
        "epochs": 2,
        "emb_dim": 8,
        "lr": 0.01,
        "log_every": 5,
        **over,
    }
    return resolve_config(settings, None)


def log_records(run_dir: Path) -> list[dict[str, Any]]:
    """log.jsonl without the wall-clock fields."""
    out = []
    for line in (run_dir / "log.jsonl").read_text().splitlines():
        rec = json.loads(line)
        rec.pop("samples_per_s", None)
        rec.pop("seconds", None)
        rec.pop("validation_seconds", None)
        out.append(rec)
    return out


def batches_per_epoch(data: Path) -> int:
    return math.ceil(len(load_dataset(data).split("train")) / BATCH)


@pytest.mark.parametrize(
    ("model", "floor"),
    [("din", 0.7), ("base", 0.68), ("lr", 0.6), ("wide-deep", 0.7), ("pnn", 0.7), ("deepfm", 0.68)],
)
def test_each_model_learns_the_planted_signal(
    tiny_dataset: Path, tmp_path: Path, model: str, floor: float
) -> None:
    result = train(quick(tiny_dataset, tmp_path / "run", model=model))
    assert result.epochs_run == 2
    assert result.best_valid["valid_global_auc"] > floor
    assert 0.0 < result.best_valid["valid_logloss"] < 0.7
    assert {p.name for p in result.run_dir.iterdir()} >= {
        "config.json",
        "checkpoint.pt",
        "best.pt",
        "log.jsonl",
    }
    records = log_records(result.run_dir)
    epochs = [r for r in records if r["event"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert {
        "train_loss",
        "valid_user_weighted_auc",
        "valid_global_auc",
        "valid_logloss",
        "best_epoch",
    } <= set(epochs[0])
    steps = [r for r in records if r["event"] == "step"]
    ends = {r["step"] for r in epochs}  # the rest of an epoch is flushed at its end
    assert steps and all(r["step"] % 5 == 0 or r["step"] in ends for r in steps)


def test_two_runs_with_one_seed_log_identical_losses(tiny_dataset: Path, tmp_path: Path) -> None:
    over = {"act": "dice", "reg": "mba", "epochs": 1, "log_every": 2}
    train(quick(tiny_dataset, tmp_path / "a", **over))
    train(quick(tiny_dataset, tmp_path / "b", **over))
    a, b = log_records(tmp_path / "a"), log_records(tmp_path / "b")
    assert len(a) > 5
    assert a == b
    c = train(quick(tiny_dataset, tmp_path / "c", seed=99, **over))
    assert log_records(c.run_dir) != a


def _interrupt_at(k: int):  # noqa: ANN202
    def hook(step: int) -> None:
        if step == k:
            signal.raise_signal(signal.SIGINT)  # what Ctrl-C does

    return hook


def test_resumed_run_equals_an_uninterrupted_one(tiny_dataset: Path, tmp_path: Path) -> None:
    over = {"act": "dice", "reg": "dropout", "log_every": 3}
    full = train(quick(tiny_dataset, tmp_path / "full", **over))

    cfg = quick(tiny_dataset, tmp_path / "cut", **over)
    k = batches_per_epoch(tiny_dataset) + 4  # mid-way through epoch 2
    with pytest.raises(KeyboardInterrupt):
        train(cfg, on_step=_interrupt_at(k))
    state = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    assert (state["step"], state["epoch"], state["batch"]) == (k, 1, 4)

    resumed = train(resume_config(tmp_path / "cut", {}), resume=True)
    assert resumed.epochs_run == 1
    assert resumed.best_epoch == full.best_epoch
    assert resumed.best_valid == full.best_valid
    assert log_records(tmp_path / "cut") == log_records(tmp_path / "full")
    a = load_checkpoint(tmp_path / "full" / "checkpoint.pt")["model"]
    b = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["model"]
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_interrupt_in_the_first_epoch_then_resume(tiny_dataset: Path, tmp_path: Path) -> None:
    over = {"model": "base", "epochs": 1, "log_every": 2}
    train(quick(tiny_dataset, tmp_path / "full", **over))
    with pytest.raises(KeyboardInterrupt):
        train(quick(tiny_dataset, tmp_path / "cut", **over), on_step=_interrupt_at(3))
    train(resume_config(tmp_path / "cut", {}), resume=True)
    assert log_records(tmp_path / "cut") == log_records(tmp_path / "full")


def test_resume_can_extend_epochs_but_not_change_the_model(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    train(quick(tiny_dataset, run, model="base", epochs=1))
    more = train(resume_config(run, {"epochs": 2}), resume=True)
    assert more.epochs_run == 1
    assert [r["epoch"] for r in log_records(run) if r["event"] == "epoch"] == [1, 2]
    assert json.loads((run / "config.json").read_text())["train"]["epochs"] == 2  # not stale
    with pytest.raises(DinctlError) as err:
        resume_config(run, {"lr": 0.5, "epochs": 3})
    assert err.value.message == f"--lr 0.5 differs from the run's 0.01 in {run / 'config.json'}"


def test_resume_in_another_world_size_is_refused(tiny_dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(quick(tiny_dataset, run, model="lr", epochs=1))
    state = load_checkpoint(run / "checkpoint.pt")
    state["world_size"] = 2
    save_checkpoint(run / "checkpoint.pt", state)
    with pytest.raises(DinctlError) as err:
        train(resume_config(run, {"epochs": 2}), resume=True)
    assert (
        err.value.message == f"{run / 'checkpoint.pt'} was written by 2 process(es), this run has 1"
    )


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = batches_per_epoch(tiny_dataset)
    real = loop.bce_loss
    calls = {"n": 0}

    def poisoned(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        loss = real(logits, label)
        return loss * float("nan") if calls["n"] >= n + 3 else loss

    monkeypatch.setattr(loop, "bce_loss", poisoned)
    run = tmp_path / "run"
    with pytest.raises(DinctlError) as err:
        train(quick(tiny_dataset, run, model="base", log_every=100))
    assert err.value.message == f"the training loss became nan at step {n + 3} (epoch 2)"
    assert err.value.hint == (
        f"lower --lr (now 0.01) and train into another --out; {run / 'checkpoint.pt'} keeps "
        "this run's last good state (epoch 1)"
    )
    state = load_checkpoint(run / "checkpoint.pt")
    assert (state["epoch"], state["step"]) == (1, n)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_missing_valid_split_warns_and_keeps_the_last_epoch(
    tiny_dataset_no_valid: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    warnings: list[str] = []
    cfg = quick(tiny_dataset_no_valid, tmp_path / "run", model="base")
    result = train(cfg, reporter=Reporter(warn=warnings.append))
    assert warnings == [
        f"{tiny_dataset_no_valid} has no valid split; the last epoch is kept as best.pt"
    ]
    assert capsys.readouterr() == ("", "")  # the library itself never writes
    assert result.best_epoch == 2 and result.best_valid == {}


@pytest.mark.parametrize("reg", ["l2", "difacto", "dropout", "filter"])
def test_every_regulariser_trains_and_reloads(tiny_dataset: Path, tmp_path: Path, reg: str) -> None:
    over: dict[str, Any] = {"reg": reg, "epochs": 1, "model": "base"}
    if reg == "filter":
        over["filter_top_k"] = 150
    result = train(quick(tiny_dataset, tmp_path / "run", **over))
    assert result.best_valid["valid_user_weighted_auc"] > 0.55
    loaded = open_run(result.run_dir)
    if reg == "filter":
        assert loaded.model_config["n_items"] == 150  # 150 kept, the rest are padding
        item_map = loaded.model.emb.item_map.ids  # a buffer of the item table, not a wrapper
        assert int(item_map.max()) == 150
        assert int((item_map[1:] == 0).sum()) == 50  # thrown away


def test_open_run_gives_the_best_weights_in_eval_mode(tiny_dataset: Path, tmp_path: Path) -> None:
    cfg = quick(tiny_dataset, tmp_path / "run", act="dice")
    result = train(cfg)
    loaded = open_run(result.run_dir)
    assert loaded.config == cfg
    assert loaded.model.training is False
    assert loaded.dataset.checksum == load_dataset(tiny_dataset).checksum
    assert loaded.dataset.path == tiny_dataset.resolve()
    assert loaded.best_epoch == result.best_epoch
    assert load_checkpoint(result.run_dir / "best.pt")["best_valid"] == result.best_valid
    best = torch.load(result.run_dir / "best.pt", weights_only=True)["model"]
    for name, value in loaded.model.state_dict().items():
        assert torch.equal(value, best[name])


def test_open_run_errors(tmp_path: Path, tiny_dataset: Path) -> None:
    with pytest.raises(DinctlError) as err:
        open_run(tmp_path / "nope")
    assert err.value.message == f"run folder {tmp_path / 'nope'} does not exist"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DinctlError) as err:
        open_run(tmp_path / "empty")
    empty = tmp_path / "empty"
    want = f"{empty} is not a run folder: {empty / 'config.json'} does not exist"
    assert err.value.message == want
    run = tmp_path / "run"
    train(quick(tiny_dataset, run, model="lr", epochs=1))
    (run / "best.pt").unlink()
    (run / "checkpoint.pt").unlink()
    with pytest.raises(DinctlError) as err:
        open_run(run)
    assert err.value.message == f"{run} has no best.pt or checkpoint.pt"


def test_dataset_and_run_folder_errors(tiny_dataset: Path, tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(tiny_dataset, old)
    meta = json.loads((old / "meta.json").read_text())
    meta["format_version"] = 0
    (old / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DinctlError) as err:
        train(quick(old, tmp_path / "r1"))
    assert err.value.message == f"{old / 'meta.json'} has format version 0, expected 1 or 2"

    no_train = tmp_path / "no_train"
    shutil.copytree(tiny_dataset, no_train)
    (no_train / "train.parquet").unlink()
    with pytest.raises(DinctlError) as err:
        train(quick(no_train, tmp_path / "r2"))
    assert (
        err.value.message
        == f"split 'train' is missing: {no_train / 'train.parquet'} does not exist"
    )

    run = tmp_path / "r3"
    train(quick(tiny_dataset, run, model="lr", epochs=1))
    with pytest.raises(DinctlError) as err:
        train(quick(tiny_dataset, run, model="lr", epochs=1))
    assert err.value.message == f"run folder {run} already exists"

    with pytest.raises(DinctlError) as err:
        train(quick(tiny_dataset, tmp_path / "r4"), resume=True)
    assert err.value.message == f"cannot resume: {tmp_path / 'r4' / 'checkpoint.pt'} does not exist"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda(tiny_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(DinctlError) as err:
        train(quick(tiny_dataset, tmp_path / "r", device="cuda"))
    assert err.value.message == "--device cuda was asked for but CUDA is not available"


def test_paper_schedule_decays_once(tiny_dataset: Path, tmp_path: Path) -> None:
    cfg = quick(
        tiny_dataset,
        tmp_path / "run",
        recipe="paper",
        model="lr",
        epochs=1,
        batch_size=BATCH,
        lr=0.5,
        lr_decay_step=10,
    )
    train(cfg)
    lrs = {r["step"]: r["lr"] for r in log_records(tmp_path / "run") if r["event"] == "step"}
    assert lrs[5] == 0.5 and lrs[10] == 0.5 and lrs[15] == pytest.approx(0.05)


def test_epoch_order_is_a_seeded_permutation_and_buckets_sort_lengths() -> None:
    cfg = resolve_config({"batch_size": 4, "seed": 3, "out": "x"}, None)
    hist_len = torch.randint(0, 50, (103,))
    a = epoch_order(103, 0, cfg, hist_len)
    assert torch.equal(a.sort().values, torch.arange(103))
    assert torch.equal(a, epoch_order(103, 0, cfg, hist_len))
    assert not torch.equal(a, epoch_order(103, 1, cfg, hist_len))
    bucketed = epoch_order(
        103, 0, TrainConfig(**{**cfg.to_dict(), "length_buckets": True}), hist_len
    )
    assert torch.equal(bucketed.sort().values, torch.arange(103))
    spread = hist_len[bucketed[:100]].view(25, 4)
    assert (
        spread.max(1).values - spread.min(1).values
    ).float().mean() < 10  # similar lengths per batch


def test_global_batches_drop_a_tail_too_small_for_every_rank() -> None:
    assert n_global_batches(10, 4, 1) == 3
    assert n_global_batches(9, 4, 2) == 2  # tail of 1 row cannot feed 2 ranks
    assert n_global_batches(10, 4, 2) == 3


def test_amp_without_bf16_warns_and_trains_in_float32(
    tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    from dinctl.training import device

    monkeypatch.setattr(device, "cpu_bf16_instructions", lambda: None)
    plain = train(quick(tiny_dataset, tmp_path / "a", model="lr", epochs=1))
    warnings: list[str] = []
    cfg = quick(tiny_dataset, tmp_path / "b", model="lr", epochs=1, amp=True)
    amp = train(cfg, reporter=Reporter(warn=warnings.append))
    assert warnings == [
        "--amp has no effect: this CPU has no bf16 instructions (avx512_bf16 or AMX); "
        "training in float32"
    ]
    assert amp.best_valid == plain.best_valid


def test_amp_on_a_bf16_cpu_trains_under_autocast_close_to_float32(
    tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    from dinctl.training import device

    # autocast to bf16 runs on any CPU (emulated without the instructions): pretend they exist
    monkeypatch.setattr(device, "cpu_bf16_instructions", lambda: "avx512_bf16")
    seen: list[torch.dtype] = []
    real_bce = loop.bce_loss
    monkeypatch.setattr(loop, "bce_loss", lambda lg, y: seen.append(lg.dtype) or real_bce(lg, y))
    # The tolerance below holds for the Dice tower, α 0.25, torch linears; with the default
    # ReLU tower, α 0 and Xavier linears at lr 0.01 the two runs drift apart by 0.38 at the last
    # (small) batch of the 2nd epoch (0.023 here): trajectories, not autocast, differ. It was
    # measured without a regulariser (the fast recipe's MBA λ 1 adds its own drift).
    layout = {"mlp_act": "same", "dice_alpha_init": 0.25, "linear_init": "torch", "reg": "none"}
    over = {"act": "dice", "epochs": 2, "log_every": 1, **layout}
    plain = train(quick(tiny_dataset, tmp_path / "a", **over))
    assert set(seen) == {torch.float32}
    lines = (plain.run_dir / "log.jsonl").read_text().splitlines()
    epochs = [r for r in map(json.loads, lines) if r["event"] == "epoch"]
    assert len(epochs) == 2 and all(0 < r["validation_seconds"] <= r["seconds"] for r in epochs)
    assert "validation_seconds" not in plain.best_valid  # only metrics choose the best epoch
    seen.clear()
    warnings: list[str] = []
    amp = train(
        quick(tiny_dataset, tmp_path / "b", amp=True, **over),
        reporter=Reporter(warn=warnings.append),
    )
    assert warnings == []
    assert set(seen) == {torch.bfloat16}  # the model's logits came out of autocast
    steps = [
        [r["loss"] for r in log_records(run.run_dir) if r["event"] == "step"]
        for run in (plain, amp)
    ]
    assert steps[0] != steps[1]
    assert max(abs(a - b) for a, b in zip(*steps, strict=True)) < 0.03  # bf16 tolerance
    for key in ("valid_user_weighted_auc", "valid_global_auc"):
        assert amp.best_valid[key] > plain.best_valid[key] - 0.02  # no worse beyond noise
    from dinctl.data.batching import SplitTensors, WindowGatherer
    from dinctl.training.predict import predict_proba

    ds = load_dataset(tiny_dataset)
    model = open_run(amp.run_dir).model
    rows, gatherer = SplitTensors(ds.split("valid")), WindowGatherer(ds, 100)
    exact = predict_proba(model, rows, gatherer, 256)  # (n,) float32 weights, float32 compute
    fast = predict_proba(model, rows, gatherer, 256, amp=True)  # same weights, bf16 matmuls
    assert not torch.equal(exact, fast)
    assert float((exact - fast).abs().max()) < 0.02  # scores within the bf16 tolerance


def test_sparse_adam_updates_only_the_rows_in_the_batch() -> None:
    from dinctl.data.batching import Batch
    from dinctl.models import ModelConfig, build_model
    from dinctl.training.distributed import DistInfo
    from dinctl.training.loop import bce_loss
    from dinctl.training.optim import make_optimizers, use_sparse_grads
    from dinctl.training.regularizers import make_regularizer

    def sparse(**over: Any) -> bool:
        cfg = resolve_config({"out": "x", **over}, None)
        return use_sparse_grads(cfg, DistInfo(), make_regularizer(cfg, {}, torch.Generator()))

    def batch(item: int, hist: int) -> Batch:
        t = torch.tensor
        return Batch(
            user=t([1, 1]),
            item=t([item, item]),
            cate=t([1, 1]),
            hist_item=t([[hist], [hist]]),
            hist_cate=t([[1], [1]]),
            hist_mask=t([[True], [True]]),
            label=t([1.0, 0.0]),
        )

    def item_rows_after(sparse: bool) -> torch.Tensor:
        torch.manual_seed(0)
        model = build_model(ModelConfig(model="din", n_users=1, n_items=6, n_cates=1, emb_dim=4))
        cfg = resolve_config({"out": "x"}, None)  # the fast recipe: Adam
        opts = make_optimizers(cfg, model, sparse)
        for b in (batch(1, 2), batch(3, 4)):  # item rows 1, 2 in step 1 only
            for opt in opts:
                opt.zero_grad(set_to_none=True)
            bce_loss(model(b).logits, b.label).backward()
            for opt in opts:
                opt.step()
            if b.item[0] == 1:
                after_first = model.emb.item.weight.detach().clone()
        return after_first, model.emb.item.weight.detach()

    assert sparse() and sparse(reg="mba") and sparse(reg="difacto")
    assert not sparse(recipe="paper")  # global-norm clipping needs every gradient
    assert not sparse(reg="l2")  # a whole-table penalty has dense gradients
    first, last = item_rows_after(sparse=True)
    assert torch.equal(last[[1, 2, 5]], first[[1, 2, 5]])  # lazy: absent rows keep their values
    assert not torch.equal(last[[3, 4]], first[[3, 4]])
    first, last = item_rows_after(sparse=False)
    assert not torch.equal(last[[1, 2]], first[[1, 2]])  # dense Adam: momentum moves them


def test_lazy_adam_matches_torch_sparse_adam() -> None:
    from dinctl.training.optim import LazyAdam

    torch.manual_seed(0)
    w0 = torch.randn(50, 8)
    ref = torch.nn.Embedding(50, 8, sparse=True, padding_idx=0)
    ours = torch.nn.Embedding(50, 8, sparse=True, padding_idx=0)
    with torch.no_grad():
        ref.weight.copy_(w0)
        ours.weight.copy_(w0)
    opt_ref = torch.optim.SparseAdam([ref.weight], lr=0.01)
    opt_ours = LazyAdam([ours.weight], lr=0.01)
    for _ in range(20):
        ids = torch.randint(0, 50, (200,))  # repeated ids and the padding row
        target = torch.randn(200, 8)
        for table, opt in ((ref, opt_ref), (ours, opt_ours)):
            opt.zero_grad(set_to_none=True)
            ((table(ids) - target) ** 2).sum().backward()
            opt.step()
    assert not torch.equal(ours.weight, w0)
    torch.testing.assert_close(ours.weight, ref.weight, rtol=1e-5, atol=1e-6)
    a, b = opt_ref.state_dict()["state"][0], opt_ours.state_dict()["state"][0]
    assert a["step"] == b["step"] == 20
    torch.testing.assert_close(b["exp_avg"], a["exp_avg"], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(b["exp_avg_sq"], a["exp_avg_sq"], rtol=1e-5, atol=1e-9)
    assert torch.equal(ours.weight[0], w0[0])  # the padding row never moves
    opt_ref.load_state_dict(opt_ours.state_dict())  # checkpoints stay interchangeable


def test_sum_rows_agrees_with_coalesce() -> None:
    from dinctl.training.optim import sum_rows

    torch.manual_seed(1)
    ids = torch.tensor([7, 3, 7, 0, 9, 3, 7])  # repeats, unsorted, the first row
    values = torch.randn(7, 4)
    grad = torch.sparse_coo_tensor(ids.unsqueeze(0), values, (12, 4), check_invariants=True)
    rows, summed = sum_rows(grad)
    ref = grad.coalesce()
    assert torch.equal(rows, ref.indices()[0])
    torch.testing.assert_close(summed, ref.values())
    assert torch.equal(summed[rows.tolist().index(7)], values[0] + values[2] + values[6])
    rows, summed = sum_rows(ref)  # already coalesced: taken as is
    assert torch.equal(rows, ref.indices()[0]) and torch.equal(summed, ref.values())
    no_ids = torch.zeros(1, 0, dtype=torch.long)
    empty = torch.sparse_coo_tensor(no_ids, torch.zeros(0, 4), (12, 4), check_invariants=True)
    rows, summed = sum_rows(empty)
    assert rows.shape == (0,) and summed.shape == (0, 4)


def test_broken_run_files_are_one_line_errors(tiny_dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(quick(tiny_dataset, run, model="lr", epochs=1))
    (run / "best.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DinctlError) as err:
        open_run(run)
    assert err.value.message.startswith(f"{run / 'best.pt'} is not a readable checkpoint (")
    torch.save({"weights": 1}, run / "best.pt")
    with pytest.raises(DinctlError) as err:
        open_run(run)
    assert (
        err.value.message
        == f"{run / 'best.pt'} is not a dinctl checkpoint (no model weights in it)"
    )

    config = json.loads((run / "config.json").read_text())
    del config["dataset"]
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(DinctlError) as err:
        open_run(run)
    assert err.value.message == f"{run / 'config.json'} lacks the entry 'dataset'"
    (run / "config.json").write_text("{")
    with pytest.raises(DinctlError) as err:
        open_run(run)
    assert err.value.message.startswith(f"{run / 'config.json'} is not valid JSON (")


def test_resume_on_a_changed_dataset_is_refused(tiny_dataset: Path, tmp_path: Path) -> None:
    from conftest import make_tiny_dataset

    data = make_tiny_dataset(tmp_path / "data", seed=5)
    run = tmp_path / "run"
    train(quick(data, run, model="lr", epochs=1))
    shutil.rmtree(data)
    make_tiny_dataset(data, seed=6)
    with pytest.raises(DinctlError) as err:
        train(resume_config(run, {"epochs": 2}), resume=True)
    assert (
        err.value.message
        == f"the dataset {data} changed since {run} was started (checksum differs)"
    )


def test_lr_decay_step_must_be_a_count() -> None:
    with pytest.raises(DinctlError) as err:
        resolve_config({"lr_decay_step": -3}, None)
    assert err.value.message == "lr_decay_step must be an integer of at least 0, got -3 instead"


def test_global_batch_smaller_than_the_world_is_refused(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dinctl.training import distributed

    monkeypatch.setattr(
        distributed, "init_from_env", lambda device_type: distributed.DistInfo(world_size=4)
    )
    with pytest.raises(DinctlError) as err:
        train(quick(tiny_dataset, tmp_path / "run", batch_size=2))
    assert err.value.message == "--batch-size 2 is smaller than the 4 processes"
    assert not (tmp_path / "run").exists()


def test_resume_with_a_checkpoint_of_another_model_or_format_is_one_line(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    """Issue 13 item 12: a checkpoint.pt that is not this run's gives one line, no traceback."""
    runs = {}
    for name, over in (
        ("lr", {"model": "lr"}),
        ("base", {"model": "base"}),
        ("narrow", {"model": "base", "emb_dim": 4}),
    ):
        runs[name] = train(quick(tiny_dataset, tmp_path / name, epochs=1, **over)).run_dir
    target = runs["base"]
    own = (target / "checkpoint.pt").read_bytes()
    cases = [
        (
            runs["lr"] / "checkpoint.pt",
            f"{target / 'checkpoint.pt'} is a checkpoint of model 'lr', this run trains 'base'",
        ),
        (
            runs["narrow"] / "checkpoint.pt",
            f"{target / 'checkpoint.pt'} does not fit this "
            "run's base model (Error(s) in loading state_dict for BaseModel:",
        ),
        (
            target / "best.pt",
            f"{target / 'checkpoint.pt'} has checkpoint format None, expected 1 "
            "(it lacks format, optimizers",
        ),
    ]
    for source, message in cases:
        shutil.copyfile(source, tmp_path / "copy.pt")
        shutil.copyfile(tmp_path / "copy.pt", target / "checkpoint.pt")
        with pytest.raises(DinctlError) as err:
            train(resume_config(target, {"epochs": 2}), resume=True)
        assert err.value.message.startswith(message)
        assert "\n" not in err.value.message and err.value.hint
    (target / "checkpoint.pt").write_bytes(own)
    assert train(resume_config(target, {"epochs": 2}), resume=True).epochs_run == 1


def test_a_run_that_failed_before_its_first_checkpoint_starts_again(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13 item 15: a NaN in epoch 1 leaves no checkpoint; the hint names the true way out
    (the same command again), resume says so, and the same command does restart the run."""
    real = loop.bce_loss
    calls = {"n": 0}

    def poisoned(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        return real(logits, label) * (float("nan") if calls["n"] >= 3 else 1.0)

    monkeypatch.setattr(loop, "bce_loss", poisoned)
    run = tmp_path / "run"
    cfg = quick(tiny_dataset, run, model="base", log_every=1)
    with pytest.raises(DinctlError) as err:
        train(cfg)
    assert err.value.message == "the training loss became nan at step 3 (epoch 1)"
    assert err.value.hint == (
        "lower --lr (now 0.01) and run the command again with the same --out: "
        f"{run} holds no checkpoint yet, so it starts afresh"
    )
    assert not (run / "checkpoint.pt").exists()
    with pytest.raises(DinctlError) as err:
        train(resume_config(run, {}), resume=True)
    assert err.value.message == (
        f"cannot resume: {run} stopped before its first checkpoint (checkpoint.pt does not exist)"
    )
    assert err.value.hint is not None and "without --resume" in err.value.hint
    monkeypatch.setattr(loop, "bce_loss", real)
    result = train(cfg)  # the same command: starts afresh
    assert result.epochs_run == 2 and (run / "checkpoint.pt").exists()
    epochs = [r for r in log_records(run) if r["event"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2]  # no lines of the failed attempt


@pytest.mark.parametrize(
    ("split", "label", "only", "why"),
    [
        ("valid", 1, "positive", "its AUC is undefined, so no epoch can be chosen on it"),
        ("train", 0, "negative", "a classifier cannot learn from one class"),
    ],
)
def test_a_split_of_one_class_is_refused_before_training(
    tiny_dataset: Path, tmp_path: Path, split: str, label: int, only: str, why: str
) -> None:
    """Issue 13 item 15/16: a one-class split fails up front (it used to fail after epoch 1,
    leaving a folder that could be neither restarted nor resumed), and writes nothing."""
    import polars as pl

    from dinctl.data.store import write_dataset

    src = load_dataset(tiny_dataset)
    splits = {s: pl.read_parquet(tiny_dataset / f"{s}.parquet") for s in ("train", "valid", "test")}
    splits[split] = splits[split].with_columns(pl.lit(label).cast(pl.Int8).alias("label"))
    meta = {k: v for k, v in src.meta.items() if k not in ("checksum", "format")}
    data = write_dataset(
        tmp_path / "data",
        meta=meta,
        items=pl.read_parquet(tiny_dataset / "items.parquet"),
        sequences=pl.read_parquet(tiny_dataset / "sequences.parquet"),
        splits=splits,
    )
    run = tmp_path / "run"
    with pytest.raises(DinctlError) as err:
        train(quick(data, run))
    n = len(splits[split])
    assert err.value.message == (
        f"split {split!r} of {data} has only {only} labels ({n} rows of "
        f"{data / f'{split}.parquet'}): {why}"
    )
    assert not run.exists()


def _scripted_valid(monkeypatch: pytest.MonkeyPatch, scores: list[tuple[float, float]]) -> None:
    """valid_metrics returns (user-weighted, global) AUCs from `scores`, one pair per epoch."""
    it = iter(scores)

    def fake(prob: torch.Tensor, rows: Any) -> dict[str, float]:
        uw, g = next(it)
        return {"valid_user_weighted_auc": uw, "valid_global_auc": g, "valid_logloss": 0.6}

    monkeypatch.setattr(loop, "valid_metrics", fake)


def test_early_stopping_keeps_the_best_epoch_by_the_headline_metric(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # user-weighted AUC peaks at epoch 2, global AUC keeps rising: the headline decides
    _scripted_valid(monkeypatch, [(0.60, 0.60), (0.70, 0.61), (0.65, 0.62), (0.66, 0.63)] * 2)
    run = tmp_path / "run"
    result = train(quick(tiny_dataset, run, model="lr", epochs=6, patience=2))
    assert (result.best_epoch, result.epochs_run, result.stopped_early) == (2, 4, True)
    assert result.select_metric == "valid_user_weighted_auc"
    assert result.best_valid["valid_user_weighted_auc"] == 0.70
    assert load_checkpoint(run / "best.pt")["epoch"] == 2
    assert load_checkpoint(run / "best.pt")["select_metric"] == "valid_user_weighted_auc"
    records = log_records(run)
    assert records[-1] == {
        "event": "early_stop",
        "epoch": 4,
        "best_epoch": 2,
        "select_metric": "valid_user_weighted_auc",
    }
    epochs = [r for r in records if r["event"] == "epoch"]
    assert [r["best_epoch"] for r in epochs] == [1, 2, 2, 2]
    assert {r["select_metric"] for r in epochs} == {"valid_user_weighted_auc"}

    _scripted_valid(monkeypatch, [(0.60, 0.60), (0.70, 0.61), (0.65, 0.62), (0.66, 0.63)])
    other = train(
        quick(tiny_dataset, tmp_path / "g", model="lr", epochs=4, select_metric="global_auc"),
    )
    assert (other.best_epoch, other.stopped_early) == (4, False)
    assert other.select_metric == "valid_global_auc"


def test_resume_reads_the_best_record_of_an_older_run(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checkpoints written before the metric names changed hold `auc` (global) in their best
    record and valid_auc / valid_gauc in it: resume re-reads the headline from valid_gauc."""
    run = tmp_path / "run"
    train(quick(tiny_dataset, run, model="lr", epochs=1))
    state = load_checkpoint(run / "checkpoint.pt")
    old_valid = {"valid_auc": 0.9, "valid_gauc": 0.75, "valid_logloss": 0.5}
    state["best"] = json.dumps({"epoch": 1, "auc": 0.9, "valid": old_valid})
    save_checkpoint(run / "checkpoint.pt", state)
    _scripted_valid(monkeypatch, [(0.74, 0.95), (0.76, 0.5)])
    result = train(resume_config(run, {"epochs": 3}), resume=True)
    assert result.best_epoch == 3  # 0.74 < 0.75 (the old valid_gauc) < 0.76
