"""The paper's comparison tables (Tables 3 and 4), built one way for every command.

A table is rows of metrics aggregated over seeds: `dinctl evaluate` makes one row per run (a
table of one seed), `dinctl experiment` one row per variant over its seeds. The headline column
is the paper's AUC, the user-weighted AUC of Eq. (10); the global AUC is a second column;
RelaImpr (Eq. 11) is computed from the headline against the baseline row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dinctl.choices import MODEL_LABELS
from dinctl.fsutil import atomic_file
from dinctl.runs import HEADLINE_METRIC, METRIC_LABELS, write_json

ACT_LABELS = {"prelu": "PReLU", "dice": "Dice", "sigmoid": "Sigmoid"}
REG_LABELS = {
    "none": "–",
    "mba": "MBA",
    "l2": "L2",
    "dropout": "Dropout",
    "filter": "Filter",
    "difacto": "DiFacto",
}
NO_ACTIVATION = ("lr",)  # models without hidden layers: the activation does not apply
BLANK = "–"


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation (ddof=1; None with one seed) over seeds."""

    mean: float
    std: float | None
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        n = len(values)
        mean = math.fsum(values) / n
        if n < 2:
            return cls(mean, None, n)
        var = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
        return cls(mean, math.sqrt(var), n)

    def text(self, digits: int = 4) -> str:
        if self.std is None:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"

    def to_json(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "n": self.n}


def rela_impr_or_none(auc: float, base_auc: float | None) -> float | None:
    """RelaImpr (Eq. 11) in percent; None without a baseline or against one at chance level."""
    from dinctl.metrics import rela_impr

    if base_auc is None or not math.isfinite(base_auc) or base_auc == 0.5:
        return None
    return float(rela_impr(auc, base_auc))


def format_rela_impr(value: float | None) -> str:
    """RelaImpr as every table prints it: signed, two decimals, e.g. +70.89%."""
    return BLANK if value is None else f"{value:+.2f}%"


def model_cells(model: str, act: str, reg: str) -> tuple[str, str, str]:
    """(model, activation, regulariser) cells in the paper's names; LR shows no activation."""
    return (
        MODEL_LABELS.get(model, model),
        BLANK if model in NO_ACTIVATION else ACT_LABELS.get(act, act),
        REG_LABELS.get(reg, reg),
    )


@dataclass(frozen=True)
class Group:
    """The runs of one table row: its key, its label cells and each run's metrics."""

    key: str
    labels: tuple[str, ...]
    metrics: Sequence[dict[str, Any]]  # per run: user_weighted_auc, global_auc, logloss
    extra: dict[str, Any] = field(default_factory=dict)  # more JSON fields of the row


@dataclass(frozen=True)
class Row:
    key: str
    labels: tuple[str, ...]
    user_weighted_auc: Stat
    global_auc: Stat | None
    logloss: Stat
    rela_impr: float | None  # percent, Eq. (11) on the headline; None without a baseline
    extra: dict[str, Any]

    @property
    def seeds(self) -> int:
        return self.user_weighted_auc.n


