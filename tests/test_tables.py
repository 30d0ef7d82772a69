"""dinctl.tables: one table builder for `evaluate` and `experiment`, one RelaImpr guard."""

from __future__ import annotations

import pytest

from dinctl.tables import Group, Stat, build_table, format_rela_impr, model_cells, rela_impr_or_none

pytestmark = pytest.mark.notorch  # torch-free: `make test-py` runs it on 3.10 and 3.13


def _m(uw: float, glob: float, logloss: float = 0.5) -> dict[str, float]:
    return {"user_weighted_auc": uw, "global_auc": glob, "logloss": logloss}


def test_relaimpr_guard_and_format() -> None:
    assert rela_impr_or_none(0.7, None) is None
    assert rela_impr_or_none(0.7, 0.5) is None
    assert rela_impr_or_none(0.7, float("nan")) is None
    assert rela_impr_or_none(0.8, 0.6) == pytest.approx(200.0)
    assert [format_rela_impr(x) for x in (70.891, -3.1, 0.0, None)] == [
        "+70.89%",
        "-3.10%",
        "+0.00%",
        "–",
    ]


def test_headline_is_the_user_weighted_auc_and_relaimpr_uses_it() -> None:
    groups = [
        Group("base", ("BaseModel",), [_m(0.60, 0.90)]),
        Group("din", ("DIN",), [_m(0.62, 0.70), _m(0.64, 0.72)]),
        Group("pnn", ("PNN",), []),  # no finished run: no row
    ]
    table = build_table("t", "T", ("Model",), groups, baseline="base", baseline_label="BaseModel")
    assert [r.key for r in table.rows] == ["base", "din"]
    din = table.rows[1]
    assert din.user_weighted_auc.mean == pytest.approx(0.63) and din.seeds == 2
    assert din.global_auc is not None and din.global_auc.mean == pytest.approx(0.71)
    # (0.63 − 0.5) / (0.60 − 0.5) − 1 = +30%; from the global AUCs it would be −47.5%
    assert din.rela_impr == pytest.approx(30.0)
    assert table.header()[1:4] == ["AUC (user-weighted, Eq. 10)", "global AUC", "RelaImpr"]
    assert table.cells()[1][:4] == ["DIN", "0.6300 ± 0.0141", "0.7100 ± 0.0141", "+30.00%"]
    assert table.to_json()["metric"] == "user_weighted_auc"


def test_baseline_outside_the_rows_and_missing_baseline() -> None:
    outside = Group("b", (), [_m(0.55, 0.6)])
    table = build_table(
        "t",
        "T",
        ("run",),
        [Group("a", ("a",), [_m(0.6, 0.6)])],
        baseline="b",
        baseline_label="b",
        outside_baseline=outside,
    )
    assert table.rows[0].rela_impr == pytest.approx(100.0)
    none = build_table("t", "T", ("run",), [Group("a", ("a",), [_m(0.6, 0.6)])], baseline="zz")
    assert none.rows[0].rela_impr is None and none.baseline is None
    assert "RelaImpr (Eq. 11) is not computed: no baseline run." in none.footer()
    assert "computed from the mean" not in none.footer()
    assert "with “b” as the baseline." in table.footer()


def test_a_baseline_label_ending_in_a_full_stop_reads_once() -> None:
    groups = [Group("r", ("Without item ids and Reg.",), [_m(0.6, 0.6)])]
    table = build_table(
        "t", "T", ("row",), groups, baseline="r", baseline_label=groups[0].labels[0]
    )
    assert "Reg.." not in table.footer() and "“Without item ids and Reg.” as the" in table.footer()


def test_footer_names_the_setting() -> None:
    table = build_table(
        "t",
        "T",
        ("Model",),
        [Group("a", ("A",), [_m(0.6, 0.6)])],
        baseline=None,
        setting={"split": "test", "recipe": "fast", "epochs": 3, "seeds": 1, "dataset": "d"},
    )
    assert "Setting: recipe fast, epochs 3, seeds 1, dataset d." in table.footer()
    assert table.markdown().endswith(table.footer() + "\n")


def test_stat_and_lr_cells() -> None:
    assert Stat.of([0.7]).text() == "0.7000" and Stat.of([0.7]).std is None
    assert model_cells("lr", "prelu", "none") == ("LR", "–", "–")
    assert model_cells("din", "dice", "mba") == ("DIN", "Dice", "MBA")
