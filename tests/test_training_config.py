"""TrainConfig: recipes, precedence (recipe < TOML < flags), validation messages, schedule."""

from __future__ import annotations

from pathlib import Path

import pytest

from dinctl.errors import DinctlError
from dinctl.training.config import TrainConfig, resolve_config

pytestmark = pytest.mark.notorch  # torch-free: `make test-py` runs it on 3.10 and 3.13


def test_fast_recipe_is_the_default() -> None:
    cfg = resolve_config({}, None)
    assert (cfg.recipe, cfg.optimizer, cfg.lr, cfg.batch_size) == ("fast", "adam", 1e-3, 256)
    assert (cfg.epochs, cfg.patience, cfg.select_metric) == (20, 2, "user_weighted_auc")
    assert (cfg.model, cfg.act, cfg.reg, cfg.emb_dim, cfg.max_len) == (
        "din",
        "prelu",
        "mba",
        64,
        100,
    )
    assert cfg.reg_lambda == 1.0  # the fast recipe's MBA λ
    assert cfg.data == "data/amazon"
    assert cfg.out.startswith("runs/din-prelu-mba-")


def test_act_dice_is_the_layout_real_data_chose_and_the_paper_recipe_keeps_the_dice_tower() -> None:
    """fast (the default): a ReLU tower after a Dice unit, α from 0, Xavier linears (measured
    on real Amazon MI and MovieLens rows, benchmarks/README.md); paper: Dice in the tower, α
    from 0.25, nn.Linear's init, as dinctl had it; flags beat both."""
    fast = resolve_config({"act": "dice"}, None)
    assert (fast.mlp_act, fast.dice_alpha_init, fast.linear_init) == ("auto", 0.0, "xavier")
    paper = resolve_config({"act": "dice", "recipe": "paper"}, None)
    assert (paper.mlp_act, paper.dice_alpha_init, paper.linear_init) == ("same", 0.25, "torch")
    chosen = resolve_config({"recipe": "paper", "mlp_act": "relu", "linear_init": "xavier"}, None)
    assert (chosen.mlp_act, chosen.linear_init) == ("relu", "xavier")
    assert TrainConfig().mlp_act == fast.mlp_act  # the dataclass default is the default recipe's


def test_paper_recipe_matches_the_authors_code() -> None:
    cfg = resolve_config({"recipe": "paper"}, None)
    assert (cfg.optimizer, cfg.lr, cfg.batch_size, cfg.grad_clip) == ("sgd", 1.0, 32, 5.0)
    assert (cfg.lr_decay, cfg.lr_decay_epochs, cfg.lr_decay_step) == (0.1, 4.0, 0)
    assert cfg.max_len >= 1_000_000  # whole histories, as the paper and the authors' code
    # the drop lands after 4 epochs whatever the dataset's size (100 or 81,524 steps an epoch)
    for per_epoch in (100, 81_524):
        assert cfg.lr_at(4 * per_epoch - 1, per_epoch) == 1.0
        assert cfg.lr_at(4 * per_epoch, per_epoch) == pytest.approx(0.1)
    old = TrainConfig(**{**cfg.to_dict(), "lr_decay_step": 336_000})  # a run of an older version
    assert old.lr_at(335_999, 100) == 1.0 and old.lr_at(336_000, 100) == pytest.approx(0.1)


def test_reg_and_its_lambda_come_from_the_recipe_unless_given() -> None:
    fast, paper = resolve_config({}, None), resolve_config({"recipe": "paper"}, None)
    assert (fast.reg, fast.reg_lambda) == ("mba", 1.0)  # chosen on real data (benchmarks)
    assert (paper.reg, paper.reg_lambda) == ("none", 0.0)
    assert resolve_config({"recipe": "paper", "reg": "mba"}, None).reg_lambda == 0.01  # §6.5
    assert resolve_config({"reg": "difacto"}, None).reg_lambda == 0.01
    assert resolve_config({"reg": "none"}, None).reg_lambda == 0.0
    assert resolve_config({"reg_lambda": 0.3}, None).reg_lambda == 0.3
    off = resolve_config({"reg": "none", "recipe": "fast"}, None)
    assert off.out.startswith("runs/din-prelu-none-")


