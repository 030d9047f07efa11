"""The Streamlit app (AppTest) on a small real lake written by the engine and a real Ray study."""

import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import streamlit as st
from conftest import synthetic_spec_dict
from streamlit.testing.v1 import AppTest

from study.engine.lineage import RunContext
from study.engine.spec import lineage_spec_from_dict
from study.lake.files import round_path, write_lineage
from study.lake.recorder import run_to_lake
from study.lake.schema import ROUNDS_SCHEMA

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAGES = {
    "search": "study/app/pages/search.py",
    "lineage": "study/app/pages/lineage.py",
    "data": "study/app/pages/data.py",
    "sequences": "study/app/pages/sequences.py",
    "stability": "study/app/pages/stability.py",
    "masks": "study/app/pages/masks.py",
}
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def lake(app_lake):
    return app_lake


def app(root, monkeypatch, **filters) -> AppTest:
    st.cache_data.clear()
    monkeypatch.setenv("STUDY_RESULTS", str(root))
    at = AppTest.from_file(APP, default_timeout=60)
    for key, values in filters.items():
        at.session_state[f"filter_{key}"] = values
    return at.run()


def specs(at):
    return [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]


def layers(spec):
    return spec.get("layer", [spec])


def test_strategies_page_plots_accuracy_and_early_stop_against_log_remaining(lake, monkeypatch):
    from study.lake.reader import read_rounds

    at = app(lake, monkeypatch, study=["compare"])
    assert not at.exception
    charts = specs(at)
    assert len(charts) == 5
    for spec, cost in zip(charts[3:], ("compression_ratio", "theoretical_speedup"), strict=True):
        bars, line = layers(spec)
        assert line["encoding"]["x"]["field"] == cost and line["encoding"]["x"]["scale"]["type"] == "log"
        assert bars["mark"]["type"] == "errorbar" and bars["encoding"]["y2"]["field"] == "hi"
        rows = read_rounds(lake, "compare").table.to_pandas()
        assert (rows.loc[rows["round"] == 0, cost] == 1.0).all(), "a dense round costs exactly the dense network"
        assert rows[cost].max() > 1.0
    for spec, _y in zip(charts[:2], ("test_acc", "early_stop_iteration"), strict=True):
        line = layers(spec)[1]
        x = line["encoding"]["x"]
        assert x["field"] == "remaining_pct" and x["scale"]["type"] == "log" and x["scale"]["reverse"] is True
        assert line["encoding"]["color"]["field"] == "series" and line["mark"]["type"] == "line"
        band = layers(spec)[0]
        assert band["mark"]["type"] == "area" and band["encoding"]["y2"]["field"] == "hi"
    tickets = at.dataframe[1].value
    assert set(tickets["series"]) == {"imp", "random_prune", "imp.random_reinit"}
    assert (tickets["seeds"] == 2).all() and tickets["test 95% CI"].str.startswith("[").all()
    assert (tickets["% remaining"] <= 100).all()
    # the ticket is chosen on validation accuracy (1 point below dense, the slider's default), test is reported
    rows = read_rounds(lake, "compare").table.to_pandas()
    for series, got in tickets.set_index("series").iterrows():
        mean = rows[rows["strategy"].astype(str) == series].groupby("round")[["val_acc", "test_acc"]].mean()
        trunk = series.split(".")[0]  # a branch's dense round is its trunk's (the lake holds it once)
        dense = rows[(rows["strategy"].astype(str) == trunk) & (rows["round"] == 0)]["val_acc"].mean()
        assert (0 in mean.index) == (trunk == series)
        ok = [r for r in mean.index if mean.loc[r, "val_acc"] >= dense - 0.01] or [0]
        assert got["round"] == max(ok), series
        assert got["test acc (reported)"] == pytest.approx(mean.loc[max(ok), "test_acc"], abs=1e-12)


