"""`dinctl train` through CliRunner: output contract, exit codes, every error message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dinctl.cli.main import app

runner = CliRunner()
SMALL = ["--epochs", "1", "--batch-size", "256", "--emb-dim", "8", "--lr", "0.01"]


def test_train_dice_mba_json(tiny_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = [
        "train",
        "--data",
        str(tiny_dataset),
        "--act",
        "dice",
        "--reg",
        "mba",
        "--out",
        str(out),
        "--json",
    ]
    result = runner.invoke(app, [*args, *SMALL])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["run_dir"] == str(out)
    assert payload["best_epoch"] == 1 and payload["epochs_run"] == 1
    assert payload["best_valid"]["valid_global_auc"] > 0.6
    assert payload["select_metric"] == "valid_user_weighted_auc"
    assert result.stderr == ""  # --json is quiet
    saved = json.loads((out / "config.json").read_text())
    assert saved["train"]["act"] == "dice" and saved["train"]["reg"] == "mba"
    # the fast recipe's MBA λ (the paper recipe keeps §6.5's 0.01)
    assert saved["train"]["reg_lambda"] == 1.0 and saved["model"]["act"] == "dice"
    assert (
        saved["dataset"]["checksum"]
        == json.loads((tiny_dataset / "meta.json").read_text())["checksum"]
    )


def test_the_peers_matched_din_is_reachable_with_flags(tiny_dataset: Path, tmp_path: Path) -> None:
    """Dice in the activation unit, a ReLU tower, α from 0, Xavier linears (DeepCTR-Torch's)."""
    from dinctl.inference import open_run
    from dinctl.models.layers import Dice, _ReLU

    out = tmp_path / "run"
    flags = ["--act", "dice", "--mlp-act", "relu", "--dice-alpha-init", "0", "--linear-init"]
    args = ["train", "--data", str(tiny_dataset), *flags, "xavier", "--out", str(out), *SMALL]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    model = json.loads((out / "config.json").read_text())["model"]
    assert (model["act"], model["mlp_act"], model["linear_init"]) == ("dice", "relu", "xavier")
    assert model["dice_alpha_init"] == 0.0
    modules = list(open_run(out).model.modules())
    assert any(isinstance(m, _ReLU) for m in modules) and any(isinstance(m, Dice) for m in modules)
    bad = runner.invoke(app, ["train", "--data", str(tiny_dataset), "--mlp-act", "tanh"])
    assert bad.exit_code == 2


def test_train_prints_the_run_dir_on_stdout_and_a_summary_on_stderr(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    result = runner.invoke(
        app, ["train", "--data", str(tiny_dataset), "--model", "lr", "--out", str(out), *SMALL]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{out}\n"
    assert "epoch 1  train loss" in result.stderr
    assert "best epoch 1 (by user_weighted_auc): user_weighted_auc " in result.stderr


def test_config_file_and_flags(tiny_dataset: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'data = "{tiny_dataset}"\nmodel = "base"\nlr = 0.5\nepochs = 1\nemb_dim = 8\n')
    out = tmp_path / "run"
    result = runner.invoke(
        app, ["train", "--config", str(cfg), "--lr", "0.01", "--out", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "config.json").read_text())["train"]
    assert (saved["model"], saved["lr"], saved["epochs"], saved["optimizer"]) == (
        "base",
        0.01,
        1,
        "adam",
    )


def test_ctrl_c_saves_a_checkpoint_and_exits_130(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dinctl.training import loop

    def pressed(self: loop.StopFlag) -> loop.StopFlag:
        self.requested = True  # as if Ctrl-C came during the first step
        return self

    monkeypatch.setattr(loop.StopFlag, "__enter__", pressed)
    out = tmp_path / "run"
    result = runner.invoke(
        app, ["train", "--data", str(tiny_dataset), "--model", "lr", "--out", str(out), *SMALL]
    )
    assert result.exit_code == 130
    assert result.stderr.strip().endswith("interrupted")
    monkeypatch.undo()
    assert (out / "checkpoint.pt").exists()
    resumed = runner.invoke(app, ["train", "--resume", "--out", str(out), "--json"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["epochs_run"] == 1


def _error(result: object) -> str:
    return result.stderr  # type: ignore[attr-defined, no-any-return]


def test_error_messages_word_for_word(tiny_dataset: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    r = runner.invoke(app, ["train", "--data", str(missing), "--out", str(tmp_path / "r")])
    assert r.exit_code == 1
    assert (
        _error(r)
        == f"error: dataset folder {missing} does not exist\nhint: run `dinctl preprocess` first\n"
    )
    assert not (tmp_path / "r").exists()  # no empty run folder left behind

    r = runner.invoke(app, ["train", "--resume"])
    assert r.exit_code == 1
    assert _error(r) == "error: --resume needs --out RUN_DIR naming the run to continue\n"

    toml = tmp_path / "c.toml"
    toml.write_text("epocs = 3\n")
    r = runner.invoke(app, ["train", "--config", str(toml)])
    assert r.exit_code == 1
    assert _error(r).startswith(
        f"error: {toml}: unknown key 'epocs'\nhint: valid keys: data, model, act, "
    )

    r = runner.invoke(
        app, ["train", "--resume", "--out", str(tmp_path / "r"), "--config", str(toml)]
    )
    assert (
        _error(r) == "error: --resume takes its settings from the run's config.json, not --config\n"
    )

    r = runner.invoke(app, ["train", "--resume", "--out", str(tmp_path / "none")])
    assert r.exit_code == 1
    assert _error(r) == (
        f"error: run folder {tmp_path / 'none'} does not exist\n"
        "hint: pass a folder written by `dinctl train` or `dinctl experiment`\n"
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--act", "tanh"],
        ["--model", "gpt"],
        ["--reg", "l1"],
        ["--epochs", "0"],
        ["--batch-size", "-1"],
        ["--lr", "-0.1"],
        ["--device", "tpu"],
    ],
)
def test_bad_choices_are_usage_errors(args: list[str]) -> None:
    r = runner.invoke(app, ["train", *args])
    assert r.exit_code == 2


def test_preprocess_sample_amazon_then_train_dice_mba(tmp_path: Path) -> None:
    sample = Path(__file__).resolve().parents[1] / "sample_data" / "amazon"
    data = tmp_path / "amazon"
    pre = runner.invoke(
        app, ["preprocess", "amazon", "--raw", str(sample), "--out", str(data), "--json"]
    )
    assert pre.exit_code == 0, pre.output
    out = tmp_path / "run"
    args = ["--act", "dice", "--reg", "mba", "--epochs", "2", "--batch-size", "128", "--lr", "0.01"]
    result = runner.invoke(
        app, ["train", "--data", str(data), "--out", str(out), "--emb-dim", "16", *args, "--json"]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert (
        payload["best_valid"]["valid_user_weighted_auc"] > 0.6
    )  # the sample's planted interests are learnable


def test_threads_flag_auto_default_and_omp_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One thread policy, applied inside `train()` whoever calls it: --threads / `threads`
    wins, else OMP_NUM_THREADS (or torchrun) leaves torch alone, else `auto_threads()`."""
    import torch

    from dinctl.training import device, loop
    from dinctl.training.device import auto_threads

    assert auto_threads(cores=2, load=0.1, most=2) == 2  # quiet: every core
    assert auto_threads(cores=2, load=2.7, most=2) == 1  # busy: never below one
    assert auto_threads(cores=16, load=3.2, most=16) == 13
    assert auto_threads(cores=16, load=0.0, most=4) == 4  # never above torch's default
    seen: list[int] = []

    def fake_train(cfg, *args):  # type: ignore[no-untyped-def]
        seen.append(torch.get_num_threads())
        return loop.TrainResult(run_dir=Path(cfg.out), best_epoch=1, best_valid={}, epochs_run=1)

    monkeypatch.setattr(loop, "_train", fake_train)
    monkeypatch.setattr(device, "auto_threads", lambda: 1)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    before = torch.get_num_threads()
    base = ["train", "--out", str(tmp_path / "r"), "--json", "--device", "cpu"]
    for extra, want in ((["--threads", "2"], 2), ([], 1)):
        result = runner.invoke(app, [*base, *extra])
        assert result.exit_code == 0, result.output
        assert seen[-1] == want and torch.get_num_threads() == before  # restored afterwards
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert runner.invoke(app, base).exit_code == 0 and seen[-1] == before  # env var decides
    from dinctl.training.config import resolve_config

    loop.train(resolve_config({"out": str(tmp_path / "lib"), "threads": 2}))
    assert seen[-1] == 2  # the library entry point follows the same policy


def test_help_takes_choices_and_defaults_from_the_library() -> None:
    import typer

    from dinctl import choices
    from dinctl.cli.train import shown_default
    from dinctl.training.config import RECIPE_DEFAULTS, TrainConfig

    command = typer.main.get_command(app).commands["train"]  # type: ignore[attr-defined]
    params = {p.name: p for p in command.params}
    assert params["model"].type_descriptor.annotation is choices.Model
    assert params["select_metric"].type_descriptor.annotation is choices.SelectMetric
    assert shown_default("emb_dim") == str(TrainConfig.emb_dim)
    assert f"[default: {TrainConfig.emb_dim}]" in params["emb_dim"].help
    assert shown_default("select_metric") == TrainConfig.select_metric
    for recipe in choices.RECIPES:
        assert f"{recipe} {RECIPE_DEFAULTS[recipe]['patience']}" in shown_default("patience")
        assert f"{recipe} {RECIPE_DEFAULTS[recipe]['epochs']}" in params["epochs"].help
    assert params["emb_dim"].min == 1 and params["lr"].min == 0.0  # the config's range tables
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0 and "--patience" in result.stdout
    assert "(default:" not in result.stdout and "[default: " in result.stdout  # one style
    assert "[default: (" not in result.stdout  # no parentheses around a default


def test_train_help_is_grouped_into_panels_without_type_labels() -> None:
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0
    out = result.stdout
    panels = ["Data", "Model", "Regularisation", "Optimisation", "Run and output", "Performance"]
    starts = [out.find(f"─ {name} ─") for name in panels]
    assert -1 not in starts and starts == sorted(starts), starts
    for label in ("<bool>", "<path>", "<list[", "{path}", "<int", "<float"):
        if label == "<bool>":  # click's own --help flag is outside the train options
            assert out.count(label) <= 1 and "--help" in out.split(label)[0].splitlines()[-1]
            continue
        assert label not in out, label

    def panel_of(flag: str) -> str:
        at = out.find(f" {flag} ")
        return panels[max(i for i, s in enumerate(starts) if s < at)]

    assert panel_of("--threads") == panel_of("--device") == "Performance"
    assert panel_of("--reg-lambda") == "Regularisation" and panel_of("--emb-dim") == "Model"
    assert panel_of("--seed") == "Run and output" and panel_of("--max-len") == "Data"
    # --threads right after --device
    lines = [line for line in out.splitlines() if line.lstrip("│ ").startswith("--")]
    names = [line.lstrip("│ ").split()[0] for line in lines]
    assert names[names.index("--device") + 1] == "--threads"


def test_resume_from_another_models_checkpoint_and_a_bool_string_are_one_line_errors(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    """Issue 13 items 12 and 13 through the CLI: exit 1, the error line and its hint only."""
    import shutil

    runs = {}
    for model in ("lr", "base"):
        runs[model] = tmp_path / model
        args = ["train", "--data", str(tiny_dataset), "--model", model, "--out", str(runs[model])]
        assert runner.invoke(app, [*args, *SMALL, "--json"]).exit_code == 0
    shutil.copyfile(runs["lr"] / "checkpoint.pt", runs["base"] / "checkpoint.pt")
    r = runner.invoke(app, ["train", "--resume", "--out", str(runs["base"]), "--epochs", "2"])
    assert r.exit_code == 1
    assert _error(r) == (
        f"error: {runs['base'] / 'checkpoint.pt'} is a checkpoint of model 'lr', this run "
        "trains 'base'\nhint: it belongs to another run; start a new run, or restore the run's "
        "own checkpoint.pt\n"
    )
    toml = tmp_path / "c.toml"
    toml.write_text('use_item_ids = "false"\n')
    r = runner.invoke(app, ["train", "--config", str(toml)])
    assert r.exit_code == 1
    assert _error(r) == (
        "error: use_item_ids must be true or false, got 'false' instead\n"
        "hint: write a boolean without quotes (true / false)\n"
    )


def test_adagrad_prints_no_raw_torch_warning(tiny_dataset: Path, tmp_path: Path) -> None:
    import warnings

    args = ["train", "--data", str(tiny_dataset), "--optimizer", "adagrad", "--model", "lr"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = runner.invoke(app, [*args, "--out", str(tmp_path / "r"), *SMALL])
    assert result.exit_code == 0, result.output
    assert "Warning" not in result.stderr
    assert not [w for w in caught if "sparse" in str(w.message).lower()]