def test_toml_overrides_recipe_and_flags_override_toml(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('recipe = "paper"\nlr = 0.5\nbatch-size = 64\nreg = "mba"\n')
    cfg = resolve_config({"lr": 0.25, "epochs": None}, f)
    assert cfg.optimizer == "sgd"  # from the recipe
    assert cfg.batch_size == 64  # from the file (dash accepted)
    assert cfg.lr == 0.25  # from the flag
    assert cfg.epochs == 10  # None = flag not given
    assert cfg.reg_lambda == 0.01  # the default λ of mba


def test_flag_recipe_beats_file_recipe(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('recipe = "paper"\n')
    assert resolve_config({"recipe": "fast"}, f).optimizer == "adam"


def test_unknown_toml_key_is_named(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text("lr = 0.1\nlearning_rate = 0.1\n")
    with pytest.raises(DinctlError) as err:
        resolve_config({}, f)
    assert err.value.message == f"{f}: unknown key 'learning_rate'"
    assert err.value.hint is not None and "batch_size" in err.value.hint


def test_missing_and_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(DinctlError) as err:
        resolve_config({}, tmp_path / "nope.toml")
    assert err.value.message == f"config file {tmp_path / 'nope.toml'} does not exist"
    bad = tmp_path / "bad.toml"
    bad.write_text("lr = = 1\n")
    with pytest.raises(DinctlError, match=r"bad\.toml is not valid TOML \("):
        resolve_config({}, bad)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            {"model": "gpt"},
            "unknown model 'gpt'; expected one of din, base, lr, wide-deep, pnn, deepfm, avg-pool",
        ),
        ({"act": "tanh"}, "unknown act 'tanh'; expected one of prelu, dice, sigmoid, relu"),
        (
            {"reg": "l1"},
            "unknown reg 'l1'; expected one of none, mba, l2, dropout, filter, difacto",
        ),
        ({"optimizer": "lamb"}, "unknown optimizer 'lamb'; expected one of sgd, adam, adagrad"),
        ({"device": "tpu"}, "unknown device 'tpu'; expected one of auto, cpu, cuda"),
        ({"recipe": "slow"}, "unknown recipe 'slow'; expected one of paper, fast"),
        ({"epochs": 0}, "epochs must be an integer of at least 1, got 0 instead"),
        ({"batch_size": 2.5}, "batch_size must be an integer of at least 1, got 2.5 instead"),
        ({"lr": 0}, "lr must be greater than 0, got 0.0 instead"),
        ({"reg_lambda": -1}, "reg_lambda must be a finite number of at least 0, got -1 instead"),
        ({"dropout_rate": 1.0}, "dropout_rate must be in [0, 1), got 1.0 instead"),
    ],
)
def test_invalid_values_are_one_line_errors(override: dict[str, object], message: str) -> None:
    with pytest.raises(DinctlError) as err:
        resolve_config(override, None)
    assert err.value.message == message


def test_config_round_trips_through_json() -> None:
    cfg = resolve_config({"reg": "filter", "filter_top_k": 7, "out": "runs/x"}, None)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(DinctlError, match=r"^config.json: unknown key 'colour'$"):
        TrainConfig.from_dict({**cfg.to_dict(), "colour": 1}, "config.json")


def test_emb_init_std_reaches_the_model(tiny_dataset, tmp_path) -> None:
    """--emb-init-std sizes the embedding init: the saved model config and the weights agree."""
    torch = pytest.importorskip("torch")  # the rest of this file runs without torch too

    from dinctl.inference import open_run
    from dinctl.training.loop import train

    cfg = resolve_config(
        {"data": str(tiny_dataset), "epochs": 1, "emb_init_std": 2.0, "out": str(tmp_path / "r")},
        None,
    )
    run = open_run(train(cfg).run_dir)
    assert run.config.emb_init_std == 2.0
    table = run.model.sparse_tables()[0][1].weight.detach()[1:]  # (N, D) without padding
    assert 1.5 < float(table.std()) < 2.5  # one epoch of Adam at lr 1e-3 barely moves N(0, 4)
    assert torch.count_nonzero(run.model.sparse_tables()[0][1].weight[0]) == 0


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('use_item_ids = "false"', "use_item_ids must be true or false, got 'false' instead"),
        ("amp = 1", "amp must be true or false, got 1 instead"),
        ("epochs = 2.0", "epochs must be an integer of at least 1, got 2.0 instead"),
        ('batch_size = "64"', "batch_size must be an integer of at least 1, got '64' instead"),
        ("seed = true", "seed must be an integer of at least 0, got True instead"),
        ('lr = "0.1"', "lr must be a finite number of at least 0, got '0.1' instead"),
        ("data = 5", "data must be a string, got 5 instead"),
        (
            "emb_dim = 100000000",
            "emb_dim must be an integer of at most 4096, got 100000000 instead",
        ),
        ("lr = 1e300", "lr must be at most 100, got 1e+300 instead"),
        (
            "batch_size = 99999999999",
            "batch_size must be an integer of at most 16777216, got 99999999999 instead",
        ),
    ],
)
def test_wrong_typed_or_absurd_config_values_are_one_line_errors(
    tmp_path: Path, toml: str, message: str
) -> None:
    """Issue 13 item 13: every value is checked for its type and range when the config is
    resolved; TOML booleans are booleans only (a quoted "false" used to be stored and read as
    true)."""
    f = tmp_path / "c.toml"
    f.write_text(toml + "\n")
    with pytest.raises(DinctlError) as err:
        resolve_config({}, f)
    assert err.value.message == message


def test_resume_keys_are_the_ones_that_do_not_define_a_run() -> None:
    from dinctl.training.config import FIELD_NAMES, NOT_IDENTITY_KEYS

    assert NOT_IDENTITY_KEYS <= set(FIELD_NAMES)
    assert {"model", "act", "reg", "lr", "seed", "batch_size", "emb_dim"}.isdisjoint(
        NOT_IDENTITY_KEYS
    )
    saved = resolve_config({"out": "runs/a", "epochs": 2}, None)
    again = resolve_config({"epochs": 5, "threads": 1, "device": "cpu"}, saved=saved)
    assert (again.epochs, again.threads, again.device, again.lr) == (5, 1, "cpu", saved.lr)
    with pytest.raises(DinctlError, match=r"^--lr 0.5 differs from the run's 0.001 in x.json$"):
        resolve_config({"lr": 0.5}, saved=saved, source="x.json")