def test_strategies_page_shows_the_paired_difference_of_trunk_and_branch_per_seed(lake, monkeypatch):
    """The paired chart's numbers, recomputed from the raw round files: per round, the mean over
    seeds of (imp − its random_reinit branch) and the t band of those differences."""
    from conftest import raw_rows

    at = app(lake, monkeypatch, study=["compare"])
    paired = at.dataframe[0].value.set_index("round")
    assert set(paired["pair"]) == {"imp − imp.random_reinit"} and list(paired.index) == [1, 2, 3]
    rows = [r for r in raw_rows(lake) if r["study"] == "compare"]
    acc = {(r["seed"], r["round"], str(r["strategy"])): r["test_acc"] for r in rows}
    for round_ in (1, 2, 3):
        diffs = [acc[(s, round_, "imp")] - acc[(s, round_, "imp.random_reinit")] for s in (0, 1)]
        mean = sum(diffs) / 2
        half = 12.706 * abs(diffs[0] - diffs[1]) / 2**0.5 / 2**0.5  # t(1) · sd / √2, sd = |a − b| / √2
        assert paired.loc[round_, "mean"] == pytest.approx(mean, abs=1e-4)
        assert paired.loc[round_, "band"] == f"[{mean - half:+.3f}, {mean + half:+.3f}]"
        assert paired.loc[round_, "n"] == 2
    line = layers(specs(at)[2])[1]
    assert line["encoding"]["color"]["field"] == "pair" and line["encoding"]["x"]["field"] == "remaining_pct"


def test_stability_page_plots_the_barrier_against_sparsity_and_rewind_point(lake, monkeypatch):
    """The barrier table recomputed from the raw instability files: per (rewind point, round) the
    mean over two seeds and its t(1) band."""
    from conftest import raw_rows

    at = app(lake, monkeypatch, study=["stability"])
    at.switch_page(PAGES["stability"]).run()
    assert not at.exception
    remaining, rewind, path = specs(at)
    assert layers(remaining)[1]["encoding"]["x"]["field"] == "remaining_pct"
    assert layers(rewind)[1]["encoding"]["x"]["field"] == "rewind_iteration"
    assert layers(path)[1]["encoding"]["x"]["field"] == "alpha"
    table = at.dataframe[0].value.set_index(["series", "round"])
    raw = [r for r in raw_rows(lake, "instability") if r["study"] == "stability"]
    assert len(raw) == 8 and len(table) == 4
    for k in (0, 20):
        for round_ in (0, 2):
            values = [r["test_error_barrier"] for r in raw if r["rewind_iteration"] == k and r["round"] == round_]
            mean, half = sum(values) / 2, 12.706 * abs(values[0] - values[1]) / 2
            got = table.loc[(f"imp · k={k}", round_)]
            assert got["mean"] == pytest.approx(mean, abs=1e-4) and got["n"] == 2
            assert got["band"] == f"[{mean - half:.3f}, {mean + half:.3f}]"
    at.radio(key="stability_split").set_value("validation (selects)").run()
    got = at.dataframe[0].value.set_index(["series", "round"]).loc[("imp · k=20", 2), "mean"]
    values = [r["val_error_barrier"] for r in raw if r["rewind_iteration"] == 20 and r["round"] == 2]
    assert got == pytest.approx(sum(values) / 2, abs=1e-4)


