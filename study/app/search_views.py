"""The data of the standard search views (what Optuna Dashboard, W&B sweeps and TensorBoard's
HParams show first), from the lake alone: the optimisation history with the best so far, the
parallel coordinates of the searched values, the objective after each round of each trial (what
a scheduler such as ASHA sees), a contour of two parameters, and the trials on a timeline with
their compute time. The app's Search page and the report draw them (`app.charts`)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from study.analysis.objectives import OBJECTIVES
from study.app.lake import Lake
from study.app.search import trial_lineages, trial_points

NUMERIC = ("float", "log_float", "int")


def best_trials(trials: pd.DataFrame, metric: str, mode: str) -> pd.Series:
    """Whether each trial is the best one (ties: all of them)."""
    if metric not in trials or trials[metric].isna().all():
        return pd.Series(False, index=trials.index)
    best = trials[metric].max() if mode == "max" else trials[metric].min()
    return trials[metric] == best


def history(trials: pd.DataFrame, metric: str, mode: str) -> pd.DataFrame:
    """Each finished trial's objective in trial order, with the best value so far."""
    done = trials.dropna(subset=[metric]).sort_values("optuna trial") if metric in trials else trials.iloc[:0]
    values = done[metric].astype(float)
    best = values.cummax() if mode == "max" else values.cummin()
    return done[["optuna trial", "configuration", "strategy"]].assign(value=values, best=best)


def _position(value: object, spec: dict) -> float | None:
    """Where `value` sits on its parameter's axis, 0 to 1 over the searched range (a log-searched
    parameter on a log scale; a category at its index among the choices)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    kind = spec["type"]
    if kind == "categorical":
        choices = [str(c) for c in spec["choices"]]
        return choices.index(str(value)) / max(len(choices) - 1, 1) if str(value) in choices else None
    low, high, v = float(spec["low"]), float(spec["high"]), float(value)  # type: ignore[arg-type]
    if kind == "log_float":
        low, high, v = math.log10(low), math.log10(high), math.log10(v)
    return (v - low) / (high - low) if high > low else 0.5


def axis_ticks(spec: dict) -> list[tuple[float, str]]:
    """(position, text) of an axis' labels: its range's ends, or each category."""
    from study.analysis.configs import sig

    if spec["type"] == "categorical":
        return [(i / max(len(spec["choices"]) - 1, 1), str(c)) for i, c in enumerate(spec["choices"])]
    return [(0.0, sig(spec["low"], 2)), (1.0, sig(spec["high"], 2))]


def parallel(trials: pd.DataFrame, search: dict, metric: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Parallel coordinates: one line per finished trial across an axis per searched parameter
    and one for the objective, each scaled 0 to 1 (log-searched ones on a log scale). Returns the
    lines (long: trial, axis, position, value text) and the axis labels."""
    done = trials.dropna(subset=[metric]) if metric in trials else trials.iloc[:0]
    axes = [p for p in search if p in trials]
    rows, ticks = [], []
    lo, hi = (float(done[metric].min()), float(done[metric].max())) if len(done) else (0.0, 1.0)
    for order, axis in enumerate([*axes, metric]):
        for _, t in done.iterrows():
            pos: float | None
            if axis == metric:
                pos = (float(t[metric]) - lo) / (hi - lo) if hi > lo else 0.5
            else:
                pos = _position(t[axis], search[axis])
            if pos is not None:
                rows.append(
                    {
                        "optuna trial": int(t["optuna trial"]),
                        "configuration": t["configuration"],
                        "strategy": t["strategy"],
                        "objective": float(t[metric]),
                        "axis": axis,
                        "order": order,
                        "position": pos,
                        "value": str(t[axis]),
                    }
                )
        if axis == metric:
            ticks += [{"axis": axis, "order": order, "position": p, "text": f"{v:.3g}"} for p, v in ((0, lo), (1, hi))]
        else:
            ticks += [{"axis": axis, "order": order, "position": p, "text": x} for p, x in axis_ticks(search[axis])]
    return pd.DataFrame(rows), pd.DataFrame(ticks)


