import streamlit as st

from study.app.charts import importance_chart, param_scatter, pareto_chart
from study.app.context import current_lake, require_rows, selected_filters
from study.app.search import importance, study_info, study_trials
from study.lake.schema import FAILED_STATUSES

st.title("Search")
lake = current_lake()
require_rows(lake)
wanted = selected_filters()["study"]
names = [s for s in lake.studies["study"].tolist() if not wanted or s in wanted]
if not names:
    st.info("No searched study in this lake (or the filters): `study tune SPACE.yaml` records one.")
    st.stop()
name = st.selectbox("study", names, key="search_study")
info = study_info(lake, name)
assert info is not None  # name is one of the studies the lake holds
trials = study_trials(lake, name, info)
if trials.empty:
    st.info(f"Study {name} has no trials with results yet.")
    st.stop()
metrics = info["metrics"]
st.caption(
    f"objective: {info['objective']} ({', '.join(f'{m} ({d})' for m, d in zip(metrics, info['modes'], strict=True))}), "
    f"computed on validation data, which is all the search ever saw; 'test acc (reported)' is the test "
    f"accuracy of the round the objective was read from, for reporting only. {len(trials)} trial(s)"
)
failed = trials[trials["status"].isin(FAILED_STATUSES)]
st.subheader("Trials")
st.dataframe(trials[~trials["status"].isin(FAILED_STATUSES)], hide_index=True, width="stretch")
if not failed.empty:
    st.subheader("Failed trials (never eligible as best)")
    st.dataframe(failed, hide_index=True, width="stretch")
    trials = trials[~trials["status"].isin(FAILED_STATUSES)]

params = [p for p in info["search"] if p in trials]
primary = metrics[0]
if primary in trials and params:
    cols = st.columns(min(len(params), 3))
    for i, p in enumerate(params):
        cols[i % len(cols)].altair_chart(param_scatter(trials.dropna(subset=[primary, p]), p, primary), width="stretch")

imp, why = importance(trials, info)
if why:
    st.info(why)
else:
    st.altair_chart(importance_chart(imp), width="stretch")

if len(metrics) > 1 and "pareto" in trials:
    st.altair_chart(pareto_chart(trials.dropna(subset=metrics), metrics[1], metrics[0]), width="stretch")
    st.subheader("Pareto set")
    st.dataframe(trials[trials["pareto"]], hide_index=True, width="stretch")
elif primary in trials:
    st.subheader("Best configurations")
    best = trials.dropna(subset=[primary]).sort_values(primary, ascending=info["modes"][0] == "min").head(5)
    st.dataframe(best, hide_index=True, width="stretch")