def test_masks_page_heat_map_of_overlap_between_seeds_strategies_and_rounds(lake, monkeypatch):
    """The overlap table recomputed from the raw masks files with numpy, for the first layer."""
    import numpy as np
    from conftest import raw_rows

    at = app(lake, monkeypatch, study=["compare"])
    at.switch_page(PAGES["masks"]).run()
    assert not at.exception
    (heat,) = specs(at)
    rect, text = heat["spec"]["layer"]
    assert rect["mark"]["type"] == "rect" and rect["encoding"]["color"]["field"] == "shade", "colour: ratio to chance"
    assert text["encoding"]["text"]["field"] == "ratio" and heat["resolve"]["scale"]["x"] == "independent"
    raw = [r for r in raw_rows(lake, "masks") if r["study"] == "compare"]

    def bits(strategy, seed, round_):
        (row,) = [r for r in raw if str(r["strategy"]) == strategy and r["seed"] == seed and r["round"] == round_]
        size = dict(row["layer_size"])["fc1.weight"]
        return np.unpackbits(np.frombuffer(dict(row["layer_bits"])["fc1.weight"], dtype=np.uint8))[:size].astype(bool)

    def jac(a, b):
        return (a & b).sum() / (a | b).sum()

    table = at.dataframe[0].value
    seeds = table[(table["series"] == "imp") & (table["layer"] == "fc1.weight")].set_index("round")
    for round_ in (1, 2, 3):
        a, b = bits("imp", 0, round_), bits("imp", 1, round_)
        assert seeds.loc[round_, "mean"] == pytest.approx(jac(a, b), abs=1e-4)
        p, q = a.mean(), b.mean()  # random masks of these densities share p·q / (p + q − p·q) on average
        assert seeds.loc[round_, "ratio"] == pytest.approx(jac(a, b) / (p * q / (p + q - p * q)), rel=1e-6)
    at.radio(key="masks_compare").set_value("consecutive rounds").run()
    table = at.dataframe[0].value
    rounds = table[(table["series"] == "imp") & (table["layer"] == "fc1.weight")].set_index("round")
    expected = np.mean([jac(bits("imp", s, 1), bits("imp", s, 2)) for s in (0, 1)])
    assert rounds.loc[2, "mean"] == pytest.approx(expected, abs=1e-4)
    at.radio(key="masks_compare").set_value("between strategies").run()
    at.selectbox(key="masks_first").set_value("imp").run()
    at.selectbox(key="masks_second").set_value("random_prune").run()
    table = at.dataframe[0].value
    pair = table[table["layer"] == "fc1.weight"].set_index("round")
    expected = np.mean([jac(bits("imp", s, 3), bits("random_prune", s, 3)) for s in (0, 1)])
    assert pair.loc[3, "mean"] == pytest.approx(expected, abs=1e-4)
    assert pair.loc[3, "chance"] < pair.loc[1, "chance"], "sparser masks overlap less by chance"


def test_filters_narrow_every_page(lake, monkeypatch):
    at = app(lake, monkeypatch, study=["compare"], strategy=["imp"])
    assert not at.exception
    assert set(at.dataframe[0].value["series"]) == {"imp"}
    at.switch_page(PAGES["data"]).run()
    table = at.dataframe[0].value
    assert set(table["strategy"]) == {"imp"} and len(table) == 8  # 2 seeds x 4 rounds


def test_search_page_shows_trials_importance_and_best(lake, monkeypatch):
    at = app(lake, monkeypatch, study=["searched"])
    at.switch_page(PAGES["search"]).run()
    assert not at.exception
    trials = at.dataframe[0].value
    assert len(trials) == 4 and set(trials["optuna trial"]) == {0, 1, 2, 3}
    assert {"strategy", "prune.rates.fc", "objective_sparsest_within"} <= set(trials.columns)
    assert (trials["seeds"] == 2).all() and (trials["status"] == "finished").all()
    charts = specs(at)
    scatter = [c["layer"][0] for c in charts if " vs " in str(c.get("title", ""))]
    assert {c["encoding"]["x"]["field"] for c in scatter} == {"strategy", "prune_rates_fc"}, (
        "no dots: Vega-Lite nests them"
    )
    assert {c["encoding"]["x"]["title"] for c in scatter} == {"strategy", "prune.rates.fc"}
    assert all(c["encoding"]["color"]["field"] == "strategy" for c in scatter), "slice plots coloured by strategy"
    bars = [c for c in charts if c.get("mark", {}).get("type") == "bar"]
    assert len(bars) == 1 and bars[0]["encoding"]["x"]["field"] == "importance"
    best = at.dataframe[1].value
    assert best["objective_sparsest_within"].iloc[0] == trials["objective_sparsest_within"].min()


def test_search_page_draws_the_pareto_front(lake, monkeypatch):
    at = app(lake, monkeypatch, study=["paretos"])
    at.switch_page(PAGES["search"]).run()
    assert not at.exception
    pareto = [c for c in specs(at) if str(c.get("title", "")).startswith("Pareto front")]
    assert len(pareto) == 1
    points = pareto[0]["layer"][1]
    assert points["encoding"]["color"]["field"] == "pareto"
    assert points["encoding"]["x"]["field"] == "pareto_remaining_pct"
    assert points["encoding"]["y"]["field"] == "pareto_val_acc"
    front = at.dataframe[1].value
    assert len(front) >= 1 and front["pareto"].all()


