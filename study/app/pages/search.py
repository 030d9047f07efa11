import streamlit as st

from study.analysis.findings import MIN_TRIALS_FOR_IMPORTANCE
from study.app.charts import (
    contour_chart,
    history_chart,
    importance_chart,
    parallel_chart,
    param_scatter,
    pareto_chart,
    rounds_chart,
    timeline_chart,
)
from study.app.context import current_lake, explain_absent, require_rows, selected_filters, show_table
from study.app.search import importance, study_info, study_trials
from study.app.search_views import best_trials, contour, contour_params, history, parallel, per_round, timeline
from study.lake.schema import FAILED_STATUSES

st.title("Search")
lake = current_lake()
require_rows(lake)
wanted = selected_filters()["study"]
names = [s for s in lake.studies["study"].tolist() if not wanted or s in wanted]
if not names:
    explain_absent("search")
name = st.selectbox("study", names, key="search_study")
info = study_info(lake, name)
assert info is not None  # name is one of the studies the lake holds
trials = study_trials(lake, name, info)
if trials.empty:
    st.info(f"Study {name} has no trials with results yet.")
    st.stop()
metrics, modes = info["metrics"], info["modes"]
primary, mode = metrics[0], modes[0]
st.caption(
    f"objective: {info['objective']} ({', '.join(f'{m} ({d})' for m, d in zip(metrics, modes, strict=True))}), "
    f"computed on validation data, which is all the search ever saw; 'test acc (reported)' is the test "
    f"accuracy of the round the objective was read from, for reporting only. {len(trials)} trial(s); each is "
    f"named by its Optuna trial number and searched values, with its configuration id beside it."
)
failed = trials[trials["status"].isin(FAILED_STATUSES)]
done = trials[~trials["status"].isin(FAILED_STATUSES)]
best = best_trials(done, primary, mode) if len(metrics) == 1 else done.get("pareto")
st.subheader("Trials (click a header to sort; highlighted: best)")
show_table(done, best=best, key="trials_table")
if not failed.empty:
    st.subheader("Failed trials (never eligible as best)")
    show_table(failed, key="failed_table")

if primary in done:
    st.altair_chart(history_chart(history(done, primary, mode), primary, mode), width="stretch")
    lines, ticks = parallel(done, info["search"], primary)
    if not lines.empty:
        st.altair_chart(parallel_chart(lines, ticks, primary), width="stretch")
rounds = per_round(lake, name, info)
if not rounds.empty:
    st.altair_chart(rounds_chart(rounds, primary), width="stretch")

imp, why = importance(done, info)
pair = contour_params(done, info["search"], imp if not why else None)
if primary in done and len(pair) == 2:
    grid = contour(done, info["search"], pair[0], pair[1], primary)
    if not grid.empty:
        st.altair_chart(contour_chart(grid, done, pair[0], pair[1], primary, info["search"]), width="stretch")
spans = timeline(lake, name)
if not spans.empty:
    st.altair_chart(timeline_chart(spans), width="stretch")

params = [p for p in info["search"] if p in done]
if primary in done and params:
    st.subheader("Each searched value against the objective (slice plots)")
    cols = st.columns(min(len(params), 3))
    for i, p in enumerate(params):
        shown = done.dropna(subset=[primary, p])
        cols[i % len(cols)].altair_chart(
            param_scatter(shown, p, primary, info["search"][p], best_trials(shown, primary, mode)), width="stretch"
        )

if why:
    st.info(why)
else:
    n = len(done.dropna(subset=[primary])) if primary in done else 0
    caveat = (
        f"{n} trials, a hint only (fewer than {MIN_TRIALS_FOR_IMPORTANCE})" if n < MIN_TRIALS_FOR_IMPORTANCE else None
    )
    st.altair_chart(importance_chart(imp, caveat), width="stretch")

if len(metrics) > 1 and "pareto" in done:
    st.altair_chart(pareto_chart(done.dropna(subset=metrics), metrics[1], metrics[0]), width="stretch")
    st.subheader("Pareto set")
    show_table(done[done["pareto"]], key="pareto_table")
elif primary in done:
    st.subheader("Best configurations")
    top = done.dropna(subset=[primary]).sort_values(primary, ascending=mode == "min").head(5)
    show_table(top, key="best_table")
