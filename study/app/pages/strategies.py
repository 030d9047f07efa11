import streamlit as st

from study.app.charts import band_chart, cost_chart
from study.app.context import current_lake, require_rows
from study.app.lake import cost_bands, seed_bands, sparsest_tickets, with_series

st.title("Strategies")
st.caption(
    "Test accuracy at early stop and the early-stop iteration against the % of weights remaining "
    "(log axis, reversed as in Frankle & Carbin), one line per strategy, mean with a 95% band over seeds. "
    "Early stopping and the ticket table below choose on validation data; test accuracy is reported only."
)
rows = with_series(require_rows(current_lake()))
st.altair_chart(
    band_chart(seed_bands(rows, "test_acc"), "Test accuracy at the early-stop iteration (reported)", "test accuracy"),
    width="stretch",
)
st.altair_chart(
    band_chart(
        seed_bands(rows, "early_stop_iteration"), "Early-stop iteration (lower: learns faster)", "early-stop iteration"
    ),
    width="stretch",
)
st.subheader("Accuracy against theoretical cost (Blalock et al., 2020)")
st.caption(
    "Test accuracy (reported) against the compression ratio (parameters / parameters kept) and the theoretical "
    "speed-up (weight multiply-accumulates of a dense forward / with the mask), each at its mean over seeds, "
    "95% error bars over seeds. The ratio counts every parameter (biases too, never pruned)."
)
left, right = st.columns(2)
for column, cost, title in (
    (left, "compression_ratio", "compression ratio (log scale)"),
    (right, "theoretical_speedup", "theoretical speed-up (log scale)"),
):
    bands = cost_bands(rows, cost)
    if bands.empty:
        column.info(f"No {cost.replace('_', ' ')} in these rows (written before the cost columns existed).")
    else:
        column.altair_chart(cost_chart(bands, cost, title, "test accuracy"), width="stretch")
tolerance = st.slider("tolerance (validation accuracy points below dense)", 0.0, 5.0, 1.0, 0.25) / 100
st.subheader("Sparsest matching ticket per strategy (chosen on validation, test reported)")
tickets = sparsest_tickets(rows, tolerance)
st.dataframe(tickets, hide_index=True, width="stretch")