def test_lineage_page_curves_and_sparsity_heatmap(lake, monkeypatch):
    at = app(lake, monkeypatch, study=["compare"], strategy=["imp"])
    at.switch_page(PAGES["lineage"]).run()
    assert not at.exception
    rounds = at.dataframe[0].value
    assert list(rounds["round"]) == [0, 1, 2, 3]
    curves, heat = specs(at)
    assert curves["encoding"]["x"]["field"] == "iteration" and curves["encoding"]["color"]["field"] == "round"
    assert heat["mark"]["type"] == "rect" and heat["encoding"]["y"]["field"] == "layer"
    assert heat["encoding"]["color"]["field"] == "remaining_pct"
    assert heat["height"] == {"step": 28}, "one 28 px row per layer (a numpy height would not serialise)"


def test_lineage_page_tells_a_trunk_from_its_branch_under_one_trial_id(lake, monkeypatch):
    at = app(lake, monkeypatch, study=["compare"], strategy=["imp", "imp.random_reinit"])
    at.switch_page(PAGES["lineage"]).run()
    picker = at.selectbox(key="lineage_trial")
    assert len(picker.options) == 4, "2 seeds x (trunk, branch): four lineages under two trial ids"
    branch = next(i for i, label in enumerate(picker.options) if "imp.random_reinit" in label)
    picker.select_index(branch).run()
    assert not at.exception
    assert list(at.dataframe[0].value["round"]) == [1, 2, 3], "the branch's own rounds, not its trunk's"


def test_data_page_downloads_filtered_rows_in_the_canonical_schema(lake, monkeypatch):
    at = app(lake, monkeypatch, study=["compare"])
    at.switch_page(PAGES["data"]).run()
    assert not at.exception
    assert len(at.dataframe[0].value) == 22  # 2 seeds x (4 imp + 3 of its branch + 4 random_prune) rounds
    buttons = at.get("download_button")
    assert [b.proto.label for b in buttons] == ["Download CSV", "Download Parquet"]


def test_parquet_download_is_the_canonical_schema(lake):
    from study.app.lake import filter_rows, load_lake

    view = load_lake(lake)
    rows = filter_rows(view.rounds, {"study": ["compare"], "strategy": ["imp"]})
    table = view.rounds_table.take(rows["row"].to_numpy())
    buf = io.BytesIO()
    pq.write_table(table, buf)
    back = pq.read_table(io.BytesIO(buf.getvalue()))
    assert back.schema.equals(ROUNDS_SCHEMA, check_metadata=False) and back.num_rows == 8


def test_missing_and_empty_lakes_give_messages_not_tracebacks(tmp_path, monkeypatch):
    at = app(tmp_path / "nowhere", monkeypatch)
    assert not at.exception and "No results lake" in at.info[0].value
    (tmp_path / "empty").mkdir()
    at = app(tmp_path / "empty", monkeypatch)
    assert not at.exception and "no finished rounds yet" in at.info[0].value


def test_corrupt_file_and_orphan_lineage_are_reported(lake, tmp_path, monkeypatch):
    import shutil

    root = tmp_path / "damaged"
    shutil.copytree(lake, root)
    bad = Path(round_path(root, "compare", "imp", "broken", 0))
    bad.write_bytes(b"PAR1 truncated")
    write_lineage(
        root,
        {
            "study": "compare",
            "strategy": "imp",
            "trial_id": "orphan",
            "lineage_id": "l",
            "config_hash": "h",
            "status": "running",
            "rounds_done": 0,
        },
    )
    for page in (None, *PAGES.values()):
        at = app(root, monkeypatch)
        if page:
            at.switch_page(page).run()
        assert not at.exception, page
        assert "unreadable file" in at.warning[0].value and "broken-r000" in at.warning[0].value
    assert any("1 running" in c.value for c in at.caption)


