"""Model options: the tower's own activation, α's start, Xavier init, and old configs."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dinctl.models import DIN, ModelConfig, build_model
from dinctl.models.config import LEGACY_DEFAULTS
from dinctl.models.layers import Dice, PReLU
from tests.test_models import config, random_batch


def activations(module: nn.Module) -> list[type]:
    return [type(m) for m in module.modules() if isinstance(m, (Dice, PReLU))]


def test_the_tower_can_use_another_activation_than_the_unit() -> None:
    model = build_model(config("din", act="dice", mlp_act="prelu"))
    assert isinstance(model, DIN)
    assert activations(model.attention) == [Dice, Dice]  # (8, 4) hidden
    assert activations(model.mlp) == [PReLU, PReLU]  # (10, 6) hidden
    same = build_model(config("din", act="dice", mlp_act="same"))
    assert isinstance(same, DIN)
    assert activations(same.mlp) == [Dice, Dice]
    relu_tower = build_model(config("din", act="dice", mlp_act="relu"))
    assert isinstance(relu_tower, DIN) and activations(relu_tower.mlp) == []
    x = torch.tensor([[-2.0, 3.0]])
    act = relu_tower.mlp.acts[0]
    assert act(x).tolist() == [[0.0, 3.0]]


@pytest.mark.parametrize("act", ["dice", "prelu"])
def test_alpha_starts_where_the_config_says(act: str) -> None:
    for start in (0.0, 0.25):
        model = build_model(config("din", act=act, dice_alpha_init=start))
        alphas = [m.alpha for m in model.modules() if isinstance(m, (Dice, PReLU))]
        assert alphas and all(bool((a == start).all()) for a in alphas)


def test_xavier_init_draws_weights_at_the_xavier_scale_and_zero_biases() -> None:
    cfg = ModelConfig(
        model="din", n_users=3, n_items=50, n_cates=5, emb_dim=32, linear_init="xavier"
    )
    model = build_model(cfg)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 6  # unit: 2 hidden + out; tower: 2 hidden + out
    for lin in linears:
        assert lin.bias is not None and bool((lin.bias == 0).all())
        fan_out, fan_in = lin.weight.shape
        if lin.weight.numel() >= 5000:
            std = float(lin.weight.detach().std())
            assert std == pytest.approx(math.sqrt(2 / (fan_in + fan_out)), rel=0.1)
    torch_init = build_model(
        ModelConfig(model="din", n_users=3, n_items=50, n_cates=5, linear_init="torch")
    )
    biases = [m.bias for m in torch_init.modules() if isinstance(m, nn.Linear)]
    assert all(b is not None and bool((b != 0).any()) for b in biases)


def test_defaults_keep_the_din_the_measurements_chose() -> None:
    """Real data chose Dice in the unit with a ReLU tower, α from 0 and Xavier linears
    (benchmarks/README.md, accuracy); other units keep their activation in the tower."""
    cfg = ModelConfig(model="din", n_users=3, n_items=50, n_cates=5, act="dice")
    assert cfg.mlp_act == "auto"
    assert (cfg.tower_act, cfg.dice_alpha_init, cfg.linear_init) == ("relu", 0.0, "xavier")
    assert (cfg.fm_pooling, cfg.wide_cross) == ("mean", "auto")
    model = build_model(cfg)
    assert activations(model) == [Dice, Dice]  # the unit's two; none in the tower
    for act in ("prelu", "sigmoid", "relu"):
        assert ModelConfig(model="din", n_users=3, n_items=50, n_cates=5, act=act).tower_act == act
    paper = ModelConfig(model="din", n_users=3, n_items=50, n_cates=5, act="dice", mlp_act="same")
    assert paper.tower_act == "dice"
    authors = ModelConfig(model="din", n_users=3, n_items=50, n_cates=5, act="sigmoid",
                          mlp_act="dice")  # fmt: skip
    assert authors.tower_act == "dice"


def test_a_config_without_the_new_keys_rebuilds_the_old_model() -> None:
    """A run folder written before these options existed loads into the same modules and
    arithmetic: Dice in the tower, α = 0.25, nn.Linear's init, summed FM history."""
    new = config("din", act="dice").to_dict()
    old = {k: v for k, v in new.items() if k not in LEGACY_DEFAULTS}
    cfg = ModelConfig.from_dict(old)
    assert cfg.tower_act == "dice" and cfg.dice_alpha_init == 0.25
    assert cfg.linear_init == "torch" and cfg.fm_pooling == "sum" and cfg.wide_cross == "legacy"
    model = build_model(cfg)
    assert activations(model) == [Dice] * 4
    state = build_model(config("din", act="dice", mlp_act="same")).state_dict()
    model.load_state_dict(state)  # same keys and shapes
    assert ModelConfig.from_dict(new) == ModelConfig(**new)  # present keys win


def test_new_options_train_and_score() -> None:
    batch = random_batch(8, 6, seed=2)
    model = build_model(config("din", act="dice", mlp_act="prelu", dice_alpha_init=0.0,
                               linear_init="xavier")).train()  # fmt: skip
    unit_acts = [model.attention.first_act, *model.attention.rest.acts]
    assert all(isinstance(a, Dice) for a in unit_acts)  # --act: the activation unit's
    assert all(float(a.alpha.detach().abs().max()) == 0.0 for a in unit_acts)  # --dice-alpha-init 0
    assert all(isinstance(a, PReLU) for a in model.mlp.acts)  # --mlp-act: the tower's
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert linears and all(float(m.bias.detach().abs().max()) == 0.0 for m in linears)  # xavier
    out = model(batch)
    out.logits.sum().backward()
    assert torch.isfinite(out.logits).all()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient reaches {missing}"
    model.eval()
    assert torch.isfinite(model(batch).logits).all()
    relu = build_model(config("din", act="relu"))
    assert type(relu.attention.first_act).__name__ == "_ReLU"
    x = torch.tensor([[-1.0, 2.0]])
    assert relu.attention.first_act(x).tolist() == [[0.0, 2.0]]
