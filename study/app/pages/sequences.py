import json

import streamlit as st

from study.app.charts import band_chart, tree_chart
from study.app.context import current_lake, explain_absent, lineage_choices, require_rows, show_table
from study.app.lake import seed_bands
from study.app.sequence_claims import claim_figures, sequence_rows

st.title("Sequence models")
rows = require_rows(current_lake())
rows = sequence_rows(rows)
if rows.empty:
    explain_absent("sequences")
lm = rows[rows["test_perplexity"].notna()]
if not lm.empty:
    st.altair_chart(
        band_chart(seed_bands(lm, "test_perplexity"), "Test perplexity (language models)", "test perplexity"),
        width="stretch",
    )
    optimum = [b.get("grammar_perplexity") for b in lm["parse_baselines"] if isinstance(b, dict)]
    if optimum and optimum[0]:
        st.caption(f"The grammar's own perplexity on the test sentences (the best any model can do): {optimum[0]:.3f}")
clf = rows[rows["test_perplexity"].isna()]
if not clf.empty:
    st.altair_chart(
        band_chart(seed_bands(clf, "test_acc"), "Test accuracy (classifiers)", "test accuracy"), width="stretch"
    )

figures = claim_figures(rows)
for title, chart in figures.charts:
    st.subheader(title[0].upper() + title[1:])
    st.altair_chart(chart, width="stretch")
for title, table in figures.tables:
    st.caption(title)
    show_table(table, key=f"claims_{title}")

examples = rows[rows["parse_examples_json"].notna()]
if not examples.empty:
    st.subheader("An induced tree next to the gold tree")
    labels = lineage_choices(examples, "model")
    c1, c2, c3, c4 = st.columns(4)
    trial, lineage = c1.selectbox("lineage", list(labels), format_func=lambda k: labels[k], key="seq_trial")
    mine = examples[(examples["trial_id"] == trial) & (examples["lineage_id"] == lineage)].sort_values("round")
    rnd = c2.selectbox("round", mine["round"].tolist(), key="seq_round")
    parsed = json.loads(mine[mine["round"] == rnd]["parse_examples_json"].iloc[0])
    i = c3.selectbox(
        "sentence", list(range(len(parsed))), format_func=lambda j: " ".join(parsed[j]["tokens"]), key="seq_sentence"
    )
    layer = c4.selectbox("layer", list(parsed[i]["induced"]), key="seq_layer")
    left, right = st.columns(2)
    left.altair_chart(tree_chart(parsed[i]["tokens"], parsed[i]["gold"], "gold tree"), width="stretch")
    right.altair_chart(
        tree_chart(parsed[i]["tokens"], parsed[i]["induced"][layer], f"induced from {layer}"), width="stretch"
    )