def test_new_rounds_show_up_without_a_restart(lake, tmp_path, monkeypatch):
    import shutil

    root = tmp_path / "live"
    shutil.copytree(lake, root)
    at = app(root, monkeypatch, study=["compare"])
    at.switch_page(PAGES["data"]).run()
    assert len(at.dataframe[0].value) == 22  # 2 seeds x (4 imp + 3 of its branch + 4 random_prune) rounds
    run_to_lake(
        lineage_spec_from_dict(synthetic_spec_dict(strategy="imp", seed=2, rounds=1)),
        root,
        study="compare",
        context=RunContext(threads=1),
    )
    at.run()
    assert len(at.dataframe[0].value) == 24


def test_bands_use_student_t_over_few_seeds():
    import pandas as pd

    from study.analysis.bands import t95
    from study.app.lake import seed_bands

    df = pd.DataFrame(
        {"series": ["a", "a"], "round": [0, 0], "remaining_pct": [100.0, 100.0], "test_acc": [0.50, 0.90]}
    )
    band = seed_bands(df, "test_acc").iloc[0]
    half = 12.706 * df["test_acc"].std() / 2**0.5
    assert band["mean"] == pytest.approx(0.70) and band["hi"] == 1.0, "clipped at 1 for an accuracy"
    assert band["lo"] == 0.0, "clipped at 0 for a non-negative metric"
    loss = seed_bands(df.rename(columns={"test_acc": "val_loss"}), "val_loss").iloc[0]
    assert loss["hi"] == pytest.approx(0.70 + half), "a loss has no upper bound"
    assert t95(100) == 1.96 and t95(4) == pytest.approx(2.776)


def test_sequence_models_page_claims_with_bands_baselines_and_trees(lake, monkeypatch):
    from study.lake.reader import read_rounds

    at = app(lake, monkeypatch, study=["sequences"])
    at.switch_page(PAGES["sequences"]).run()
    assert not at.exception
    charts = specs(at)
    ppl = charts[0]["layer"][1]
    assert ppl["encoding"]["x"]["field"] == "remaining_pct" and ppl["encoding"]["x"]["scale"]["reverse"] is True
    rows = read_rounds(lake, "sequences").table.to_pylist()
    on = next(r for r in rows if r["model"] == "onlstm_lm" and r["round"] == 0)
    lstm = next(r for r in rows if r["model"] == "lstm_lm" and r["round"] == 0)
    parse = next(c for c in charts if c.get("title") == "Parse F1 of the dense models (test sentences)")
    tables = [t.value for t in at.dataframe]
    parse_rows = next(t for t in tables if "parser" in t).to_dict("records")
    bars = {(r["series"], r["parser"]): r["mean"] for r in parse_rows}
    assert bars[("onlstm_lm · imp", "layer1")] == pytest.approx(dict(on["parse_f1"])["layer1"], abs=5e-4)
    assert bars[("onlstm_lm · imp", "balanced")] == pytest.approx(dict(on["parse_baselines"])["balanced"], abs=5e-4)
    # the LSTM has no distances: its parse is the right-branching tree of its own sentences
    assert bars[("lstm_lm · imp", "no distances (right-branching)")] == pytest.approx(
        dict(lstm["parse_baselines"])["right_branching"], abs=5e-4
    )
    assert [layer["mark"]["type"] for layer in parse["layer"]] == ["bar", "rule"], "mean bars, 95% band rules"
    logic = next(r for r in rows if r["model"] == "onlstm_classifier" and r["round"] == 0)
    assert any(str(c.get("title", "")).startswith("Accuracy per operator count") for c in charts)
    by_length = {r["length"]: r for r in next(t for t in tables if "length" in t).to_dict("records")}
    assert by_length[12]["mean"] == pytest.approx(dict(logic["accuracy_by_length"])["12"], abs=5e-4)
    assert by_length[12]["chance"] == pytest.approx(dict(logic["chance_by_length"])["12"], abs=5e-4)
    titles = [str(c.get("title", "")) for c in charts]
    assert "parse F1, layer1 against sparsity" in titles and "test accuracy, 7-12 operators against sparsity" in titles
    gold, induced = charts[-2], charts[-1]
    assert gold["title"] == "gold tree" and induced["title"].startswith("induced from layer")
    assert [layer["mark"]["type"] for layer in gold["layer"]] == ["rule", "text"]
    assert any("grammar's own perplexity" in c.value for c in at.caption)


