"""What `study results` and `study plan` print, as `cli_tables.Output`s (the same rows for the
table, csv and json)."""

from __future__ import annotations

import shlex
from typing import Any

from study.analysis.configs import sig
from study.analysis.findings import Findings, pct
from study.analysis.summary import StudyOverview, Summary
from study.cli_tables import Column, Output, number, sig3


def _yes_no(value: Any) -> str:
    return "-" if value is None else ("yes" if value else "no")


def configuration_table(summary: Summary, root: str) -> Output:
    """One row per configuration, never averaged with another (its paired controls are in
    `paired_table`)."""
    columns = [
        Column("study", identifies=True),
        Column("model", identifies=True),
        Column("dataset", identifies=True),
        Column("configuration", identifies=True, foldable=False),
        Column("id", identifies=True, foldable=False),
        Column("lineages"),
        Column("rounds"),
        Column("objective (val)", text=sig3),
        Column("dense val acc", table=False),
        Column("dense test acc"),
        Column("ticket % left (val)", text=sig3),
        Column("ticket round", cell=lambda r: f"{number(r['ticket round'])}{' last' if r['at last round'] else ''}"),
        Column("at last round", text=_yes_no, table=False),
        Column("ticket test acc"),
        Column("test 95% lo"),
        Column("test 95% hi"),
    ]
    rows = [[c[col.name] for col in columns] for c in summary.configurations if not c["control"]]
    if all(r[7] is None or r[7] == r[10] for r in rows):  # sparsest_within: the objective is the ticket's % left
        columns.pop(7)
        rows = [r[:7] + r[8:] for r in rows]
    title = (
        f"results in {root}: one row per configuration; ticket = the sparsest round within the tolerance of dense "
        f"on validation (val: selects; test: reported)"
    )
    return Output(title, columns, rows, key="configurations")


def paired_table(summary: Summary) -> Output:
    columns = [
        Column("study", identifies=True),
        Column("model", identifies=True),
        Column("dataset", identifies=True),
        Column("trunk − branch", identifies=True, foldable=False),
        Column("round"),
        Column("% left", text=sig3),
        Column("test acc difference", text=lambda v: "-" if v is None else f"{v:+.3f}"),
        Column("95% lo", text=lambda v: "-" if v is None else f"{v:+.3f}"),
        Column("95% hi", text=lambda v: "-" if v is None else f"{v:+.3f}"),
        Column("seeds"),
    ]
    rows = [[p[c.name] for c in columns] for p in summary.paired]
    return Output("paired controls: trunk − branch, per seed and round (test acc, reported)", columns, rows, "paired")


def _distribution(spec: dict) -> str:
    kind = spec.get("type")
    when = spec.get("when")
    cond = f" when {', '.join(f'{k} in {v}' for k, v in when.items())}" if when else ""
    if kind == "categorical":
        return f"one of {', '.join(str(c) for c in spec['choices'])}{cond}"
    scale = "log-uniform" if kind == "log_float" else ("integer" if kind == "int" else "uniform")

    def value(v: Any) -> str:
        return str(int(v)) if kind == "int" else sig(v, 3)

    step = f" step {value(spec['step'])}" if spec.get("step") else ""
    return f"{scale} in [{value(spec['low'])}, {value(spec['high'])}]{step}{cond}"


def study_lines(info: StudyOverview, findings: Findings | None, root: str) -> list[str]:
    """`study results --study`: the objective and its direction, the searched space, the trials
    and the findings."""
    direction = {"min": "lower is better", "max": "higher is better"}.get(info.mode or "", "")
    out = [f"study {info.name}"]
    if info.objective:
        points = info.params.tolerance * 100
        tolerance = f", tolerance {points:g} point{'s' * (points != 1)} of dense" if "within" in info.objective else ""
        out.append(f"objective: {info.objective} ({info.mode}: {direction}{tolerance}), on validation data")
        budget = f" of {info.budget}" if info.budget else ""
        out.append(
            f"trials: {info.trials_done} done{budget}, {info.trials_failed} failed, {info.trials_running} running; "
            f"seeds {', '.join(str(s) for s in info.seeds) or '-'}"
        )
        out.append("searched:")
        out += [f"  {path}: {_distribution(spec)}" for path, spec in info.search.items()]
    else:
        out.append("not a searched study (its lineages were run one by one); tickets within 1 point of dense")
    if findings is not None:
        out.append("")
        out += findings.lines()
    return out


def open_commands(name: str, root: str) -> list[str]:
    """How to open a study's report and the app on its lake (printed whole: they are copied)."""
    quoted = shlex.quote(root)
    return [
        f"report: study report {shlex.quote(name)} --results {quoted} --out {shlex.quote(name)}.html",
        f"app:    streamlit run app.py -- --root {quoted}",
    ]


def plan_tables(groups: list[dict[str, Any]], rounds: list[dict[str, Any]], title: str) -> list[Output]:
    """`study plan`: one row per pruning group (its layers when it pools several; its weights,
    rate and what the last round keeps), and one per round (% remaining, weights kept,
    iterations, estimated minutes when measured)."""
    layer_columns = [
        Column("group", identifies=True, foldable=False),
        Column("layers", foldable=False),
        Column("weights", foldable=False),
        Column("rate per round", text=lambda v: "-" if v is None else f"{v:.2%}".replace(".00%", "%"), foldable=False),
        Column("kept at last round", foldable=False),
        Column("% kept at last round", text=sig3, foldable=False),
        Column("kept per round", table=False),
    ]
    layer_rows = [[g[c.name] for c in layer_columns] for g in groups]
    if all(g["group"] == g["layers"] for g in groups):  # layerwise: a group is its layer
        layer_columns.pop(1)
        layer_rows = [r[:1] + r[2:] for r in layer_rows]
    round_columns = [
        Column("round", foldable=False),
        Column("% remaining", text=sig3, foldable=False),
        Column("weights kept", foldable=False),
        Column("iterations", foldable=False),
        Column("est. minutes", text=sig3, foldable=False),
    ]
    round_rows = [[r[c.name] for c in round_columns] for r in rounds]
    if all(r[-1] is None for r in round_rows):
        round_columns.pop()
        round_rows = [r[:-1] for r in round_rows]
    return [
        Output(f"{title}: pruning groups", layer_columns, layer_rows, key="groups"),
        Output(f"{title}: rounds", round_columns, round_rows, key="rounds"),
    ]


def ticket_sentence(findings: Findings) -> str:
    """One line for `study tune`'s end: the best configuration's ticket."""
    best = findings.best
    if best is None or best.ticket is None:
        return ""
    t = best.ticket
    return f"ticket of the best configuration: {pct(t.remaining_pct)} of weights left at round {t.round}"
