import streamlit as st

from study.analysis.stability import barrier_bands, path_bands, rewind_bands, with_rewind_series
from study.app.charts import band_chart, path_chart, rewind_chart
from study.app.context import current_lake, explain_absent, healthy, require_rows, selected_filters, show_table
from study.app.lake import filter_rows

st.title("Stability")
st.caption(
    "Instability analysis (Frankle et al., 2020): two copies of a round's network train from the same rewind "
    "point on different data orders; the error barrier is the highest error on the straight line between them "
    "minus the mean of the two ends. Near 0 (the paper's threshold: 2%), the network is stable to SGD noise from "
    "that point, which is where IMP finds matching tickets. Mean over seeds with a 95% band."
)
lake = current_lake()
require_rows(lake)  # the lake's notices (unreadable files, unfinished lineages, failed ones left out)
rows = lake.instability
if not rows.empty:
    rows = healthy(lake, filter_rows(rows, selected_filters()), say=False)
if rows.empty:
    explain_absent("instability")
split = st.radio("data", ["test (reported)", "validation (selects)"], horizontal=True, key="stability_split")
prefix = "test" if split.startswith("test") else "val"
value = f"{prefix}_error_barrier"
failed = int(rows["error"].notna().sum())
if failed:
    st.caption(
        f"{failed} measurement(s) failed (a copy diverged; the Data page's lineages say which) and are left out."
    )
rows = with_rewind_series(rows)
if rows.empty:
    st.info("Every measurement here failed.")
    st.stop()
st.altair_chart(
    band_chart(barrier_bands(rows, value), f"Error barrier against % of weights remaining ({prefix})", "error barrier"),
    width="stretch",
)
by_k = rewind_bands(rows, value)
st.subheader("Barrier against the rewind iteration")
st.altair_chart(rewind_chart(by_k, f"error barrier ({prefix})"), width="stretch")
st.subheader("Error along the path")
round_ = st.selectbox("round", sorted(rows["round"].unique().tolist()), key="stability_round")
st.altair_chart(path_chart(path_bands(rows[rows["round"] == round_], prefix), f"{prefix} error"), width="stretch")
table = barrier_bands(rows, value)
table["band"] = [f"[{lo:.3f}, {hi:.3f}]" for lo, hi in zip(table["lo"], table["hi"], strict=True)]
show_table(table[["series", "round", "remaining_pct", "mean", "band", "n"]], key="barrier_table")