def test_pages_without_data_say_what_they_would_show_and_how_to_measure_it(tmp_path, monkeypatch):
    """A vision lake of one lineage: every page is there (no 'Page not found'); those with nothing to
    show say so, with the setting that would measure it (the report's 'not measured here' list)."""
    from study.app.tables import ABSENT

    run_to_lake(
        lineage_spec_from_dict(synthetic_spec_dict(rounds=1)), tmp_path, study="vision", context=RunContext(threads=1)
    )
    for page, kind in (("sequences", "sequences"), ("stability", "instability"), ("search", "search")):
        at = app(tmp_path, monkeypatch)
        at.switch_page(PAGES[page]).run()
        assert not at.exception, page
        assert [i.value for i in at.info] == [ABSENT[kind].sentence()], page
    assert "instability: {rounds:" in ABSENT["instability"].how and "branches:" in ABSENT["paired"].how


def chart_rows(element, layer=None):
    """The rows a chart (an AppTest element) draws, or one of its layers: Streamlit ships each named
    Vega-Lite dataset as Arrow beside the spec."""
    import pyarrow as pa

    spec = json.loads(element.proto.spec)
    name = (spec if layer is None or "data" not in spec["layer"][layer] else spec["layer"][layer])["data"]["name"]
    (data,) = [d.data.data for d in element.proto.datasets if d.name == name]
    return pa.ipc.open_stream(data).read_all().to_pylist()


def test_search_page_standard_views_plot_the_objective_recomputed_from_raw_files(lake, monkeypatch):
    """Optimisation history (with the best so far), objective per round per trial, parallel
    coordinates and the trial timeline of study 'searched', against the raw round and lineage files:
    a trial's objective after round r is the sparsest seed-mean % left, among rounds 0..r, whose
    seed-mean validation accuracy is within 1 point of the dense round's."""
    from conftest import raw_rows

    at = app(lake, monkeypatch, study=["searched"])
    at.switch_page(PAGES["search"]).run()
    assert not at.exception
    charts = {str(json.loads(c.proto.spec).get("title", "")).split(" (")[0]: c for c in at.get("vega_lite_chart")}
    lineages = [r for r in raw_rows(lake, "lineages", "searched")]
    rows = raw_rows(lake, "rounds", "searched")
    expected, compute = {}, {}
    for number in {r["optuna_trial_number"] for r in lineages}:
        ids = {r["trial_id"] for r in lineages if r["optuna_trial_number"] == number}
        mine = [r for r in rows if r["trial_id"] in ids]
        val = {k: sum(r["val_acc"] for r in mine if r["round"] == k) / 2 for k in range(3)}
        left = {k: sum(r["remaining_pct"] for r in mine if r["round"] == k) / 2 for k in range(3)}
        expected[number] = [min(left[k] for k in range(r + 1) if val[k] >= val[0] - 0.01) for r in range(3)]
        compute[number] = sum(r["wall_seconds"] for r in mine)
    history = sorted(chart_rows(charts["Optimisation history"]), key=lambda r: r["optuna trial"])
    assert [h["value"] for h in history] == pytest.approx([expected[n][-1] for n in sorted(expected)], abs=1e-9)
    running = [min(expected[n][-1] for n in sorted(expected)[: i + 1]) for i in range(len(expected))]
    assert [h["best"] for h in history] == pytest.approx(running, abs=1e-9), "best so far: a running minimum"
    per_round = chart_rows(charts["Objective after each round, per trial"])
    assert len(per_round) == 3 * len(expected)
    for p in per_round:
        assert p["value"] == pytest.approx(expected[p["optuna trial"]][p["round"]], abs=1e-9)
    fc = {r["optuna_trial_number"]: json.loads(r["config_json"])["prune"]["rates"]["fc"] for r in lineages}
    lines = [r for r in chart_rows(charts["Parallel coordinates"], layer=1) if r["axis"] == "prune.rates.fc"]
    assert {r["optuna trial"]: r["position"] for r in lines} == pytest.approx(
        {n: (v - 0.2) / (0.6 - 0.2) for n, v in fc.items()}, abs=1e-9
    ), "each axis spans the searched range"
    spans = chart_rows(charts["Trial timeline"])
    assert {s["optuna trial"]: s["compute s"] for s in spans} == pytest.approx(compute, abs=1e-6)


