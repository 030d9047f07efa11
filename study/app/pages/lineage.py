import pandas as pd
import streamlit as st

from study.app.charts import curves_chart, sparsity_heatmap
from study.app.context import current_lake, require_rows

st.title("Lineage")
rows = require_rows(current_lake())
# a trial id holds a trunk and its branches: a lineage is (trial, lineage id)
lineages = rows.sort_values(["study", "strategy", "seed"]).drop_duplicates(["trial_id", "lineage_id"])
labels = {
    (t, lin): f"{s} · {st_} · seed {seed} · {t}"
    for t, lin, s, st_, seed in zip(
        lineages["trial_id"],
        lineages["lineage_id"],
        lineages["study"],
        lineages["strategy"],
        lineages["seed"],
        strict=True,
    )
}
trial, lineage = st.selectbox("lineage", list(labels), format_func=lambda k: labels[k], key="lineage_trial")
one = rows[(rows["trial_id"] == trial) & (rows["lineage_id"] == lineage)].sort_values("round")

st.dataframe(
    one[
        [
            "round",
            "remaining_pct",
            "early_stop_iteration",
            "val_acc",
            "test_acc",
            "final_test_acc",
            "iterations",
            "wall_seconds",
        ]
    ].round(4),
    hide_index=True,
    width="stretch",
)

curves = []
for _, r in one.iterrows():
    for metric, values in (("test accuracy", r["curve_test_acc"]), ("validation loss", r["curve_val_loss"])):
        if values is not None:
            curves += [
                {"round": r["round"], "iteration": i, "metric": metric, "value": v}
                for i, v in zip(r["curve_iteration"], values, strict=True)
            ]
if curves:
    st.altair_chart(curves_chart(pd.DataFrame(curves)), width="stretch")

cells = []
for _, r in one.iterrows():
    cells += [
        {"round": r["round"], "layer": k, "remaining_pct": v} for k, v in (r["layer_remaining_pct"] or {}).items()
    ]
if cells:
    st.altair_chart(sparsity_heatmap(pd.DataFrame(cells)), width="stretch")
