"""What every page needs: the lake at the chosen root (cached until its files change), the
sidebar filters, and readable messages for empty, partial or damaged lakes."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pandas as pd
import streamlit as st

from study.app.lake import FILTERS, Lake, LiveLake, filter_rows, unfinished_lineages
from study.app.tables import ABSENT, number_formats
from study.errors import SpecError
from study.lake.reader import excluded_lineages

T = TypeVar("T")


@st.cache_resource(show_spinner="Reading the results lake…", max_entries=4)
def _live_lake(root: str) -> LiveLake:
    return LiveLake(root)


def _reachable(read: Callable[[LiveLake], T]) -> T:
    """`read` of the lake at the chosen root; a store that does not answer (an S3 endpoint down,
    wrong credentials) is one readable line and a stop, not a traceback."""
    root = st.session_state.get("root", "results")
    try:
        return read(_live_lake(root))
    except (OSError, SpecError) as e:  # SpecError: an s3:// URI with credentials or options in it
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        st.error(
            f"Cannot read the results lake at `{root}`: {first}. Check the path, or for s3:// the endpoint "
            f"(AWS_ENDPOINT_URL) and the credentials (AWS_ACCESS_KEY_ID / AWS_PROFILE) the app runs with."
        )
        st.stop()


def lake_version() -> int:
    """Grows whenever a file of the lake at the chosen root changed (the live view's trigger)."""
    return _reachable(LiveLake.version)


def current_lake() -> Lake:
    """The lake at the chosen root, brought up to date by reading only the files that changed."""
    return _reachable(LiveLake.current)


def selected_filters() -> dict[str, list[str]]:
    return {k: st.session_state.get(f"filter_{k}", []) for k in FILTERS}


def filtered_rounds(lake: Lake) -> pd.DataFrame:
    return filter_rows(lake.rounds, selected_filters())


def require_rows(lake: Lake) -> pd.DataFrame:
    """The filtered rounds, or a readable message and a stop when there is nothing to show."""
    if not lake.exists:
        st.info(
            f"No results lake at `{lake.root}` yet. Run `make demo`, `study tune SPACE.yaml` or "
            f"`study lineage SPEC.yaml --results {lake.root}`, or point the sidebar at another lake."
        )
        st.stop()
    if lake.skipped:
        st.warning(
            f"{len(lake.skipped)} unreadable file(s) were skipped (truncated or not Parquet): "
            + "; ".join(s.split(": ", 1)[0] for s in lake.skipped[:5])
        )
    waiting = unfinished_lineages(lake)
    if len(waiting):
        counts = waiting["status"].value_counts().to_dict()
        st.caption(
            "Not finished: "
            + ", ".join(f"{n} {s}" for s, n in counts.items())
            + " lineage(s); their finished rounds are shown (interrupted ones resume when re-run)."
        )
    if lake.empty:
        st.info(
            f"The lake at `{lake.root}` holds no finished rounds yet; a running study shows up here as its rounds land."
        )
        st.stop()
    rows = healthy(lake, filtered_rounds(lake))
    if rows.empty:
        st.info("No rounds match the filters in the sidebar.")
        st.stop()
    return rows


def healthy(lake: Lake, rows: pd.DataFrame, say: bool = True) -> pd.DataFrame:
    """`rows` (of any table keyed by study, trial and lineage) without the failed, diverged and
    degenerate lineages (and the sibling seeds of a failed trial), saying so when there are any."""
    excluded = excluded_lineages(lake.lineages.to_dict("records")) if not lake.lineages.empty else set()
    if not excluded:
        return rows
    if say:
        st.warning(
            f"{len(excluded)} failed, diverged or degenerate lineage(s) (with the sibling seeds of a failed "
            "trial) are left out of every chart and table here; the Data page lists them with the reason."
        )
    return rows[[k not in excluded for k in zip(rows["study"], rows["trial_id"], rows["lineage_id"], strict=True)]]


def lineage_choices(rows: pd.DataFrame, first: str) -> dict[tuple[str, str], str]:
    """(trial id, lineage id) -> a readable name, for a lineage picker: its configuration's name
    and seed (a trial id holds a trunk and its branches, so a lineage is the pair; the name
    tells them apart). `first` is the column the name starts with."""
    unique = rows.drop_duplicates(["trial_id", "lineage_id"])
    names = {
        (t, lin): f"{a} · {label} · seed {seed}"
        for t, lin, a, label, seed in zip(
            unique["trial_id"], unique["lineage_id"], unique[first], unique["config_label"], unique["seed"], strict=True
        )
    }
    seen = pd.Series(list(names.values())).value_counts()
    return {key: f"{name} · {key[0]}" if seen[name] > 1 else name for key, name in names.items()}


def show_table(df: pd.DataFrame, best: pd.Series | None = None, key: str | None = None) -> None:
    """A sortable table (Streamlit's own header sort), numbers in their column's format
    (`tables.column_format`), the `best` rows highlighted."""
    formats = number_formats(df)
    config = {name: st.column_config.NumberColumn(format=fmt) for name, fmt in formats.items()}
    styler = df.style.format(
        {name: (lambda v, fmt=fmt: "–" if pd.isna(v) else fmt % v) for name, fmt in formats.items()}
    )
    if best is not None and bool(best.any()):
        marks = best.reindex(df.index).fillna(False).astype(bool)
        styler = styler.apply(
            lambda row: ["background-color: #fde2e1; font-weight: 600" if marks.loc[row.name] else "" for _ in row],
            axis=1,
        )
    st.dataframe(styler, hide_index=True, width="stretch", column_config=config, key=key)


def explain_absent(kind: str) -> None:
    """What a page without data says (the report's 'not measured here' list says the same), and a stop."""
    st.info(ABSENT[kind].sentence())
    st.stop()