def per_round(lake: Lake, name: str, info: dict) -> pd.DataFrame:
    """Each trial's objective after each round every seed finished, from the rounds seen so far
    (the value a scheduler such as ASHA compares trials on)."""
    obj = info["objective_spec"]
    if info["objective"] not in OBJECTIVES or obj is None:
        return pd.DataFrame()
    lin = trial_lineages(lake, name)
    rounds = lake.rounds[(lake.rounds["study"] == name) & lake.rounds["branch"].isna()]
    metric = info["metrics"][0]
    rows = []
    for number, group in lin.groupby("optuna_trial_number"):
        if set(group["status"]) & {"failed", "diverged", "degenerate"}:
            continue
        points = trial_points(rounds, group)
        for i in range(len(points)):
            values = obj.values(points[: i + 1])
            rows.append(
                {
                    "optuna trial": int(number),
                    "configuration": group["config_label"].iloc[0],
                    "strategy": str(group["strategy"].iloc[0]),
                    "round": i,
                    "remaining_pct": points[i].remaining_pct,
                    "value": values[metric],
                }
            )
    return pd.DataFrame(rows)


def contour_params(trials: pd.DataFrame, search: dict, importance: pd.DataFrame | None = None) -> list[str]:
    """The two numeric searched parameters a contour shows: the most important ones, else the
    first two (fewer than two: no contour)."""
    numeric = [p for p, spec in search.items() if spec["type"] in NUMERIC and p in trials and trials[p].nunique() > 1]
    if importance is not None and not importance.empty:
        ranked = importance.sort_values("importance", ascending=False)["parameter"].tolist()
        numeric.sort(key=lambda p: ranked.index(p) if p in ranked else len(ranked))
    return numeric[:2]


def contour(trials: pd.DataFrame, search: dict, x: str, y: str, metric: str, cells: int = 20) -> pd.DataFrame:
    """The objective over the plane of parameters `x` and `y`, between the trials: a `cells` x
    `cells` grid over the searched ranges (log-searched ones on a log scale), each cell the
    inverse-distance-weighted mean of the finished trials' values (distances in the 0-1 scaled
    plane). Columns x, x2, y, y2 (each cell's edges, in the parameters' units) and value."""
    done = trials.dropna(subset=[metric, x, y])
    if len(done) < 3:
        return pd.DataFrame(columns=["x", "x2", "y", "y2", "value"])
    px = np.array([_position(v, search[x]) for v in done[x]], dtype=float)
    py = np.array([_position(v, search[y]) for v in done[y]], dtype=float)
    values = done[metric].to_numpy(dtype=float)
    edges = np.linspace(0.0, 1.0, cells + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    gx, gy = np.meshgrid(centres, centres, indexing="ij")
    dist2 = (gx[..., None] - px) ** 2 + (gy[..., None] - py) ** 2
    weights = 1.0 / np.maximum(dist2, 1e-9)
    grid = (weights * values).sum(-1) / weights.sum(-1)

    def unscale(pos: np.ndarray, spec: dict) -> np.ndarray:
        low, high = float(spec["low"]), float(spec["high"])
        if spec["type"] == "log_float":
            return 10 ** (math.log10(low) + pos * (math.log10(high) - math.log10(low)))
        return low + pos * (high - low)

    ex, ey = unscale(edges, search[x]), unscale(edges, search[y])
    return pd.DataFrame(
        [
            {"x": ex[i], "x2": ex[i + 1], "y": ey[j], "y2": ey[j + 1], "value": float(grid[i, j])}
            for i in range(cells)
            for j in range(cells)
        ]
    )


def timeline(lake: Lake, name: str) -> pd.DataFrame:
    """One bar per trial: from its first lineage's start to its last status, with the compute
    time of all its lineages' rounds (trunks and branches; a packed round counts its pack's)."""
    lin = lake.lineages[(lake.lineages["study"] == name) & lake.lineages["optuna_trial_number"].notna()]
    if lin.empty or lin["started_at"].isna().all():
        return pd.DataFrame()
    rounds = lake.rounds[lake.rounds["study"] == name]
    rows = []
    for number, group in lin.groupby("optuna_trial_number"):
        mine = rounds[rounds["trial_id"].isin(group["trial_id"])]
        trunk = group[group["branch"].isna()]
        first = trunk.iloc[0] if len(trunk) else group.iloc[0]
        end = group["updated_at"].max()
        if len(mine) and "written_at" in mine and mine["written_at"].notna().any():
            end = max(end, mine["written_at"].max()) if pd.notna(end) else mine["written_at"].max()
        rows.append(
            {
                "optuna trial": int(number),
                "configuration": first["config_label"],
                "strategy": str(first["strategy"]),
                "start": group["started_at"].min(),
                "end": end,
                "compute s": float(mine["wall_seconds"].sum()),
                "lineages": len(group),
                "status": ", ".join(sorted(set(group["status"].dropna()))),
            }
        )
    out = pd.DataFrame(rows)
    out["wall s"] = (out["end"] - out["start"]).dt.total_seconds()
    return out.sort_values("optuna trial")
