"""A study's trials as the lake records them: searched values from each lineage's config, the
objective recomputed from its rounds (seed means), and Optuna's parameter importance on an
in-memory study built from those rows. Nothing here reads Optuna's own storage."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from types import SimpleNamespace

import optuna
import pandas as pd

from study.analysis.objectives import OBJECTIVES, ObjectiveSpec, RoundPoint, pareto_front, seed_points
from study.app.lake import Lake
from study.errors import SpecError
from study.lake.schema import FAILED_STATUSES, LineageStatus
from study.search.paths import choice_text, get_path
from study.typed_yaml import build


def study_info(lake: Lake, name: str) -> dict | None:
    rows = lake.studies[lake.studies["study"] == name]
    if rows.empty:
        return None
    row = rows.iloc[0]
    spec = json.loads(row["spec_json"])
    return {
        "objective": row["objective"],
        "metrics": list(row["metrics"]),
        "modes": list(row["modes"]),
        "search": json.loads(row["search_json"]),
        "objective_spec": _objective(row["objective"], spec.get("objective", {})),
    }


def _objective(name: str, raw: dict) -> ObjectiveSpec | None:
    """The study's objective as its spec says, or None for one this version does not know (a
    lake written by a newer version): its trials then show no objective values."""
    if name not in OBJECTIVES:
        return None
    try:
        return build(ObjectiveSpec, raw, "objective")
    except SpecError:
        return None


def trial_lineages(lake: Lake, name: str) -> pd.DataFrame:
    """The trunk lineages of a study's Optuna trials (a trial's seeds)."""
    return lake.lineages[
        (lake.lineages["study"] == name)
        & lake.lineages["optuna_trial_number"].notna()
        & lake.lineages["config_json"].map(lambda c: isinstance(c, str))
        & lake.lineages["branch"].isna()
    ]


def trial_points(rounds: pd.DataFrame, seeds: pd.DataFrame) -> list[RoundPoint]:
    """A trial's seed means per round (`seed_points`: the rounds every seed of `seeds`, rows of
    the lineages table, finished), as the live trainable computed them."""
    r = rounds[rounds["trial_id"].isin(seeds["trial_id"])].sort_values("round")
    per_seed = [
        [
            SimpleNamespace(**{**row, "val_error_barrier": _or_none(row["val_error_barrier"])})
            for row in r[r["trial_id"] == trial_id][_POINT_COLUMNS].to_dict("records")
        ]
        for trial_id in sorted(seeds["trial_id"])
    ]
    return seed_points(per_seed)


def study_trials(lake: Lake, name: str, info: dict) -> pd.DataFrame:
    """One row per Optuna trial, from its seeds' trunk lineages (branches are their controls)."""
    lin = trial_lineages(lake, name)
    rounds = lake.rounds[(lake.rounds["study"] == name) & lake.rounds["branch"].isna()]
    obj: ObjectiveSpec | None = info["objective_spec"]
    rows = []
    for number, group in lin.groupby("optuna_trial_number"):
        cfg = json.loads(group["config_json"].iloc[0])
        params = {}
        for pname, pspec in info["search"].items():
            active = all(get_path(cfg, k) in allowed for k, allowed in (pspec.get("when") or {}).items())
            if active:
                params[pname] = choice_text(get_path(cfg, pname))
        points = trial_points(rounds, group)
        statuses = set(group["status"])
        worst = (*FAILED_STATUSES, LineageStatus.RUNNING, LineageStatus.STOPPED)
        status = str(next((s for s in worst if s in statuses), LineageStatus.FINISHED))
        metrics: dict[str, float | None] = {}
        if points and status not in FAILED_STATUSES and obj is not None:  # a failed trial has no objective
            metrics = dict(obj.values(points))
            metrics["test acc (reported)"] = obj.reported_test(points)["test_acc_at_selected"]
        trunk = group.iloc[0]
        rows.append(
            {
                "optuna trial": int(number),
                "configuration": trunk["config_label"],
                "config id": trunk["config_id"],
                "strategy": cfg.get("strategy", str(trunk["strategy"])),
                **params,
                **metrics,
                "seeds": len(group),
                "rounds done": len(points),
                "status": status,
            }
        )
    trials = pd.DataFrame(rows)
    if not trials.empty and len(info["metrics"]) > 1:  # multi-objective: mark the Pareto front
        done = trials.dropna(subset=info["metrics"])
        front = pareto_front([tuple(v) for v in done[info["metrics"]].to_numpy()], info["modes"])
        trials["pareto"] = trials.index.isin(done.index[front])
    return trials


_POINT_COLUMNS = ["round", "remaining_pct", "val_acc", "test_acc", "val_error_barrier", "val_loss"]


def _or_none(value: float) -> float | None:
    return None if pd.isna(value) else value


def _distribution(spec: dict) -> optuna.distributions.BaseDistribution:
    if spec["type"] == "categorical":
        return optuna.distributions.CategoricalDistribution([choice_text(c) for c in spec["choices"]])
    if spec["type"] == "int":
        return optuna.distributions.IntDistribution(
            int(spec["low"]), int(spec["high"]), step=int(spec.get("step") or 1)
        )
    return optuna.distributions.FloatDistribution(
        spec["low"],
        spec["high"],
        log=spec["type"] == "log_float",
        step=spec.get("step") if spec["type"] == "float" else None,
    )


def importance(trials: pd.DataFrame, info: dict) -> tuple[pd.DataFrame, str | None]:
    """Optuna's default importance (PED-ANOVA in Optuna 5) per objective, on finished trials.
    Values are handed to a minimising study, negated where the objective is maximised."""
    metrics, modes = info["metrics"], info["modes"]
    done = trials.dropna(subset=[m for m in metrics if m in trials]) if set(metrics) <= set(trials) else trials.iloc[:0]
    if len(done) < 3:
        return pd.DataFrame(), f"importance needs at least 3 trials with results; {len(done)} so far"
    dists = {name: _distribution(spec) for name, spec in info["search"].items()}
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "a new study created in memory" line
    study = optuna.create_study(directions=["minimize"] * len(metrics))
    for _, row in done.iterrows():
        params = {
            p: (row[p].item() if hasattr(row[p], "item") else row[p]) for p in dists if p in row and pd.notna(row[p])
        }
        values = [(-1 if mode == "max" else 1) * float(row[m]) for m, mode in zip(metrics, modes, strict=True)]
        study.add_trial(
            optuna.trial.create_trial(params=params, distributions={p: dists[p] for p in params}, values=values)
        )
    out = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for i, metric in enumerate(metrics):
                imp = optuna.importance.get_param_importances(study, target=_nth_value(i))
                out += [{"parameter": p, "objective": metric, "importance": v} for p, v in imp.items()]
    except (ValueError, RuntimeError) as e:
        return pd.DataFrame(), f"Optuna could not rank the parameters yet: {e}"
    return pd.DataFrame(out), None


def _nth_value(i: int) -> Callable[[optuna.trial.FrozenTrial], float]:
    return lambda trial: trial.values[i]
