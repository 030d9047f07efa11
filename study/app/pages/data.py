import io

import pyarrow.parquet as pq
import streamlit as st

from study.app.context import current_lake, require_rows, show_table
from study.lake.schema import FAILED_STATUSES

st.title("Data")
lake = current_lake()
rows = require_rows(lake)
st.caption(
    f"{len(rows)} round row(s) match the filters; `config_label` is each configuration's name everywhere (Optuna "
    "trial number, strategy, searched values), `config_id` its id. Downloads keep the lake's canonical schema "
    "(Parquet) or flatten it, with those two columns (CSV)."
)
shown = [
    "config_label",
    "config_id",
    "study",
    "strategy",
    "model",
    "dataset",
    "seed",
    "trial_id",
    "round",
    "remaining_pct",
    "early_stop_iteration",
    "val_acc",
    "test_acc",
    "final_test_acc",
    "lr",
    "rewind_iteration",
    "wall_seconds",
]
show_table(rows[shown], key="data_rows")
lineages = lake.lineages
failed = lineages[lineages["status"].isin(FAILED_STATUSES)] if not lineages.empty else lineages
if len(failed):
    st.subheader("Failed, diverged and degenerate lineages (left out of every chart)")
    st.dataframe(
        failed[["study", "strategy", "trial_id", "seed", "status", "rounds_done", "error"]],
        hide_index=True,
        width="stretch",
    )
table = lake.rounds_table.take(rows["row"].to_numpy())
buf = io.BytesIO()
pq.write_table(table, buf)
c1, c2 = st.columns(2)
c1.download_button("Download CSV", rows.drop(columns=["row"]).to_csv(index=False), "rounds.csv", "text/csv")
c2.download_button("Download Parquet", buf.getvalue(), "rounds.parquet", "application/octet-stream")
