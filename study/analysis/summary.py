"""What `study results` prints: per study, one row per configuration (never an average over
configurations), its study's findings (`analysis.findings`) and the paired controls."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from study.analysis.findings import Findings, study_findings
from study.analysis.objectives import ObjectiveSpec
from study.analysis.paired import paired_differences, share_dense_rounds
from study.lake.reader import excluded_lineages

TICKET_TOLERANCE = 0.01  # a ticket: the sparsest round within 1 point of dense (the column header says so)


@dataclass(frozen=True)
class StudyOverview:
    """What a study is: its objective and direction, its searched space, its trials so far."""

    name: str
    objective: str | None
    mode: str | None
    params: ObjectiveSpec
    search: dict[str, dict]
    budget: int | None
    seeds: list[int]
    trials_done: int
    trials_failed: int
    trials_running: int


@dataclass(frozen=True)
class Summary:
    """Per configuration of each study (raw values), the paired controls, each study's findings
    and overview, and the files the reader skipped."""

    configurations: list[dict[str, Any]]
    paired: list[dict[str, Any]]
    skipped: list[str]
    findings: dict[str, Findings] = field(default_factory=dict)
    studies: dict[str, StudyOverview] = field(default_factory=dict)


def _status_counts(lineages: pd.DataFrame) -> str:
    return ", ".join(f"{n} {s}" for s, n in lineages["status"].value_counts().sort_index().items())


def overview(name: str, studies: pd.DataFrame, lineages: pd.DataFrame) -> StudyOverview:
    """A study's objective, space and trial counts (a trial: its trunk lineages by Optuna trial
    number; failed when one of them failed, running while one runs)."""
    row = studies[studies["study"] == name]
    spec = json.loads(row["spec_json"].iloc[0]) if len(row) and isinstance(row["spec_json"].iloc[0], str) else {}
    obj = spec.get("objective", {})
    params = ObjectiveSpec(
        str(obj.get("name", "sparsest_within")),
        obj.get("tolerance", TICKET_TOLERANCE),
        obj.get("target_remaining"),
        obj.get("max_barrier"),
    )
    lin = lineages[(lineages["study"] == name) & lineages["branch"].isna()] if len(lineages) else lineages
    done = failed = running = 0
    if len(lin):
        for _, g in lin[lin["optuna_trial_number"].notna()].groupby("optuna_trial_number"):
            statuses = set(g["status"])
            if statuses & {"failed", "diverged", "degenerate"}:
                failed += 1
            elif "running" in statuses:
                running += 1
            else:
                done += 1
    modes = row["modes"].iloc[0] if len(row) else None
    return StudyOverview(
        name,
        str(row["objective"].iloc[0]) if len(row) else None,
        str(modes[0]) if modes is not None and len(modes) else None,
        params,
        json.loads(row["search_json"].iloc[0]) if len(row) and isinstance(row["search_json"].iloc[0], str) else {},
        spec.get("budget", {}).get("num_samples"),
        list(spec.get("seeds", [])),
        done,
        failed,
        running,
    )


def healthy_rounds(rounds: pd.DataFrame, lineages: pd.DataFrame) -> pd.DataFrame:
    """`rounds` without failed, diverged and degenerate lineages (and a failed trial's sibling
    seeds), each branch given its trunk's dense round."""
    bad = excluded_lineages(lineages.to_dict("records")) if len(lineages) else set()
    if bad and len(rounds):
        keys = zip(rounds["study"], rounds["trial_id"], rounds["lineage_id"], strict=True)
        rounds = rounds[[k not in bad for k in keys]]
    return share_dense_rounds(rounds)


def study_findings_of(
    rounds: pd.DataFrame, lineages: pd.DataFrame, studies: pd.DataFrame, name: str
) -> tuple[Findings, StudyOverview]:
    """One study's findings and overview from the lake's frames (rounds: healthy, dense rounds shared)."""
    info = overview(name, studies, lineages)
    lin = lineages[lineages["study"] == name]
    configs = dict(zip(lin["config_id"], lin["config_json"], strict=True))
    rows = rounds[rounds["study"] == name]
    return study_findings(rows, configs, info.params, info.search, info.trials_done), info


