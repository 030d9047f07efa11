"""Altair charts of the app (checked in tests through their Vega-Lite specs)."""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd

REMAINING_AXIS = alt.X(
    "remaining_pct:Q", title="% of weights remaining (log scale)", scale=alt.Scale(type="log", reverse=True, nice=False)
)


def _mean_with_band(
    bands: pd.DataFrame, x: alt.X, color: alt.Color, y_title: str, tooltip: list, zero: bool = True
) -> alt.LayerChart:
    """The mean line of `bands` (points on it) over its 95% band (`lo` to `hi`); with
    zero=False the y axis need not include 0."""
    scale: dict[str, Any] = {} if zero else {"scale": alt.Scale(zero=False)}
    base = alt.Chart(bands).encode(x=x, color=color)
    band = base.mark_area(opacity=0.2).encode(y=alt.Y("lo:Q", title=y_title, **scale), y2="hi:Q")
    line = base.mark_line(point=True).encode(y=alt.Y("mean:Q", title=y_title, **scale), tooltip=tooltip)
    return band + line


def band_chart(bands: pd.DataFrame, title: str, y_title: str, digits: int = 4, height: int = 360) -> alt.LayerChart:
    """Mean line per series against % remaining (log axis, reversed as in the paper), with a
    95% band over seeds."""
    tooltip = [
        "series",
        "round",
        alt.Tooltip("remaining_pct:Q", format=".2f"),
        alt.Tooltip("mean:Q", format=f".{digits}f"),
        "n",
    ]
    color = alt.Color("series:N", title="strategy")
    return _mean_with_band(bands, REMAINING_AXIS, color, y_title, tooltip, zero=False).properties(
        title=title, height=height
    )


def paired_chart(pairs: pd.DataFrame, y_title: str) -> alt.LayerChart:
    """Mean paired difference (trunk − branch) per pair against % remaining, with its 95% band
    over seeds and a rule at 0 (above it the trunk wins)."""
    tooltip = [
        "pair",
        "round",
        alt.Tooltip("remaining_pct:Q", format=".2f"),
        alt.Tooltip("mean:Q", format=".4f"),
        alt.Tooltip("lo:Q", format=".4f"),
        alt.Tooltip("hi:Q", format=".4f"),
        "n",
    ]
    color = alt.Color("pair:N", title="trunk − branch")
    zero = alt.Chart(pd.DataFrame({"y": [0.0]})).mark_rule(strokeDash=[4, 4], color="gray").encode(y="y:Q")
    return (_mean_with_band(pairs, REMAINING_AXIS, color, y_title, tooltip) + zero).properties(height=320)


def rewind_chart(bands: pd.DataFrame, y_title: str) -> alt.LayerChart:
    """Barrier against the rewind iteration k, one line per strategy and round (its sparsity),
    with the 95% band over seeds: where a network becomes stable to SGD noise."""
    x = alt.X("rewind_iteration:Q", title="rewind iteration k")
    color = alt.Color("level:N", title="strategy · round")
    tooltip = ["level", "rewind_iteration", alt.Tooltip("mean:Q", format=".4f"), "n"]
    return _mean_with_band(bands, x, color, y_title, tooltip).properties(height=320)


def path_chart(bands: pd.DataFrame, y_title: str) -> alt.LayerChart:
    """Error along the straight line between the two copies (α = 0: the lineage's own, 1: the
    second), mean per series with the 95% band over seeds."""
    x = alt.X("alpha:Q", title="interpolation α")
    color = alt.Color("series:N", title="strategy · rewind")
    tooltip = ["series", "alpha", alt.Tooltip("mean:Q", format=".4f"), "n"]
    return _mean_with_band(bands, x, color, y_title, tooltip).properties(height=320)


def cost_chart(bands: pd.DataFrame, cost: str, x_title: str, y_title: str) -> alt.Chart:
    """Mean per series against a cost axis (log scale), with 95% error bars over seeds: the plot
    Blalock et al. (2020) ask pruning results to show."""
    x = alt.X(f"{cost}:Q", title=x_title, scale=alt.Scale(type="log", nice=False))
    base = alt.Chart(bands).encode(x=x, color=alt.Color("series:N", title="strategy"))
    bars = base.mark_errorbar().encode(y=alt.Y("lo:Q", title=y_title, scale=alt.Scale(zero=False)), y2="hi:Q")
    line = base.mark_line(point=True).encode(
        y=alt.Y("mean:Q", title=y_title, scale=alt.Scale(zero=False)),
        tooltip=["series", "round", alt.Tooltip(f"{cost}:Q", format=".2f"), alt.Tooltip("mean:Q", format=".4f"), "n"],
    )
    return (bars + line).properties(height=320)


