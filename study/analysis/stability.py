"""Instability summaries over seeds (the lake's instability table, engine/instability.py): the
error barrier per lineage configuration and round, and the mean error along the path."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from study.analysis.bands import mean_band

BAND_COLUMNS = ["mean", "lo", "hi", "n"]


def with_rewind_series(df: pd.DataFrame) -> pd.DataFrame:
    """A `series` per strategy and rewind point (`imp · k=500`): instability asks how the barrier
    moves with k, so k names the line."""
    df = df.copy()
    df["series"] = [f"{s} · k={k}" for s, k in zip(df["strategy"].astype(str), df["rewind_iteration"], strict=True)]
    return df


def barrier_bands(
    df: pd.DataFrame, value: str = "test_error_barrier", by: Sequence[str] = ("series", "round")
) -> pd.DataFrame:
    """Per group `by`: the mean over seeds of `value` with its 95% t band, the mean % remaining
    and the rewind iteration (for a chart against either)."""
    extra = [c for c in ("remaining_pct", "rewind_iteration") if c not in by]
    out = []
    for key, g in df.groupby(list(by), sort=True):
        mean, lo, hi = mean_band(list(g[value]))
        ks = g["rewind_iteration"].unique()
        out.append(
            {
                "remaining_pct": float(g["remaining_pct"].mean()),
                "rewind_iteration": int(ks[0]) if len(ks) == 1 else None,
                **dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True)),
                "mean": mean,
                "lo": lo,
                "hi": hi,
                "n": len(g),
            }
        )
    return pd.DataFrame(out, columns=[*by, *extra, *BAND_COLUMNS])


def path_bands(df: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """Per (series, round, α): the mean over seeds of the error at that point of the path, with
    its 95% t band."""
    rows = []
    for (series, round_), g in df.groupby(["series", "round"], sort=True):
        paths = [list(v) for v in g[f"{split}_error"]]
        for i, alpha in enumerate(g["alphas"].iloc[0]):
            mean, lo, hi = mean_band([p[i] for p in paths])
            rows.append(
                {"series": series, "round": round_, "alpha": alpha, "mean": mean, "lo": lo, "hi": hi, "n": len(paths)}
            )
    return pd.DataFrame(rows, columns=["series", "round", "alpha", *BAND_COLUMNS])