def summarize(rounds: pd.DataFrame, lineages: pd.DataFrame, studies: pd.DataFrame, skipped: list[str]) -> Summary:
    """The summary of the lake's frames (`app.lake.Lake`: rounds and lineages with `config_id` and
    `config_label`). Failed lineages are counted but left out of every number."""
    configurations: list[dict[str, Any]] = []
    paired: list[dict[str, Any]] = []
    findings: dict[str, Findings] = {}
    overviews: dict[str, StudyOverview] = {}
    if rounds.empty:
        return Summary([], [], skipped)
    healthy = healthy_rounds(rounds, lineages)
    names = set(healthy["study"].astype(str)) | (set(lineages["study"].astype(str)) if len(lineages) else set())
    for name in sorted(names):
        rows = healthy[healthy["study"].astype(str) == name]
        found, info = study_findings_of(rows, lineages, studies, name)
        findings[name], overviews[name] = found, info
        lin = lineages[lineages["study"] == name]
        for c in found.configurations:
            mine = rows[(rows["config_id"] == c.config_id) & (rows["strategy"].astype(str) == c.strategy)]
            status = lin[(lin["config_id"] == c.config_id) & (lin["strategy"].astype(str) == c.strategy)]
            t = c.ticket
            configurations.append(
                {
                    "study": name,
                    "model": str(mine["model"].iloc[0]),
                    "dataset": str(mine["dataset"].iloc[0]),
                    "configuration": c.label,
                    "id": c.config_id,
                    "strategy": c.strategy,
                    "control": c.branch,
                    "lineages": _status_counts(status) if len(status) else str(mine["trial_id"].nunique()),
                    "seeds": c.seeds,
                    "rounds": int(mine["round"].max()) + 1,
                    "objective (val)": None if c.branch else c.value,
                    "dense val acc": _at(mine, 0, "val_acc"),
                    "dense test acc": _at(mine, 0, "test_acc"),
                    "ticket % left (val)": None if t is None else t.remaining_pct,
                    "ticket round": None if t is None else t.round,
                    "at last round": None if t is None else t.at_last_round,
                    "ticket test acc": None if t is None else t.test.mean,
                    "test 95% lo": None if t is None or t.test.n < 2 else t.test.lo,
                    "test 95% hi": None if t is None or t.test.n < 2 else t.test.hi,
                }
            )
        shown = {(c.config_id, c.strategy) for c in found.configurations}
        for (cid, strategy), g in lin.groupby(["config_id", "strategy"], sort=True):
            if (cid, str(strategy)) in shown:
                continue  # a configuration whose every lineage failed: counted, with no numbers
            configurations.append(
                {
                    "study": name,
                    "model": str(g["model"].iloc[0]),
                    "dataset": str(g["dataset"].iloc[0]),
                    "configuration": str(g["config_label"].iloc[0]),
                    "id": cid,
                    "strategy": str(strategy),
                    "control": bool(g["branch"].notna().any()),
                    "lineages": _status_counts(g),
                    "seeds": 0,
                    **dict.fromkeys(_NUMBERS),
                }
            )
        for p in paired_differences(rows, "test_acc", by=("config_label", "model", "dataset")).to_dict("records"):
            paired.append(
                {
                    "study": name,
                    "model": p["model"],
                    "dataset": p["dataset"],
                    "trunk − branch": p["pair"],
                    "round": int(p["round"]),
                    "% left": p["remaining_pct"],
                    "test acc difference": p["mean"],
                    "95% lo": p["lo"] if p["n"] > 1 else None,
                    "95% hi": p["hi"] if p["n"] > 1 else None,
                    "seeds": int(p["n"]),
                }
            )
    return Summary(configurations, paired, skipped, findings, overviews)


_NUMBERS = (
    "rounds",
    "objective (val)",
    "dense val acc",
    "dense test acc",
    "ticket % left (val)",
    "ticket round",
    "at last round",
    "ticket test acc",
    "test 95% lo",
    "test 95% hi",
)


def _at(rows: pd.DataFrame, round_: int, column: str) -> float | None:
    """The seed mean of `column` at `round_` (None: no such round)."""
    values = rows.loc[rows["round"] == round_, column].dropna()
    return float(values.mean()) if len(values) else None
