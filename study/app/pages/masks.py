import streamlit as st

from study.analysis.masks import round_overlap, seed_overlap, series_overlap
from study.app.charts import overlap_heatmap
from study.app.context import current_lake, explain_absent, healthy, require_rows, selected_filters, show_table
from study.app.lake import filter_rows, with_series

st.title("Masks")
st.caption(
    "Jaccard overlap |A ∩ B| / |A ∪ B| of the masks per layer, from the packed masks in the lake, as a ratio to the "
    "overlap two random masks of the same densities would have (what a mask owes to its sparsity alone): 1 is "
    "chance, above 1 the masks agree more than chance. Mean over pairs; the table has the Jaccard itself, its 95% "
    "band and the chance level. Each panel has its own rounds."
)
lake = current_lake()
require_rows(lake)  # the lake's notices
masks = lake.masks
if not masks.empty:
    masks = healthy(lake, filter_rows(masks, selected_filters()), say=False)
if masks.empty:
    explain_absent("masks")
masks = with_series(masks)
kind = st.radio(
    "compare", ["between seeds", "between strategies", "consecutive rounds"], horizontal=True, key="masks_compare"
)
if kind == "between seeds":
    cells, title = seed_overlap(masks), "Between seeds of one configuration (do seeds find the same ticket?)"
elif kind == "consecutive rounds":
    cells, title = round_overlap(masks), "Round r against round r − 1 of the same lineage"
else:
    names = sorted(masks["series"].unique())
    left, right = st.columns(2)
    first = left.selectbox("first", names, key="masks_first")
    second = right.selectbox("second", [n for n in names if n != first] or names, key="masks_second")
    cells, title = series_overlap(masks, first, second), f"{first} against {second}, same seed and sparsity"
if cells.empty:
    st.info("No pairs to compare here (one seed only, or no rounds at equal sparsity).")
    st.stop()
cells["round_label"] = [f"{r} ({p:.3g}%)" for r, p in zip(cells["round"], cells["remaining_pct"], strict=True)]
st.altair_chart(overlap_heatmap(cells, title), width="stretch")
table = cells.assign(
    band=[f"[{lo:.3f}, {hi:.3f}]" for lo, hi in zip(cells["lo"], cells["hi"], strict=True)],
    ratio=cells["mean"] / cells["chance"],
)
show_table(table[["series", "round", "remaining_pct", "layer", "mean", "band", "chance", "ratio", "n"]], key="overlap")
