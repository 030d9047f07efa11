"""The Streamlit app over the results lake: `streamlit run app.py [-- --root DIR]`.

The lake root comes from --root, else $STUDY_RESULTS, else ./results (the README demo's lake);
the sidebar can change it. The app only reads Parquet."""

import argparse
import os
import sys

import streamlit as st

from study.app.context import current_lake, lake_version
from study.app.lake import FILTERS


def default_root() -> str:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--root")
    args, _ = parser.parse_known_args(sys.argv[1:])
    return args.root or os.environ.get("STUDY_RESULTS") or "results"


st.set_page_config(page_title="Lottery-ticket studies", layout="wide")
if "root" not in st.session_state:
    st.session_state["root"] = default_root()

with st.sidebar:
    st.text_input("Results lake", key="root", help="the root of a results lake: a folder or s3://bucket/prefix")
    lake = current_lake()
    for key in FILTERS:
        options = sorted(lake.rounds[key].dropna().unique().tolist()) if not lake.rounds.empty else []
        st.multiselect(key, options, key=f"filter_{key}", placeholder="all")
    live = st.toggle("Live: refresh as rounds land", value=True)

if live:
    seen = lake_version()

    @st.fragment(run_every="3s")
    def watch_lake() -> None:
        if lake_version() != seen:
            st.rerun()

    with st.sidebar:
        watch_lake()

# every page is always there: one without data here says what it would show and how to measure it
pages = [
    st.Page("study/app/pages/strategies.py", title="Strategies", icon=":material/show_chart:", default=True),
    st.Page("study/app/pages/search.py", title="Search", icon=":material/tune:"),
    st.Page("study/app/pages/lineage.py", title="Lineage", icon=":material/account_tree:"),
    st.Page("study/app/pages/stability.py", title="Stability", icon=":material/linear_scale:"),
    st.Page("study/app/pages/masks.py", title="Masks", icon=":material/grid_on:"),
    st.Page("study/app/pages/sequences.py", title="Sequence models", icon=":material/segment:"),
    st.Page("study/app/pages/data.py", title="Data", icon=":material/download:"),
]
st.navigation(pages).run()
