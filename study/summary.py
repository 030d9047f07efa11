"""The per-study summary that `study results` prints."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from study.objectives import RoundPoint, sparsest_within
from study.results import read_lineages, read_rounds


def summarize(root: str | Path, study: str | None = None) -> tuple[list[dict], list[str]]:
    """One row per (study, strategy, model, dataset): lineages by status, rounds, the dense test
    accuracy and the sparsest round whose mean test accuracy stays within 1 point of dense."""
    rounds = read_rounds(root, study)
    lineages = read_lineages(root, study)
    skipped = rounds.skipped + lineages.skipped
    if rounds.table.num_rows == 0 and lineages.table.num_rows == 0:
        return [], skipped
    r = rounds.table.select(["study", "strategy", "model", "dataset", "trial_id", "round", "remaining_pct",
                             "test_acc"]).cast(pa.schema([("study", pa.string()), ("strategy", pa.string()),
                             ("model", pa.string()), ("dataset", pa.string()), ("trial_id", pa.string()),
                             ("round", pa.int64()), ("remaining_pct", pa.float64()), ("test_acc", pa.float64())]))
    df = r.to_pandas()
    lin = lineages.table.to_pandas() if lineages.table.num_rows else None
    out = []
    keys = ["study", "strategy", "model", "dataset"]
    for key, group in df.groupby(keys, sort=True):
        by_round = group.groupby("round").agg(remaining=("remaining_pct", "mean"), acc=("test_acc", "mean"))
        dense = by_round["acc"].get(0)
        points = [RoundPoint(r, a) for r, a in zip(by_round["remaining"], by_round["acc"])]
        status = ""
        if lin is not None:
            sel = lin[(lin["study"].astype(str) == key[0]) & (lin["strategy"].astype(str) == key[1])]
            counts = sel["status"].value_counts()
            status = " ".join(f"{n} {s}" for s, n in counts.items())
        out.append({
            "study": key[0], "strategy": key[1], "model": key[2], "dataset": key[3],
            "lineages": status or str(group["trial_id"].nunique()),
            "rounds": len(group),
            "min %left": f"{group['remaining_pct'].min():.1f}",
            "dense acc": "-" if dense is None else f"{dense:.4f}",
            "sparsest ≤1pt drop": f"{sparsest_within(points, 0.01):.1f}" if dense is not None else "-",
        })
    return out, skipped
