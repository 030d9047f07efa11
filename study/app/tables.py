"""How every table of the app and the report writes its numbers (one rule per kind of column, so
a figure reads the same everywhere), and what a page or section without data says instead."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

import pandas as pd

# printf-style formats (Streamlit's NumberColumn takes them; the report applies them itself)
ACCURACY = "%.3f"  # accuracies, their bands and differences: 0.1-point resolution
SIGNIFICANT = "%.3g"  # anything else: % of weights, objectives, searched values
COUNT = "%d"
SECONDS = "%.0f"
_ACCURACY_WORDS = ("acc", "mean", "lo", "hi", "jaccard", "chance", "barrier", "f1", "difference")

_BY_NAME = {
    "compute s": SECONDS,
    "wall s": SECONDS,
    "wall_seconds": SECONDS,
    "n": COUNT,
    "seeds": COUNT,
    "round": COUNT,
}


def column_format(name: str, values: pd.Series) -> str | None:
    """The format of a numeric column, by what it holds: counts and seconds whole; accuracies,
    their bands and differences, Jaccard, barriers and F1 at 3 decimals; anything else (a % of
    weights, an objective, a searched value) at 3 significant digits; None: not a number."""
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return None
    if name in _BY_NAME:
        return _BY_NAME[name]
    if pd.api.types.is_integer_dtype(values):
        return COUNT
    words = name.lower().replace("_", " ").replace("(", " ").split()
    if "%" not in name and any(w in _ACCURACY_WORDS for w in words) and "objective" not in name.lower():
        return ACCURACY
    return SIGNIFICANT


def _text(value: object, fmt: str | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if fmt is None:
        return str(value)
    if fmt == COUNT:
        return f"{int(value):,}"  # type: ignore[call-overload]
    return fmt % value


def formatted(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with every number as text in its column's format (for static HTML)."""
    out = df.copy()
    for name in df.columns:
        fmt = column_format(str(name), df[name])
        out[name] = [_text(v, fmt) for v in df[name]]
    return out


def html_table(df: pd.DataFrame, best: pd.Series | None = None) -> str:
    """A sortable HTML table (click a header; the report's script sorts it), numbers in their
    column's format and right-aligned, the `best` rows highlighted."""
    text = formatted(df)
    numeric = [column_format(str(c), df[c]) is not None for c in df.columns]
    head = "".join(
        f"<th class='{'num' if n else 'txt'}'>{html.escape(str(c))}</th>"
        for c, n in zip(df.columns, numeric, strict=True)
    )
    rows = []
    flags = [False] * len(df) if best is None else [bool(b) for b in best]
    for (_, row), (_, raw), flag in zip(text.iterrows(), df.iterrows(), flags, strict=True):
        cells = "".join(
            f"<td data-sort='{html.escape(str(r))}'>{html.escape(str(v))}</td>" for v, r in zip(row, raw, strict=True)
        )
        rows.append(f"<tr{' class=best' if flag else ''}>{cells}</tr>")
    body = "".join(rows)
    return (
        f"<div class='wide'><table class='sortable'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
    )


@dataclass(frozen=True)
class Absent:
    """A view this lake has no data for, and how to measure it."""

    what: str
    how: str

    def sentence(self) -> str:
        return f"{self.what}: not measured here. {self.how}"


ABSENT = {
    "paired": Absent(
        "Paired controls (ticket − control)",
        "Give the lineage spec `branches: [random_reinit, random_prune]`: every pruning round then trains paired "
        "controls off its trunk (same seed, mask and data order).",
    ),
    "instability": Absent(
        "Instability (linear mode connectivity)",
        "Give the lineage spec `instability: {rounds: [0, 3, 6]}` to measure those rounds; lineages at several "
        "`rewind_iteration` values show where stability begins.",
    ),
    "masks": Absent(
        "Mask overlap",
        "Every lineage written by this version records its masks; lineages written before the masks table existed "
        "have none (re-run them with --fresh).",
    ),
    "cost": Absent(
        "Accuracy against theoretical cost",
        "Rounds written by this version carry macs_remaining, compression_ratio and theoretical_speedup; older "
        "rounds do not (re-run with --fresh).",
    ),
    "sequences": Absent(
        "Sequence models (the ON-LSTM claims)",
        "Run ON-LSTM or LSTM lineages: `search_spaces/sequences/*.yaml`, or the studies "
        "`search_spaces/studies/onlstm_*.yaml`.",
    ),
    "search": Absent(
        "Search (trials, history, parallel coordinates, importance)",
        "Run the lineages as a study: `study tune SPACE.yaml` (search_spaces/studies/ has examples).",
    ),
    "findings": Absent(
        "Findings",
        "A study's findings need its rounds: run `study tune SPACE.yaml` or `study lineage SPEC.yaml --study NAME`.",
    ),
}


def number_formats(df: pd.DataFrame) -> dict[str, str]:
    """Column name -> printf format, for Streamlit's NumberColumn."""
    out = {}
    for name in df.columns:
        fmt = column_format(str(name), df[name])
        if fmt is not None:
            out[str(name)] = fmt if fmt != COUNT else "%d"
    return out
