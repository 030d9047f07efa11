"""Instability summaries over seeds (the lake's instability table, engine/instability.py): the
error barrier per lineage configuration and round, and the mean error along the path."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from study.analysis.bands import BAND_COLUMNS, group_bands


def with_rewind_series(df: pd.DataFrame) -> pd.DataFrame:
    """The measured rows (a failed measurement has no barrier), each with a `series` per strategy
    and rewind point (`imp · k=500`: instability asks how the barrier moves with k), and the
    configuration's id when a strategy and k were run in several configurations (`config_id`,
    which the rows carry from their lineages: seeds of one configuration are replicates, other
    configurations are not)."""
    df = df[df["val_error_barrier"].notna()].copy()
    base = [f"{s} · k={k}" for s, k in zip(df["strategy"].astype(str), df["rewind_iteration"], strict=True)]
    df["series"] = base
    configs = df.groupby("series")["config_id"].nunique() if "config_id" in df else None
    if configs is not None and (configs > 1).any():
        names = df["config_label"] if "config_label" in df else df["config_id"]
        df["series"] = [s if configs[s] == 1 else f"{s} · {c}" for s, c in zip(base, names, strict=True)]
    return df


def barrier_bands(
    df: pd.DataFrame, value: str = "test_error_barrier", by: Sequence[str] = ("series", "round")
) -> pd.DataFrame:
    """Per group `by`: the mean over seeds of `value` with its 95% t band, and the mean % remaining."""
    return group_bands(df, by, value)


def rewind_bands(df: pd.DataFrame, value: str = "test_error_barrier") -> pd.DataFrame:
    """`barrier_bands` per strategy, round and rewind point, each line named by its `level`
    (strategy, round and its % remaining): the barrier against k, one line per sparsity."""
    bands = barrier_bands(df, value, by=("strategy", "round", "rewind_iteration"))
    bands["level"] = [
        f"{s} · round {r} ({p:.1f}% left)"
        for s, r, p in zip(bands["strategy"], bands["round"], bands["remaining_pct"], strict=True)
    ]
    return bands


def path_bands(df: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """Per (series, round, α): the mean over seeds of the error at that point of the path, with
    its 95% t band (rows measured on different grids of α are never mixed)."""
    points = df.assign(points=df["alphas"].map(len)).explode(["alphas", f"{split}_error"])
    bands = group_bands(points, ["series", "round", "points", "alphas"], f"{split}_error", means=())
    return bands.rename(columns={"alphas": "alpha"})[["series", "round", "alpha", *BAND_COLUMNS]]
