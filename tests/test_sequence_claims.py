"""The ON-LSTM claims' tables (analysis/sequences.py) against values worked by hand."""

import math

import pandas as pd
import pytest

from study.analysis.sequences import DISTANCE_FREE, accuracy_by_length, parse_table, sparsity_curves

T95_2 = 4.303  # Student t, two-sided 95%, 2 degrees of freedom (3 seeds)
TRIVIAL = {"right_branching": 0.4, "left_branching": 0.25, "balanced": 0.375, "random": 0.25}


def row(series, seed, round_=0, remaining=100.0, f1=None, baselines=TRIVIAL, acc=None, chance=None):
    return {
        "series": series,
        "trial_id": f"{series}-s{seed}",
        "seed": seed,
        "round": round_,
        "remaining_pct": remaining,
        "parse_f1": f1,
        "parse_baselines": baselines,
        "accuracy_by_length": acc,
        "chance_by_length": chance,
    }


def test_parse_table_bands_every_layer_against_every_trivial_tree_and_the_lstm():
    rows = pd.DataFrame(
        [row("onlstm", s, f1={"layer1": v, "layer2": 0.5}) for s, v in enumerate((0.6, 0.7, 0.8))]
        + [row("onlstm", s, round_=1, remaining=50.0, f1={"layer1": 0.1, "layer2": 0.1}) for s in range(3)]
        + [row("lstm", s) for s in range(3)]
    )
    table = parse_table(rows).set_index(["series", "parser"])
    layer1 = table.loc[("onlstm", "layer1")]
    half = T95_2 * 0.1 / math.sqrt(3)  # sd of (0.6, 0.7, 0.8) is 0.1
    assert layer1["mean"] == pytest.approx(0.7)
    assert (layer1["lo"], layer1["hi"]) == (pytest.approx(0.7 - half), pytest.approx(0.7 + half))
    assert layer1["n"] == 3 and layer1["over_best_trivial"] == pytest.approx(0.3)
    assert table.loc[("onlstm", "layer2"), "over_best_trivial"] == pytest.approx(0.1)
    assert table.loc[("onlstm", "balanced"), "mean"] == pytest.approx(0.375)
    assert table.loc[("lstm", DISTANCE_FREE), "mean"] == pytest.approx(0.4), "an LSTM parses right-branching"
    assert table.loc[("lstm", DISTANCE_FREE), "over_best_trivial"] == pytest.approx(0.0)
    assert ("onlstm", DISTANCE_FREE) not in table.index
    assert list(parse_table(rows, round_=1).set_index(["series", "parser"]).loc[("onlstm", "layer1"), ["mean"]]) == [
        pytest.approx(0.1)
    ]
    # layers first, then the trivial trees in a fixed order
    assert list(table.loc["onlstm"].index) == [
        "layer1",
        "layer2",
        "right_branching",
        "left_branching",
        "balanced",
        "random",
    ]


def test_accuracy_by_length_with_the_chance_line():
    acc = [{"1": 1.0, "12": 0.5}, {"1": 0.75, "12": 0.25}]
    rows = pd.DataFrame(
        [row("onlstm", s, acc=a, chance={"1": 0.75, "12": 0.5}, baselines=None) for s, a in enumerate(acc)]
    )
    table = accuracy_by_length(rows).set_index(["series", "length"])
    twelve = table.loc[("onlstm", 12)]
    assert twelve["mean"] == pytest.approx(0.375) and twelve["chance"] == pytest.approx(0.5)
    half = 12.706 * (0.25 / math.sqrt(2)) / math.sqrt(2)  # 2 seeds: t with 1 dof, sd = 0.25 / sqrt(2)
    assert twelve["mean"] - half < 0 and twelve["mean"] + half > 1
    assert (twelve["lo"], twelve["hi"]) == (0.0, 1.0), "an accuracy's band clipped to [0, 1]"
    assert list(table.loc["onlstm"].index) == [1, 12], "lengths sort as numbers"


def test_sparsity_curves_per_layer_and_long_formula_accuracy():
    rows = pd.DataFrame(
        [
            row("imp", 0, 0, 100.0, f1={"layer1": 0.5}, acc={"6": 1.0, "7": 0.5, "8": 0.25}),
            row("imp", 1, 0, 100.0, f1={"layer1": 0.75}, acc={"6": 1.0, "7": 1.0, "8": 0.75}),
            row("imp", 0, 1, 40.0, f1={"layer1": 0.25}, acc={"6": 0.5, "7": 0.0, "8": 0.5}),
            row("imp", 1, 1, 60.0, f1={"layer1": 0.25}, acc={"6": 0.5, "7": 0.5, "8": 0.0}),
        ]
    )
    curves = sparsity_curves(rows, lengths=(7, 8)).set_index(["series", "measure", "round"])
    assert curves.loc[("imp", "layer1", 0), "mean"] == pytest.approx(0.625)
    assert curves.loc[("imp", "layer1", 1), "remaining_pct"] == pytest.approx(50.0)
    # seed 0, round 0: mean of 0.5 and 0.25 over 7-8 operators; seed 1: of 1.0 and 0.75
    assert curves.loc[("imp", "accuracy 7-8", 0), "mean"] == pytest.approx((0.375 + 0.875) / 2)
    assert curves.loc[("imp", "accuracy 7-8", 1), "mean"] == pytest.approx(0.25)
    assert sparsity_curves(rows.assign(parse_f1=None, accuracy_by_length=None)).empty


def test_the_claims_know_every_trivial_tree_the_engine_scores():
    from study.analysis.sequences import BASELINES
    from study.engine.data.parsing import BASELINE_NAMES

    assert BASELINES == BASELINE_NAMES
