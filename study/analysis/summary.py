"""The per-study summary that `study results` prints."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from study.analysis.configs import config_id, config_labels
from study.analysis.objectives import ObjectiveSpec, RoundPoint
from study.analysis.paired import paired_differences, share_dense_rounds
from study.lake.reader import excluded_lineages, read_lineages, read_rounds

_COLUMNS = pa.schema(
    [
        ("study", pa.string()),
        ("strategy", pa.string()),
        ("model", pa.string()),
        ("dataset", pa.string()),
        ("trial_id", pa.string()),
        ("lineage_id", pa.string()),
        ("round", pa.int64()),
        ("branch", pa.string()),
        ("trunk_lineage_id", pa.string()),
        ("remaining_pct", pa.float64()),
        ("val_acc", pa.float64()),
        ("test_acc", pa.float64()),
    ]
)


TICKET_TOLERANCE = 0.01  # a ticket: the sparsest round within 1 point of dense (the column header says so)
TICKET = ObjectiveSpec("sparsest_within", TICKET_TOLERANCE)


@dataclass(frozen=True)
class Summary:
    """What `study results` prints: one row per strategy, the paired controls, unreadable files."""

    strategies: list[dict]
    paired: list[dict]
    skipped: list[str]


def summarize(root: str | Path, study: str | None = None) -> Summary:
    """One row per (study, strategy, model, dataset) over its healthy lineages: lineages by
    status, rounds, the dense round's accuracy, and the sparsest round whose seed-mean validation
    accuracy stays within 1 point of dense, with that round's test accuracy reported beside it.
    Failed, diverged and degenerate lineages (and the sibling seeds of a failed searched trial)
    are counted but left out of every number. `paired` holds, per trunk and branch and round,
    the test-accuracy difference trunk − branch with its 95% band over seeds."""
    rounds = read_rounds(root, study)
    lineages = read_lineages(root, study)
    skipped = rounds.skipped + lineages.skipped
    if rounds.table.num_rows == 0 and lineages.table.num_rows == 0:
        return Summary([], [], skipped)
    df = rounds.table.select(_COLUMNS.names).cast(_COLUMNS).to_pandas()
    df = share_dense_rounds(df)
    lin = lineages.table.to_pandas() if lineages.table.num_rows else None
    bad = excluded_lineages(lin.to_dict("records")) if lin is not None else set()
    if bad:
        keys = zip(df["study"], df["trial_id"], df["lineage_id"], strict=True)
        df = df[[k not in bad for k in keys]]
    out = []
    for key, group in df.groupby(["study", "strategy", "model", "dataset"], sort=True):
        by_round = group.groupby("round").agg(
            remaining=("remaining_pct", "mean"), val=("val_acc", "mean"), test=("test_acc", "mean")
        )
        points = [
            RoundPoint(r, v, t)
            for r, v, t in zip(by_round["remaining"], by_round["val"], by_round["test"], strict=True)
        ]
        has_dense = 0 in by_round.index
        chosen = TICKET.selected(points) if has_dense else None
        status = ""
        if lin is not None:
            sel = lin[(lin["study"].astype(str) == key[0]) & (lin["strategy"].astype(str) == key[1])]
            status = " ".join(f"{n} {s}" for s, n in sel["status"].value_counts().items())
        out.append(
            {
                "study": key[0],
                "strategy": key[1],
                "model": key[2],
                "dataset": key[3],
                "lineages": status or str(group["trial_id"].nunique()),
                "rounds": len(group),
                "min %left": f"{group['remaining_pct'].min():.1f}",
                "dense val acc": f"{points[0].val_acc:.4f}" if has_dense else "-",
                "dense test acc": f"{points[0].test_acc:.4f}" if has_dense else "-",
                "sparsest %left, val ≤1pt drop": f"{points[chosen].remaining_pct:.1f}" if chosen is not None else "-",
                "test acc there": f"{points[chosen].test_acc:.4f}" if chosen is not None else "-",
            }
        )
    if lin is not None:
        ids = lin["config_json"].map(config_id)
        labels = config_labels(dict(zip(ids, lin["config_json"], strict=True)))
        configs = lin[["study", "trial_id", "lineage_id"]].assign(config=ids.map(labels))
        df = df.merge(configs, on=["study", "trial_id", "lineage_id"], how="left").fillna({"config": "?"})
    else:
        df = df.assign(config="?")
    paired = [
        {
            "study": study_name,
            "model": p["model"],
            "dataset": p["dataset"],
            "config": p["config"],
            "trunk − branch": p["pair"],
            "round": p["round"],
            "%left": f"{p['remaining_pct']:.1f}",
            "test acc difference": f"{p['mean']:+.4f}",
            "95% band over seeds": f"[{p['lo']:+.4f}, {p['hi']:+.4f}]",
            "seeds": p["n"],
        }
        for study_name, group in df.groupby("study", sort=True)
        for p in paired_differences(group, by=("strategy", "model", "dataset", "config")).to_dict("records")
    ]
    return Summary(out, paired, skipped)