def curves_chart(curves: pd.DataFrame) -> alt.Chart:
    return (
        alt.Chart(curves)
        .mark_line()
        .encode(
            x=alt.X("iteration:Q", title="training iteration"),
            y=alt.Y("value:Q", title=None, scale=alt.Scale(zero=False)),
            color=alt.Color("round:O", title="round"),
            row=alt.Row("metric:N", title=None),
            tooltip=["round", "iteration", alt.Tooltip("value:Q", format=".4f")],
        )
        .properties(height=180)
        .resolve_scale(y="independent")
    )


def sparsity_heatmap(cells: pd.DataFrame) -> alt.Chart:
    return (
        alt.Chart(cells)
        .mark_rect()
        .encode(
            x=alt.X("round:O", title="round"),
            y=alt.Y("layer:N", title="layer / group", sort=None),
            color=alt.Color("remaining_pct:Q", title="% remaining", scale=alt.Scale(scheme="viridis", domain=[0, 100])),
            tooltip=["layer", "round", alt.Tooltip("remaining_pct:Q", format=".2f")],
        )
        .properties(height=alt.Step(28), title="per-layer sparsity")
    )


def overlap_heatmap(cells: pd.DataFrame, title: str) -> alt.Chart:
    """Mean Jaccard overlap per layer (y) and round (x), one panel per series; the tooltip holds
    the 95% band, the pairs averaged and the overlap random masks of those densities would have."""
    return (
        alt.Chart(cells)
        .mark_rect()
        .encode(
            x=alt.X("round_label:O", title="round (% remaining)", sort=None),
            y=alt.Y("layer:N", title="layer", sort=None),
            color=alt.Color("mean:Q", title="Jaccard", scale=alt.Scale(scheme="viridis", domain=[0, 1])),
            row=alt.Row("series:N", title=None),
            tooltip=[
                "series",
                "layer",
                "round",
                alt.Tooltip("remaining_pct:Q", format=".2f"),
                alt.Tooltip("mean:Q", format=".3f", title="Jaccard"),
                alt.Tooltip("lo:Q", format=".3f"),
                alt.Tooltip("hi:Q", format=".3f"),
                alt.Tooltip("chance:Q", format=".3f", title="random masks"),
                "n",
            ],
        )
        .properties(height=alt.Step(28), title=title)
    )


def field_name(column: str) -> str:
    """Vega-Lite reads dots in a field name as nested access: chart data uses safe names."""
    return column.replace(".", "_")


def param_scatter(trials: pd.DataFrame, param: str, objective: str) -> alt.Chart:
    data = trials.rename(columns={param: field_name(param)})
    field = field_name(param)
    kind = "Q" if pd.api.types.is_numeric_dtype(data[field]) else "N"
    return (
        alt.Chart(data)
        .mark_circle(size=70)
        .encode(
            x=alt.X(
                f"{field}:{kind}",
                title=param,
                scale=alt.Scale(zero=False) if kind == "Q" else alt.Undefined,
                axis=alt.Axis(labelAngle=0) if kind == "N" else alt.Undefined,
            ),
            y=alt.Y(f"{objective}:Q", title=objective, scale=alt.Scale(zero=False)),
            tooltip=[
                "optuna trial",
                alt.Tooltip(f"{field}:{kind}", title=param),
                alt.Tooltip(f"{objective}:Q", format=".4f"),
            ],
        )
        .properties(height=240, title=f"{param} vs {objective}")
    )


def importance_chart(importance: pd.DataFrame) -> alt.Chart:
    """One bar per parameter; a multi-objective study gets one panel per objective."""
    chart = (
        alt.Chart(importance)
        .mark_bar()
        .encode(
            x=alt.X("importance:Q", title="importance"),
            y=alt.Y("parameter:N", sort="-x", title=None, axis=alt.Axis(labelLimit=240)),
            tooltip=["parameter", "objective", alt.Tooltip("importance:Q", format=".3f")],
        )
        .properties(height=alt.Step(28))
    )
    if importance["objective"].nunique() > 1:
        chart = chart.facet(row=alt.Row("objective:N", title=None))
    return chart.properties(title="parameter importance (Optuna)")


def pareto_chart(trials: pd.DataFrame, x: str, y: str) -> alt.Chart:
    points = (
        alt.Chart(trials)
        .mark_circle(size=80)
        .encode(
            x=alt.X(f"{x}:Q", title=x, scale=alt.Scale(type="log", reverse=True, nice=False)),
            y=alt.Y(f"{y}:Q", title=y, scale=alt.Scale(zero=False)),
            color=alt.Color(
                "pareto:N", title="Pareto set", scale=alt.Scale(domain=[True, False], range=["#d62728", "#9e9e9e"])
            ),
            tooltip=["optuna trial", alt.Tooltip(f"{x}:Q", format=".2f"), alt.Tooltip(f"{y}:Q", format=".4f")],
        )
    )
    front = alt.Chart(trials[trials["pareto"]].sort_values(x)).mark_line(color="#d62728").encode(x=f"{x}:Q", y=f"{y}:Q")
    return (front + points).properties(title="Pareto front: accuracy vs sparsity", height=360)


