"""Mask overlap from the lake's masks table (packed bits per weight tensor, engine/lineage.py
`packed_mask`): the Jaccard index |A ∩ B| / |A ∪ B| per layer between seeds of one
configuration, between two strategies at the same seed and sparsity, and between a lineage's
consecutive rounds. Each comes with the Jaccard two independent uniformly random masks of the same
densities would have on average, p·q / (p + q − p·q): the overlap a mask owes to its sparsity alone."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd

from study.analysis.bands import group_bands

OVERLAP_COLUMNS = ["series", "round", "remaining_pct", "layer", "mean", "lo", "hi", "n", "chance"]


def _bits(packed: bytes) -> np.ndarray:
    return np.frombuffer(packed, dtype=np.uint8)


def jaccard(a: bytes, b: bytes) -> float:
    """|A ∩ B| / |A ∪ B| of two packed masks of one tensor (two empty masks: 1)."""
    x, y = _bits(a), _bits(b)
    union = int(np.bitwise_count(x | y).sum())
    return int(np.bitwise_count(x & y).sum()) / union if union else 1.0


def chance_jaccard(p: float, q: float) -> float:
    """The expected Jaccard of independent uniformly random masks of densities p and q (large
    tensors): E|A ∩ B| = pqN, E|A ∪ B| = (p + q − pq)N."""
    return p * q / (p + q - p * q) if p + q > 0 else 1.0


def _layer_pairs(a: pd.Series, b: pd.Series) -> list[tuple[str, float, float]]:
    """(layer, Jaccard, chance) for every tensor two mask rows share."""
    out = []
    for layer, bits in a["layer_bits"].items():
        other = b["layer_bits"].get(layer)
        if other is None or a["layer_size"][layer] != b["layer_size"][layer]:
            continue
        size = a["layer_size"][layer]
        p, q = a["layer_kept"][layer] / size, b["layer_kept"][layer] / size
        out.append((layer, jaccard(bits, other), chance_jaccard(p, q)))
    return out


def _summarise(records: list[dict], keys: Sequence[str]) -> pd.DataFrame:
    if not records:
        return pd.DataFrame(columns=OVERLAP_COLUMNS)
    return group_bands(pd.DataFrame(records), keys, "jaccard", means=("remaining_pct", "chance"))[OVERLAP_COLUMNS]


def seed_overlap(masks: pd.DataFrame) -> pd.DataFrame:
    """Per (series, round, layer): the Jaccard between the masks of every two seeds of the
    series (one configuration), mean over those pairs with a 95% band."""
    records = []
    for (series, round_), g in masks.groupby(["series", "round"], sort=True):
        for (_, a), (_, b) in itertools.combinations(g.sort_values("seed").iterrows(), 2):
            if a["seed"] == b["seed"]:
                continue  # the same configuration and seed twice (a re-sampled trial): a copy, not a replicate
            for layer, j, chance in _layer_pairs(a, b):
                records.append(
                    {
                        "series": series,
                        "round": round_,
                        "layer": layer,
                        "jaccard": j,
                        "chance": chance,
                        "remaining_pct": (a["remaining_pct"] + b["remaining_pct"]) / 2,
                    }
                )
    return _summarise(records, ["series", "round", "layer"])


def series_overlap(masks: pd.DataFrame, first: str, second: str, tolerance_pct: float = 0.05) -> pd.DataFrame:
    """Per (round of `first`, layer): the Jaccard between series `first` and `second` at the same
    seed and sparsity (both masks keep the same % of weights within `tolerance_pct` points,
    whatever round reached it: a one-shot strategy reaches it in one), mean over seeds with a
    95% band. The series column names the pair."""
    a = masks[masks["series"] == first]
    b = masks[masks["series"] == second]
    both = a.merge(b, on=["study", "seed", "model", "dataset"], suffixes=("_a", "_b"))
    records = []
    for _, row in both.iterrows():
        if abs(row["remaining_pct_a"] - row["remaining_pct_b"]) > tolerance_pct:
            continue
        left = pd.Series({k: row[f"{k}_a"] for k in ("layer_bits", "layer_size", "layer_kept")})
        right = pd.Series({k: row[f"{k}_b"] for k in ("layer_bits", "layer_size", "layer_kept")})
        for layer, j, chance in _layer_pairs(left, right):
            records.append(
                {
                    "series": f"{first} ∩ {second}",
                    "round": row["round_a"],
                    "layer": layer,
                    "jaccard": j,
                    "chance": chance,
                    "remaining_pct": row["remaining_pct_a"],
                }
            )
    return _summarise(records, ["series", "round", "layer"])


def round_overlap(masks: pd.DataFrame) -> pd.DataFrame:
    """Per (series, round r, layer): the Jaccard between a lineage's masks of rounds r − 1 and r,
    mean over seeds with a 95% band. Here `chance` is the nested baseline q / p (densities of r
    and r − 1): a mask inside the previous one (IMP) has exactly that; below it, the method moved
    weights between rounds (pruning at init re-scores θ0 at each sparsity). Branches are left
    out: each of their rounds is drawn afresh from the trunk's."""
    records = []
    trunks = masks[masks["branch"].isna()] if "branch" in masks else masks
    for _, g in trunks.groupby(["series", "study", "trial_id", "lineage_id"], sort=True):
        by_round = {int(r["round"]): r for _, r in g.iterrows()}
        for round_, row in sorted(by_round.items()):
            before = by_round.get(round_ - 1)
            if before is None:
                continue
            for layer, j, _ in _layer_pairs(before, row):
                p, q = before["layer_kept"][layer], row["layer_kept"][layer]
                records.append(
                    {
                        "series": row["series"],
                        "round": round_,
                        "layer": layer,
                        "jaccard": j,
                        "chance": min(p, q) / max(p, q) if max(p, q) else 1.0,
                        "remaining_pct": row["remaining_pct"],
                    }
                )
    return _summarise(records, ["series", "round", "layer"])
