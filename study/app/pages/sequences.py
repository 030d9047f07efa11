import json

import altair as alt
import pandas as pd
import streamlit as st

from study.app.charts import REMAINING_AXIS, band_chart, tree_chart
from study.app.context import current_lake, lineage_choices, require_rows
from study.app.lake import seed_bands

st.title("Sequence models")
rows = require_rows(current_lake())
rows = rows[rows["test_perplexity"].notna() | rows["accuracy_by_length"].notna() | rows["parse_baselines"].notna()]
if rows.empty:
    st.info("No sequence-model rounds match the filters (ON-LSTM / LSTM on pcfg, text, listops, logical_inference).")
    st.stop()
rows = rows.copy()
rows["series"] = rows["model"] + " · " + rows["strategy"]
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

f1 = [
    {"series": s, "layer": layer, "round": r, "remaining_pct": pct, "f1": v}
    for s, r, pct, d in zip(rows["series"], rows["round"], rows["remaining_pct"], rows["parse_f1"], strict=True)
    if isinstance(d, dict)
    for layer, v in d.items()
]
if f1:
    df = pd.DataFrame(f1).groupby(["series", "layer", "round"], as_index=False).mean(numeric_only=True)
    df["line"] = df["series"] + " · " + df["layer"]
    base = [b for b in rows["parse_baselines"] if isinstance(b, dict)]
    rules = pd.DataFrame(
        [
            {"baseline": k, "f1": sum(b[k] for b in base) / len(base)}
            for k in ("right_branching", "left_branching", "balanced", "random")
        ]
    )
    lines = (
        alt.Chart(df)
        .mark_line(point=True)
        .encode(
            x=REMAINING_AXIS,
            y=alt.Y("f1:Q", title="unlabelled sentence F1", scale=alt.Scale(zero=False)),
            color=alt.Color("line:N", title="model · strategy · layer"),
            tooltip=["line", "round", alt.Tooltip("f1:Q", format=".3f")],
        )
    )
    baseline = (
        alt.Chart(rules)
        .mark_rule(strokeDash=[4, 4])
        .encode(y="f1:Q", color=alt.value("#888"), tooltip=["baseline", "f1"])
    )
    labels = (
        alt.Chart(rules)
        .mark_text(align="left", dx=4, dy=-6, color="#666")
        .encode(y="f1:Q", text="baseline:N", x=alt.value(0))
    )
    st.altair_chart(
        (baseline + labels + lines).properties(title="Parse F1 per layer (dashed: trivial trees)", height=360),
        width="stretch",
    )

by_length = [
    {"series": s, "round": r, "operators": int(k), "accuracy": v}
    for s, r, d in zip(rows["series"], rows["round"], rows["accuracy_by_length"], strict=True)
    if isinstance(d, dict)
    for k, v in d.items()
]
if by_length:
    df = pd.DataFrame(by_length).groupby(["series", "round", "operators"], as_index=False).mean()
    df["line"] = df["series"] + " · round " + df["round"].astype(str)
    st.altair_chart(
        alt.Chart(df)
        .mark_line(point=True)
        .encode(
            x=alt.X("operators:O", title="operators in the larger formula (trained on <= 6)"),
            y=alt.Y("accuracy:Q", scale=alt.Scale(zero=False)),
            color=alt.Color("line:N", title=None),
        )
        .properties(title="Accuracy per operator count", height=320),
        width="stretch",
    )

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
