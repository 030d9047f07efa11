"""What the app knows of the results lake: read with the canonical schemas (Parquet only), turned
into pandas frames, and the aggregations every page shares (series, seed means, bands)."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa

from study.analysis.bands import group_bands
from study.analysis.configs import config_id, config_labels
from study.lake.incremental import IncrementalLake
from study.lake.reader import LakeRead, read_table
from study.lake.schema import TABLES, LineageStatus
from study.lake.store import store_for

FILTERS = ("study", "model", "dataset", "strategy")


@dataclass
class Lake:
    root: str
    exists: bool
    rounds_table: pa.Table
    rounds: pd.DataFrame
    lineages: pd.DataFrame
    studies: pd.DataFrame
    instability: pd.DataFrame
    masks: pd.DataFrame
    skipped: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self.rounds.empty


def _plain(table: pa.Table) -> pd.DataFrame:
    df = table.to_pandas()
    for name in df.columns:
        if isinstance(df[name].dtype, pd.CategoricalDtype):
            df[name] = df[name].astype(str)
        elif pa.types.is_map(table.schema.field(name).type):
            df[name] = df[name].map(lambda v: dict(v) if v is not None else None)
    return df


def load_lake(root: str | Path, study: str | None = None) -> Lake:
    """The whole lake (or one study's part of it), read in full."""
    return lake_from_reads(root, {kind: read_table(root, kind, study) for kind in TABLES})


def lake_from_reads(root: str | Path, reads: dict[str, LakeRead]) -> Lake:
    """The app's frames from one read of every table (`schema.TABLES`)."""
    root = str(root)
    frames = {kind: _plain(read.table) for kind, read in reads.items()}
    lin = frames["lineages"]
    lin["config_id"] = lin["config_json"].map(config_id)
    labels = config_labels(lin.to_dict("records"), searched_spaces(frames["studies"]))
    lin["config_label"] = [
        labels[(s, k, c)] for s, k, c in zip(lin["study"], lin["strategy"], lin["config_id"], strict=True)
    ]
    r = frames["rounds"].merge(
        lin[["study", "trial_id", "lineage_id", "config_id", "config_label", "optuna_trial_number", "status"]],
        on=["study", "trial_id", "lineage_id"],
        how="left",
    )
    r["config_id"] = r["config_id"].fillna(r["lineage_id"].str[-6:])
    r["config_label"] = r["config_label"].fillna(r["strategy"].astype(str) + " " + r["config_id"])
    r["row"] = range(len(r))
    return Lake(
        root,
        store_for(root).is_dir(root),
        reads["rounds"].table,
        r,
        lin,
        frames["studies"],
        with_config(frames["instability"], lin),
        with_config(frames["masks"], lin),
        [s for read in reads.values() for s in read.skipped],
    )


def searched_spaces(studies: pd.DataFrame) -> dict[str, dict]:
    """Per study, its searched parameters (dotted path -> distribution and `when:`)."""
    return {
        str(s): json.loads(text)
        for s, text in zip(studies.get("study", []), studies.get("search_json", []), strict=True)
        if isinstance(text, str)
    }


def with_config(df: pd.DataFrame, lin: pd.DataFrame) -> pd.DataFrame:
    """`df` (keyed by study, trial and lineage) with its lineage's `config_id` and `config_label`,
    for `with_series`."""
    if df.empty:
        return df.assign(config_id=pd.Series(dtype=str), config_label=pd.Series(dtype=str))
    keys = ["study", "trial_id", "lineage_id"]
    df = df.merge(lin[[*keys, "config_id", "config_label"]], on=keys, how="left")
    df["config_id"] = df["config_id"].fillna(df["lineage_id"].str[-6:])
    df["config_label"] = df["config_label"].fillna(df["strategy"].astype(str) + " " + df["config_id"])
    return df


class LiveLake:
    """A lake kept in memory and brought up to date by reading only the files that changed since
    the last look (shared by every session of the app on the same root)."""

    def __init__(self, root: str | Path) -> None:
        self.root = str(root)
        self.reader = IncrementalLake(self.root)
        self.lake: Lake | None = None
        self.built_from = -1  # the reader's version the frames were built from
        self.lock = threading.Lock()

    def version(self) -> int:
        """A number that grows whenever a file of the lake changed (reads only what changed)."""
        with self.lock:
            self.reader.refresh()
            return self.reader.version

    def current(self) -> Lake:
        """The lake now; each caller gets its own frames (pages add columns to them)."""
        with self.lock:
            reads, _ = self.reader.refresh()
            if self.lake is None or self.reader.version != self.built_from:  # a build that raised is retried
                self.lake = lake_from_reads(self.root, reads)
                self.built_from = self.reader.version
            lake = self.lake
        return dataclasses.replace(lake, exists=store_for(self.root).is_dir(self.root), rounds=lake.rounds.copy(deep=False),
                                   lineages=lake.lineages.copy(deep=False), studies=lake.studies.copy(deep=False),
                                   instability=lake.instability.copy(deep=False),
                                   masks=lake.masks.copy(deep=False))  # fmt: skip


def filter_rows(df: pd.DataFrame, selected: dict[str, list[str]]) -> pd.DataFrame:
    for key, values in selected.items():
        if values:
            df = df[df[key].isin(values)]
    return df


def unfinished_lineages(lake: Lake) -> pd.DataFrame:
    """Lineages that are not finished: still running, interrupted (orphans) or failed."""
    lin = lake.lineages
    return lin[lin["status"] != LineageStatus.FINISHED] if not lin.empty else lin


def with_series(df: pd.DataFrame) -> pd.DataFrame:
    """One line per configuration (and branch), named by its readable label (`#4 imp lr=4.2e-4`,
    or `imp` for a strategy's only configuration); a label two studies in view share gets its
    study's name, so two configurations never share a line."""
    df = df.copy()
    names = df["config_label"] if "config_label" in df else df["strategy"].astype(str)
    keys = pd.Series(list(zip(df["study"], df["config_id"], strict=True)), index=df.index)
    clash = keys.groupby(names.values).transform("nunique") > 1
    df["series"] = [f"{n} ({s})" if c else n for n, s, c in zip(names, df["study"], clash, strict=True)]
    return df


def seed_bands(df: pd.DataFrame, value: str) -> pd.DataFrame:
    """Mean and 95% confidence band (Student t) over seeds, per series and round; the band is
    clipped to what the metric can be: 0 for a non-negative one, 1 for an accuracy, the training
    length for an early-stop iteration."""
    out = group_bands(df, ["series", "round"], value)
    if (df[value] >= 0).all():
        out["lo"] = out["lo"].clip(lower=0)
    if value.endswith("_acc"):
        out["hi"] = out["hi"].clip(upper=1)
    if value == "early_stop_iteration" and "iterations" in df:
        out["hi"] = out["hi"].clip(upper=float(df["iterations"].max()))
    out["metric"] = value
    return out


def band_table(df: pd.DataFrame, columns: list[str], extra: Sequence[str] = (), digits: int = 4) -> pd.DataFrame:
    """A band frame for reading: `columns`, the mean, its 95% band as text, `n` and `extra`."""
    out = df.copy()
    out["95% band"] = [f"[{lo:.{digits}f}, {hi:.{digits}f}]" for lo, hi in zip(out["lo"], out["hi"], strict=True)]
    return out[[*columns, "mean", "95% band", "n", *extra]].round(
        {"mean": digits, "remaining_pct": 2, **{c: digits for c in extra}}
    )


def cost_bands(df: pd.DataFrame, cost: str, value: str = "test_acc") -> pd.DataFrame:
    """`seed_bands` of `value`, each round placed at its seed-mean `cost` (compression_ratio or
    theoretical_speedup); a round some of whose seeds were written before the cost columns existed
    is left out whole, so each point averages the same seeds as the main chart."""
    known = df[df.groupby(["series", "round"])[cost].transform(lambda s: s.notna().all()).astype(bool)]
    if known.empty:
        return pd.DataFrame(columns=["series", "round", cost, "mean", "lo", "hi", "n"])
    bands = seed_bands(known, value)
    return bands.merge(known.groupby(["series", "round"])[cost].mean().reset_index(), on=["series", "round"])


def sparsest_tickets(df: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """Per series: the sparsest round whose seed-mean validation accuracy stays within
    `tolerance` of the series' dense round (selection on validation data), reported with the
    test accuracy of that round and its 95% confidence interval."""
    val = seed_bands(df, "val_acc")
    test = seed_bands(df, "test_acc").set_index(["series", "round"])
    ids = df.drop_duplicates("series").set_index("series")
    rows = []
    for series, g in val.groupby("series"):
        g = g.sort_values("round")
        dense = g[g["round"] == 0]
        if dense.empty:
            continue
        dense_val = float(dense["mean"].iloc[0])
        ok = g[g["mean"] >= dense_val - tolerance]
        best = ok.loc[ok["remaining_pct"].idxmin()]
        t, t0 = test.loc[(series, best["round"])], test.loc[(series, 0)]
        rows.append(
            {
                "series": series,
                "config id": ids.loc[series, "config_id"] if "config_id" in ids else None,
                "strategy": str(ids.loc[series, "strategy"]),
                "% remaining": float(best["remaining_pct"]),
                "round": int(best["round"]),
                "last round": int(g["round"].max()),
                "val acc (selects)": float(best["mean"]),
                "dense val acc": dense_val,
                "test acc (reported)": float(t["mean"]),
                "test 95% CI": f"[{t['lo']:.3f}, {t['hi']:.3f}]",
                "dense test acc": float(t0["mean"]),
                "seeds": int(best["n"]),
            }
        )
    return pd.DataFrame(rows)