@dataclass(frozen=True)
class Table:
    """Rows plus what they were measured on (the footer names recipe, epochs, seeds, dataset)."""

    name: str
    title: str
    label_header: tuple[str, ...]
    rows: tuple[Row, ...]
    baseline: str | None  # key of the baseline row
    baseline_label: str | None
    show_logloss: bool
    setting: dict[str, Any]  # split, recipe, epochs, seeds, dataset, dataset_checksum

    def header(self) -> list[str]:
        cols = [*self.label_header, METRIC_LABELS[HEADLINE_METRIC], "global AUC", "RelaImpr"]
        return cols + (["Logloss"] if self.show_logloss else [])

    def cells(self) -> list[list[str]]:
        out = []
        for row in self.rows:
            cells = [
                *row.labels,
                row.user_weighted_auc.text(),
                BLANK if row.global_auc is None else row.global_auc.text(),
                format_rela_impr(row.rela_impr),
            ]
            if self.show_logloss:
                cells.append(row.logloss.text())
            out.append(cells)
        return out

    def footer(self) -> str:
        seeds = "/".join(map(str, sorted({r.seeds for r in self.rows}))) or "0"
        split = self.setting.get("split", "test")
        rela = (
            "RelaImpr (Eq. 11) is computed from the mean user-weighted AUCs, with "
            f"“{self.baseline_label}” as the baseline."
            if self.baseline_label is not None
            else "RelaImpr (Eq. 11) is not computed: no baseline run."
        )
        parts = [
            f"AUC is the user-weighted AUC of Eq. (10) on the {split} split (the paper's AUC), "
            f"from each run's best validation epoch; mean ± sample std (ddof=1) over {seeds} "
            f"seed(s). Global AUC is the plain AUC over all impressions. {rela}"
        ]
        shown = [f"{k} {v}" for k, v in self.setting.items() if k != "split" and v is not None]
        if shown:
            parts.append("Setting: " + ", ".join(shown) + ".")
        return " ".join(parts)

    def markdown(self) -> str:
        header = self.header()
        n_labels = len(self.label_header)
        lines = [
            f"**{self.title}**",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "|".join([":---"] * n_labels + ["---:"] * (len(header) - n_labels)) + "|",
        ]
        lines += ["| " + " | ".join(c) + " |" for c in self.cells()]
        lines += ["", self.footer()]
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict[str, Any]:
        return {
            "table": self.name,
            "title": self.title,
            "metric": HEADLINE_METRIC,
            "metric_label": METRIC_LABELS[HEADLINE_METRIC],
            "baseline": self.baseline,
            "setting": self.setting,
            "rows": [
                {
                    "key": r.key,
                    "label": " ".join(r.labels),
                    "seeds": r.seeds,
                    "user_weighted_auc": r.user_weighted_auc.to_json(),
                    "global_auc": None if r.global_auc is None else r.global_auc.to_json(),
                    "logloss": r.logloss.to_json(),
                    "rela_impr": r.rela_impr,
                    **r.extra,
                }
                for r in self.rows
            ],
        }


def _row(group: Group) -> tuple[Stat, Stat | None, Stat]:
    m = group.metrics
    globals_ = [x["global_auc"] for x in m if x.get("global_auc") is not None]
    return (
        Stat.of([x["user_weighted_auc"] for x in m]),
        Stat.of(globals_) if len(globals_) == len(m) else None,
        Stat.of([x["logloss"] for x in m]),
    )


def build_table(
    name: str,
    title: str,
    label_header: Sequence[str],
    groups: Sequence[Group],
    *,
    baseline: str | None,
    baseline_label: str | None = None,
    show_logloss: bool = True,
    setting: dict[str, Any] | None = None,
    outside_baseline: Group | None = None,
) -> Table:
    """Aggregate each group (groups without runs are left out); RelaImpr on the headline.

    `outside_baseline`: the baseline's runs when it is not one of the rows.
    """
    stats = {g.key: _row(g) for g in groups if g.metrics}
    base = stats.get(baseline) if baseline is not None else None
    if base is None and outside_baseline is not None and outside_baseline.metrics:
        base = _row(outside_baseline)
    base_auc = base[0].mean if base is not None else None
    rows = tuple(
        Row(
            g.key,
            g.labels,
            *stats[g.key],
            rela_impr_or_none(stats[g.key][0].mean, base_auc),
            g.extra,
        )
        for g in groups
        if g.key in stats
    )
    return Table(
        name=name,
        title=title,
        label_header=tuple(label_header),
        rows=rows,
        baseline=baseline if base is not None else None,
        baseline_label=baseline_label if base is not None else None,
        show_logloss=show_logloss,
        setting=dict(setting or {}),
    )


def render_rich(table: Table, title: str | None = None) -> Any:
    """The table for a terminal (Rich), the footer as its caption."""
    from rich.table import Table as RichTable

    out = RichTable(
        title=title or table.title,
        title_justify="left",
        caption=table.footer(),
        caption_justify="left",
    )
    n_labels = len(table.label_header)
    for i, col in enumerate(table.header()):
        out.add_column(col, justify="left" if i < n_labels else "right")
    for cells in table.cells():
        out.add_row(*cells)
    return out


def write_table(table: Table, out: Path) -> dict[str, Path]:
    """Write `<name>.md` and `<name>.json` into `out`, atomically."""
    md, js = Path(out) / f"{table.name}.md", Path(out) / f"{table.name}.json"
    with atomic_file(md) as tmp:
        tmp.write_text(table.markdown())
    write_json(js, table.to_json())
    return {"markdown": md, "json": js}
