import pandas as pd
import streamlit as st

from study.app.charts import curves_chart, sparsity_heatmap
from study.app.context import current_lake, lineage_choices, require_rows, show_table

st.title("Lineage")
rows = require_rows(current_lake())
labels = lineage_choices(rows.sort_values(["study", "config_label", "seed"]), "study")
trial, lineage = st.selectbox("lineage", list(labels), format_func=lambda k: labels[k], key="lineage_trial")
one = rows[(rows["trial_id"] == trial) & (rows["lineage_id"] == lineage)].sort_values("round")

show_table(
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
    ],
    key="lineage_rounds",
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
