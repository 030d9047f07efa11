"""Confidence bands over seeds: a study has a handful of seeds, so bands use Student's t."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

_T95 = {
    1: 12.706,
    2: 4.303,
    3: 3.182,
    4: 2.776,
    5: 2.571,
    6: 2.447,
    7: 2.365,
    8: 2.306,
    9: 2.262,
    10: 2.228,
    15: 2.131,
    20: 2.086,
    30: 2.042,
}


def t95(dof: int) -> float:
    """Two-sided 95% Student-t quantile (the band over a handful of seeds must not pretend to be
    normal); a dof between tabled values takes the next smaller one's (wider) quantile."""
    known = [d for d in _T95 if d <= dof]
    return _T95[max(known)] if dof <= 30 else 1.96


def mean_band(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, lower, upper) of the 95% t interval of the mean; one value has no width."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, mean, mean
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t95(n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


BAND_COLUMNS = ["mean", "lo", "hi", "n"]


def group_bands(
    df: pd.DataFrame, by: Sequence[str], value: str, means: Sequence[str] = ("remaining_pct",)
) -> pd.DataFrame:
    """Per group of `by` (sorted): `mean_band` of `value` over the group's rows (NaN left out;
    `n` counts the rest) and the plain mean of each column in `means`."""
    rows = []
    for key, g in df.groupby(list(by), sort=True):
        values = [float(v) for v in g[value].dropna()]
        mean, lo, hi = mean_band(values) if values else (math.nan, math.nan, math.nan)
        rows.append(
            {
                **dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True)),
                **{c: float(g[c].mean()) for c in means},
                "mean": mean,
                "lo": lo,
                "hi": hi,
                "n": len(values),
            }
        )
    return pd.DataFrame(rows, columns=[*by, *means, *BAND_COLUMNS])
