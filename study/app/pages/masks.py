import streamlit as st

from study.analysis.masks import round_overlap, seed_overlap, series_overlap
from study.app.charts import overlap_heatmap
from study.app.context import current_lake, healthy, require_rows, selected_filters
from study.app.lake import filter_rows, with_series

st.title("Masks")
st.caption(
    "Jaccard overlap |A ∩ B| / |A ∪ B| of the masks per layer, from the packed masks in the lake, mean with a "
    "95% band over pairs (in the tooltip, with the overlap two random masks of the same densities would have: "
    "what a mask owes to its sparsity alone)."
)
lake = current_lake()
require_rows(lake)  # the lake's notices
masks = lake.masks
if not masks.empty:
    masks = healthy(lake, filter_rows(masks, selected_filters()), say=False)
if masks.empty:
    st.info("No masks in these rows (lineages written before masks were recorded, or none match the filters).")
    st.stop()
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
cells["round_label"] = [f"{r} ({p:.1f}%)" for r, p in zip(cells["round"], cells["remaining_pct"], strict=True)]
st.altair_chart(overlap_heatmap(cells, title), width="stretch")
table = cells.assign(band=[f"[{lo:.3f}, {hi:.3f}]" for lo, hi in zip(cells["lo"], cells["hi"], strict=True)])
st.dataframe(
    table[["series", "round", "remaining_pct", "layer", "mean", "band", "chance", "n"]].round(
        {"remaining_pct": 2, "mean": 4, "chance": 4}
    ),
    hide_index=True,
    width="stretch",
)
