"""Paired differences between a trunk and its branches (engine/branches.py).

A branch's row and its trunk's row of the same round share the seed, the round's starting point
and the data order; only what the branch changes differs. So the difference trunk − branch is
taken per (trial, round) first and the band is over those differences, which is far tighter than
the difference of two bands over independent lineages."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from study.analysis.bands import group_bands

VALUE_COLUMNS = ["pair", "round", "remaining_pct", "mean", "lo", "hi", "n"]


def paired_differences(rounds: pd.DataFrame, value: str = "test_acc", by: Sequence[str] = ("series",)) -> pd.DataFrame:
    """Per (trunk group `by`, branch, round): the mean over seeds of trunk − branch in `value`,
    its 95% t band, the number of pairs and the trunk's mean % remaining. `by` must tell
    configurations apart (the app's `series`, or strategy, model, dataset and config id);
    `pair` names the pair by the first of them ("imp − imp.random_reinit"). Rows are the
    healthy rounds (failed lineages already left out); a branch row whose trunk row is missing
    pairs with nothing and is left out, and so is a NaN difference."""
    columns = [*by, *VALUE_COLUMNS]
    if "branch" not in rounds.columns or rounds.empty:
        return pd.DataFrame(columns=columns)
    rounds = rounds[rounds["round"] > 0]  # the dense round is the trunk's and its branches' alike
    is_branch = rounds["branch"].notna()
    trunks, branches = rounds[~is_branch], rounds[is_branch]
    keys = ["study", "trial_id", "round"]
    pairs = trunks.merge(
        branches[[*keys, "trunk_lineage_id", "branch", "strategy", value]].rename(
            columns={"strategy": "branch_strategy", value: "branch_value"}
        ),
        left_on=[*keys, "lineage_id"],
        right_on=[*keys, "trunk_lineage_id"],
    )
    pairs = pairs.assign(diff=pairs[value] - pairs["branch_value"]).dropna(subset=["diff"])
    if pairs.empty:
        return pd.DataFrame(columns=columns)
    bands = group_bands(pairs, [*by, "branch_strategy", "round"], "diff")
    bands["pair"] = [f"{g} − {b}" for g, b in zip(bands[by[0]], bands["branch_strategy"], strict=True)]
    return bands.astype({"round": int})[columns].reset_index(drop=True)


def share_dense_rounds(rounds: pd.DataFrame) -> pd.DataFrame:
    """The rows with each branch's round 0 filled in: a branch grows from its trunk's pruning
    rounds, so its dense round is its trunk's (the lake holds it once, as the trunk's row). The
    copies take the branch's identity (strategy, lineage, branch, trunk), so a branch's curve
    starts at 100% and its tickets are measured against the dense network it grew from."""
    if "branch" not in rounds.columns or rounds.empty or rounds["branch"].isna().all():
        return rounds
    branches = rounds[rounds["branch"].notna()]
    has_dense = set(
        zip(
            branches.loc[branches["round"] == 0, "trial_id"],
            branches.loc[branches["round"] == 0, "lineage_id"],
            strict=True,
        )
    )
    heads = branches.drop_duplicates(["study", "trial_id", "lineage_id"])
    heads = heads[[(t, lin) not in has_dense for t, lin in zip(heads["trial_id"], heads["lineage_id"], strict=True)]]
    named = [c for c in ("config_label", "series") if c in rounds.columns]  # a branch's name is its own
    identity = ["strategy", "lineage_id", "branch", "trunk_lineage_id", *named]
    dense = rounds[(rounds["round"] == 0) & rounds["branch"].isna()].drop(
        columns=["strategy", "branch", "trunk_lineage_id", *named]
    )
    copies = dense.rename(columns={"lineage_id": "trunk_lineage_id"}).merge(
        heads[["study", "trial_id", *identity]], on=["study", "trial_id", "trunk_lineage_id"]
    )
    return pd.concat([rounds, copies[rounds.columns]], ignore_index=True)