def test_log_searched_parameters_get_log_axes():
    """A learning rate searched log-uniformly sits on a log axis: in the slice plot's scale and at
    its log position on the parallel coordinates (hand-computed)."""
    import math

    import pandas as pd

    from study.app.charts import param_scatter
    from study.app.search_views import parallel

    spec = {"train.lr": {"type": "log_float", "low": 3e-4, "high": 3e-3}}
    trials = pd.DataFrame(
        {"optuna trial": [0, 1], "configuration": ["#0", "#1"], "strategy": ["imp"] * 2, "train.lr": [4.2e-4, 2e-3]}
    ).assign(objective=[20.0, 30.0])
    chart = param_scatter(trials, "train.lr", "objective", spec["train.lr"]).to_dict()
    assert chart["layer"][0]["encoding"]["x"]["scale"]["type"] == "log"
    lines, _ = parallel(trials, spec, "objective")
    got = lines[lines["axis"] == "train.lr"].set_index("optuna trial")["position"]
    assert got[0] == pytest.approx((math.log10(4.2e-4) - math.log10(3e-4)) / 1.0)  # the range spans one decade


def test_a_chart_is_tall_enough_for_every_entry_of_its_legend():
    """Streamlit fits a whole chart, axes included, into its height and clips the legend below it:
    with 12 configurations the Strategies page showed 10 legend entries. Under Streamlit's chart
    theme one legend row takes 30 px (measured on a screenshot in Chromium) and the legend's
    title and padding about 50 px more."""
    import pandas as pd

    from study.app.charts import band_chart, paired_chart, rounds_chart

    names = [f"#{i} imp fc=0.{i}" for i in range(12)]
    cells = pd.DataFrame(
        [
            {"series": s, "pair": s, "configuration": s, "optuna trial": i, "round": r, "remaining_pct": 100 * 0.8**r,
             "mean": 0.9, "lo": 0.85, "hi": 0.95, "n": 2, "value": 0.9, "strategy": "imp"}
            for i, s in enumerate(names) for r in range(3)
        ]
    )  # fmt: skip
    needed = 12 * 30 + 50
    for chart in (band_chart(cells, "t", "acc"), paired_chart(cells, "diff"), rounds_chart(cells, "val_acc")):
        assert chart.to_dict()["height"] >= needed


def test_a_y_axis_title_longer_than_its_plot_is_broken_into_lines():
    """A rotated y title longer than the plot pushed Vega's chart title above what the app shows
    (the Search page's 'Objective after each round' and optimisation history lost theirs). A
    280 px chart leaves (280 - 110) / 7.5 = 22 characters per line (hand-computed)."""
    import pandas as pd

    from study.app.charts import axis_title, history_chart, rounds_chart

    assert axis_title("test accuracy", 280) == "test accuracy"
    assert axis_title("objective_sparsest_within (log scale)", 280) == ["objective_sparsest_", "within (log scale)"]
    per_round = pd.DataFrame(
        {"configuration": ["#0"] * 2, "optuna trial": [0, 0], "round": [0, 1], "remaining_pct": [100, 80],
         "value": [100.0, 80.0], "strategy": ["imp"] * 2}
    )  # fmt: skip
    points = per_round.assign(best=[100.0, 80.0])
    rounds = rounds_chart(per_round, "objective_sparsest_within").to_dict()["encoding"]["y"]["title"]
    history = history_chart(points, "objective_sparsest_within", "min").to_dict()["layer"][1]["encoding"]["y"]["title"]
    for title in (rounds, history):
        assert isinstance(title, list) and all(len(line) <= 22 for line in title), title