def tree_chart(tokens: list[str], tree, title: str) -> alt.Chart:
    """A constituency tree: leaves along the bottom, each node above the middle of its leaves."""
    nodes, edges = [], []

    def place(t, depth: int) -> tuple[float, int]:
        if isinstance(t, int):
            return float(t), depth
        kids = [place(c, depth + 1) for c in t]
        x = sum(k[0] for k in kids) / len(kids)
        nodes.append({"x": x, "y": -depth})
        for kx, kd in kids:
            edges.append({"x": x, "y": -depth, "x2": kx, "y2": -kd})
        return x, depth

    place(tree, 0)
    bottom = min(e["y2"] for e in edges) - 1 if edges else -1
    leaves = pd.DataFrame({"x": [float(i) for i in range(len(tokens))], "y": bottom, "token": tokens})
    edges_df = pd.DataFrame(edges)
    stems = pd.DataFrame(
        [
            {"x": e["x2"], "y": e["y2"], "x2": e["x2"], "y2": bottom + 0.4}
            for e in edges
            if e["x2"] == int(e["x2"]) and (e["x2"], e["y2"]) not in {(n["x"], n["y"]) for n in nodes}
        ]
    )
    axis: dict[str, Any] = dict(axis=None)
    lines = (
        alt.Chart(pd.concat([edges_df, stems]))
        .mark_rule(color="#555")
        .encode(x=alt.X("x:Q", **axis), y=alt.Y("y:Q", **axis), x2="x2:Q", y2="y2:Q")
    )
    words = alt.Chart(leaves).mark_text(fontSize=13, baseline="top").encode(x="x:Q", y="y:Q", text="token:N")
    return (lines + words).properties(title=title, height=260)


def parse_chart(table: pd.DataFrame) -> alt.LayerChart:
    """Parse F1 per parser (each layer, each trivial tree, a distance-free model) and series: the
    mean over seeds with its 95% band as an error bar."""
    tooltip = [
        "series",
        "parser",
        alt.Tooltip("mean:Q", format=".3f"),
        alt.Tooltip("lo:Q", format=".3f"),
        alt.Tooltip("hi:Q", format=".3f"),
        "n",
    ]
    x = alt.X("parser:N", title=None, sort=list(dict.fromkeys(table["parser"])))
    base = alt.Chart(table).encode(x=x, xOffset="series:N", color=alt.Color("series:N", title="model"))
    bars = base.mark_bar(opacity=0.8).encode(y=alt.Y("mean:Q", title="unlabelled sentence F1"), tooltip=tooltip)
    errors = base.mark_rule(color="black").encode(y="lo:Q", y2="hi:Q")
    return (bars + errors).properties(title="Parse F1 of the dense models (test sentences)", height=320)


def length_chart(table: pd.DataFrame, trained_up_to: int | None) -> alt.LayerChart:
    """Accuracy per length (operators) per series with its 95% band over seeds, the chance line
    (dashed) and a rule after the longest trained length."""
    tooltip = ["series", "length", alt.Tooltip("mean:Q", format=".3f"), alt.Tooltip("chance:Q", format=".3f"), "n"]
    trained = "" if trained_up_to is None else f" (trained on <= {trained_up_to})"
    x = alt.X("length:Q", title=f"operators in the larger formula{trained}")
    chart = _mean_with_band(table, x, alt.Color("series:N", title="model"), "test accuracy", tooltip, zero=False)
    chart += (
        alt.Chart(table.groupby("length", as_index=False)["chance"].mean())
        .mark_line(strokeDash=[4, 4], color="gray")
        .encode(x=x, y="chance:Q", tooltip=[alt.Tooltip("chance:Q", format=".3f")])
    )
    if trained_up_to is not None:
        edge = pd.DataFrame({"x": [trained_up_to + 0.5]})
        chart += alt.Chart(edge).mark_rule(color="gray").encode(x="x:Q")
    return chart.properties(title="Accuracy per operator count (dashed: chance)", height=320)


def sparsity_chart(curves: pd.DataFrame, measure: str, y_title: str) -> alt.LayerChart:
    """One measure of `sequences.sparsity_curves` per series against % remaining, with bands."""
    mine = curves[curves["measure"] == measure]
    return band_chart(mine, f"{y_title} against sparsity", y_title, digits=3, height=320)
