import streamlit as st

from study.analysis.paired import paired_differences, share_dense_rounds
from study.analysis.summary import study_findings_of
from study.app.charts import band_chart, cost_chart, paired_chart, series_scale
from study.app.context import current_lake, require_rows, show_table
from study.app.findings import findings_markdown, ticket_reference
from study.app.lake import cost_bands, seed_bands, sparsest_tickets, with_series

st.title("Strategies")
lake = current_lake()
rows = with_series(share_dense_rounds(require_rows(lake)))
studies = sorted(rows["study"].unique())
study = studies[0] if len(studies) == 1 else st.selectbox("findings of study", studies, key="findings_study")
findings, _ = study_findings_of(rows, lake.lineages, lake.studies, study)
st.subheader(f"Findings: {study}")
with st.container(border=True):
    headline, caveats = findings_markdown(findings)
    st.markdown(headline)
    if caveats:
        st.warning(caveats)

st.caption(
    "Test accuracy at early stop and the early-stop iteration against the % of weights remaining "
    "(log axis, reversed as in Frankle & Carbin), one line per configuration (a hue per strategy, a shade per "
    "configuration), mean with a 95% band over seeds. Early stopping and the ticket table below choose on "
    "validation data; test accuracy is reported only."
)
colors = series_scale(rows)
best, reference = findings.best, ticket_reference(findings)
st.altair_chart(
    band_chart(
        seed_bands(rows, "test_acc"),
        "Test accuracy at the early-stop iteration (reported; dashed: the best configuration's dense net)",
        "test accuracy",
        colors=colors,
        reference=reference,
    ),
    width="stretch",
)
st.altair_chart(
    band_chart(
        seed_bands(rows, "early_stop_iteration"),
        "Early-stop iteration (lower: learns faster)",
        "early-stop iteration",
        digits=0,
        colors=colors,
    ),
    width="stretch",
)
st.subheader("Paired controls: trunk − branch, same seed, round and data order")
pairs = paired_differences(rows, "test_acc", by=("series",))
if pairs.empty:
    st.info(
        "No branches in these rows: give a lineage `branches: [random_reinit, random_prune]` to train paired "
        "controls off every pruning round of its trunk."
    )
else:
    st.caption(
        "Test accuracy of the trunk minus its branch, taken per seed and round, then averaged: the 95% band is "
        "over those per-seed differences (Student t), far tighter than two independent bands. Above 0: the "
        "trunk's ticket beats the control."
    )
    st.altair_chart(paired_chart(pairs, "test accuracy difference (reported)"), width="stretch")
    table = pairs.assign(band=[f"[{lo:+.3f}, {hi:+.3f}]" for lo, hi in zip(pairs["lo"], pairs["hi"], strict=True)])
    show_table(table[["pair", "round", "remaining_pct", "mean", "band", "n"]], key="paired_table")
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
        column.altair_chart(cost_chart(bands, cost, title, "test accuracy", colors), width="stretch")
tolerance = st.slider("tolerance (validation accuracy points below dense)", 0.0, 5.0, 1.0, 0.25) / 100
st.subheader("Sparsest matching ticket per configuration (chosen on validation, test reported)")
tickets = sparsest_tickets(rows, tolerance)
if best is not None and not tickets.empty:
    mark = (tickets["config id"] == best.config_id) & (tickets["strategy"] == best.strategy)
    show_table(tickets, best=mark, key="tickets_table")
else:
    show_table(tickets, key="tickets_table")
