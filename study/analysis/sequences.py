"""The ON-LSTM paper's two claims, read from the lake (Shen et al., ICLR 2019), with 95% bands over
seeds (`bands.py`):

- unsupervised parsing: parse F1 of every layer's distances against every trivial tree on the
  same sentences, and against a model without distances (a plain LSTM, whose distance-free parse
  is the right-branching tree);
- generalisation to longer logical formulas: accuracy per operator count, with the majority
  label's share of each count (the chance line).

Each also as a curve over sparsity (lottery tickets of these models). Rows are the lake's rounds
(`series` names a configuration, as in the app). Parse F1 is measured on test sentences, so it is
reported per layer and never used to choose one.
"""

from __future__ import annotations

import pandas as pd

from study.analysis.bands import BAND_COLUMNS, group_bands

BASELINES = ("right_branching", "left_branching", "balanced", "random")
DISTANCE_FREE = "no distances (right-branching)"


def sequence_series(rows: pd.DataFrame) -> pd.DataFrame:
    """`rows` with `series` = model · strategy, and the configuration's label (`config_label`)
    when one model and strategy were run with several configurations."""
    rows = rows.copy()
    if rows.empty:
        return rows.assign(series=pd.Series(dtype=str))
    base = rows["model"].astype(str) + " · " + rows["strategy"].astype(str)
    configs = rows.groupby(base)["config_label"].transform("nunique") if "config_label" in rows else None
    rows["series"] = (
        base
        if configs is None
        else [b if n == 1 else f"{b} · {c}" for b, n, c in zip(base, configs, rows["config_label"], strict=True)]
    )
    return rows


def trained_max_length(rows: pd.DataFrame) -> int | None:
    """The longest length in the rows' training data (None when no row says), beyond which
    accuracy_by_length measures generalisation."""
    known = rows["trained_max_length"].dropna() if "trained_max_length" in rows else pd.Series(dtype=float)
    return int(known.max()) if not known.empty else None


def _within_unit(table: pd.DataFrame) -> pd.DataFrame:
    """A band of an F1 or an accuracy clipped to [0, 1] (a t band over 3 seeds can overshoot)."""
    return table.assign(lo=table["lo"].clip(lower=0.0), hi=table["hi"].clip(upper=1.0))


def _long(rows: pd.DataFrame, column: str, key: str, value: str) -> pd.DataFrame:
    """One row per entry of the dict column `column` (`key`, `value`), with the row's identity."""
    ids = ["series", "trial_id", "seed", "round", "remaining_pct"]
    out = [
        {**dict(zip(ids, ident, strict=True)), key: k, value: float(v)}
        for *ident, d in zip(*(rows[c] for c in ids), rows[column], strict=True)
        if isinstance(d, dict)
        for k, v in d.items()
    ]
    return pd.DataFrame(out, columns=[*ids, key, value])


def parse_scores(rows: pd.DataFrame) -> pd.DataFrame:
    """Every parser's F1 per (series, seed, round): each layer of a model with distances, each
    trivial tree, and `DISTANCE_FREE` for a model without distances (its right-branching parse)."""
    layers = _long(rows, "parse_f1", "parser", "f1")
    trivial = _long(rows, "parse_baselines", "parser", "f1")
    trivial = trivial[trivial["parser"].isin(BASELINES)]
    has_layers = set(zip(layers["series"], layers["trial_id"], layers["round"], strict=True))
    without = pd.Series(
        [k not in has_layers for k in zip(trivial["series"], trivial["trial_id"], trivial["round"], strict=True)],
        index=trivial.index,
        dtype=bool,
    )
    free = trivial[(trivial["parser"] == "right_branching") & without].assign(parser=DISTANCE_FREE)
    return pd.concat([layers, trivial, free], ignore_index=True)


def parse_table(rows: pd.DataFrame, round_: int = 0) -> pd.DataFrame:
    """Per series and parser at round `round_` (0: dense): mean F1 and its band over seeds, and
    the margin of the mean over the series' best trivial tree (negative: a trivial tree wins)."""
    scores = parse_scores(rows[rows["round"] == round_])
    if scores.empty:
        return pd.DataFrame(columns=["series", "parser", *BAND_COLUMNS, "over_best_trivial"])
    table = _within_unit(group_bands(scores, ["series", "parser"], "f1", means=()))
    best = table[table["parser"].isin(BASELINES)].groupby("series")["mean"].max()
    table["over_best_trivial"] = table["mean"] - table["series"].map(best)
    order = {p: i for i, p in enumerate(BASELINES)}
    table["kind"] = table["parser"].map(lambda p: 1 + order[p] if p in order else 0)
    return table.sort_values(["series", "kind", "parser"]).drop(columns="kind").reset_index(drop=True)


def accuracy_by_length(rows: pd.DataFrame, round_: int = 0) -> pd.DataFrame:
    """Per series and length (operators) at round `round_`: test accuracy's band over seeds and
    the chance line (the majority label's share of that length's test examples)."""
    at = rows[rows["round"] == round_]
    acc = _long(at, "accuracy_by_length", "length", "accuracy")
    if acc.empty:
        return pd.DataFrame(columns=["series", "length", *BAND_COLUMNS, "chance"])
    acc["length"] = acc["length"].astype(int)
    table = _within_unit(group_bands(acc, ["series", "length"], "accuracy", means=()))
    chance = _long(at, "chance_by_length", "length", "chance")
    if not chance.empty:
        chance["length"] = chance["length"].astype(int)
        table = table.merge(chance.groupby(["series", "length"], as_index=False)["chance"].mean(), how="left")
    else:
        table["chance"] = float("nan")
    return table


def sparsity_curves(rows: pd.DataFrame, lengths: tuple[int, int] | None = None) -> pd.DataFrame:
    """Per series, round and measure, the band over seeds at the round's mean % remaining:
    each layer's parse F1 (measure `layer<i>`) and, for classifiers, the mean accuracy over
    lengths in `lengths` (inclusive; measure 'accuracy <lo>-<hi>')."""
    parts = [_long(rows, "parse_f1", "measure", "value")]
    if lengths is not None:
        lo, hi = lengths
        acc = _long(rows, "accuracy_by_length", "length", "value")
        acc = acc[acc["length"].astype(int).between(lo, hi)]
        if not acc.empty:
            ids = ["series", "trial_id", "seed", "round", "remaining_pct"]
            parts.append(acc.groupby(ids, as_index=False)["value"].mean().assign(measure=f"accuracy {lo}-{hi}"))
    parts = [p for p in parts if not p.empty]
    if not parts:
        return pd.DataFrame(columns=["series", "measure", "round", "remaining_pct", *BAND_COLUMNS])
    return _within_unit(group_bands(pd.concat(parts, ignore_index=True), ["series", "measure", "round"], "value"))
