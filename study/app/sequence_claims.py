"""The figures and tables of the ON-LSTM claims (`analysis/sequences.py`), shared by the app's
Sequence models page and the study report."""

from __future__ import annotations

from dataclasses import dataclass, field

import altair as alt
import pandas as pd

from study.analysis.paired import share_dense_rounds
from study.analysis.sequences import (
    accuracy_by_length,
    parse_table,
    sequence_series,
    sparsity_curves,
    trained_max_length,
)
from study.app.charts import length_chart, parse_chart, sparsity_chart
from study.app.lake import band_table


@dataclass
class ClaimFigures:
    charts: list[tuple[str, alt.LayerChart]] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)


def sequence_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The rounds of sequence models (perplexity, parse or per-length columns), named by
    `sequence_series`, a branch lent its trunk's dense round."""
    seq = rows[rows["test_perplexity"].notna() | rows["accuracy_by_length"].notna() | rows["parse_baselines"].notna()]
    return sequence_series(share_dense_rounds(seq)) if not seq.empty else seq


def claim_figures(rows: pd.DataFrame) -> ClaimFigures:
    """From `sequence_rows`: parse F1 of the dense trunks per parser, accuracy per length with
    its chance line, and both against sparsity when pruning rounds exist."""
    out = ClaimFigures()
    if rows.empty:
        return out
    dense = rows[(rows["round"] == 0) & rows["branch"].isna()]  # a branch's lent dense round is its trunk's
    parse = parse_table(dense)
    if not parse.empty:
        out.charts.append(("parse F1 per layer and trivial tree", parse_chart(parse)))
        out.tables.append(
            (
                "Parse F1 of the dense models (test sentences; mean, 95% band over seeds, margin over the best trivial tree)",
                band_table(parse, ["series", "parser"], extra=["over_best_trivial"], digits=3),
            )
        )
    lengths = accuracy_by_length(dense)
    trained = trained_max_length(rows)
    if not lengths.empty:
        out.charts.append(("accuracy per operator count", length_chart(lengths, trained)))
        table = band_table(lengths, ["series", "length"], extra=["chance"], digits=3)
        out.tables.append(("Test accuracy per operator count of the dense models", table))
    longest = int(lengths["length"].max()) if not lengths.empty else None
    beyond = (trained + 1, longest) if trained is not None and longest is not None and longest > trained else None
    curves = sparsity_curves(rows, lengths=beyond)
    if not curves.empty and (curves["round"] > 0).any():
        for measure in sorted(curves["measure"].unique()):
            accuracy = measure.startswith("accuracy")
            y = f"test accuracy, {measure.removeprefix('accuracy ')} operators" if accuracy else f"parse F1, {measure}"
            out.charts.append((f"{y} against sparsity", sparsity_chart(curves, measure, y)))
        out.tables.append(
            (
                "The claims against sparsity (mean, 95% band over seeds)",
                band_table(curves, ["series", "measure", "round", "remaining_pct"], digits=3),
            )
        )
    return out
